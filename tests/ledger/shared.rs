//! The ledger shared through a real `redis-server` (Debian's package; each test starts
//! its own on a free port and stops it at the end): several ledgers on one budget,
//! a backoff seen by one stopping all, Redis lost and back, bad input.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use runner::ledger::limits::IntervalUnit::{Minute, Second};
use runner::ledger::limits::PoolKind::{RawRequests, RequestWeight};
use runner::ledger::shared::{share, share_named, ScopeNames, SharedConfig, SharedError, SharedLedger};
use runner::ledger::{
    BackoffState, Cost, Lane, Ledger, LedgerConfig, LedgerError, Observation, RateLimit, Scope, TokioClock, Verdict,
};

use crate::redis_server::RedisServer;

const WINDOW_LIMIT: u64 = 60;

fn limits() -> Vec<RateLimit> {
    vec![
        RateLimit::new(RequestWeight, Second, 1, WINDOW_LIMIT),
        RateLimit::new(RawRequests, Second, 1, 10_000),
    ]
}

fn local_ledger() -> Ledger {
    ledger_with(limits())
}

fn ledger_with(limits: Vec<RateLimit>) -> Ledger {
    Ledger::new(
        limits,
        LedgerConfig {
            backoff_jitter: Duration::ZERO,
            ..LedgerConfig::default()
        },
        Arc::new(TokioClock::new()),
    )
}

async fn shared(url: &str, group: &str) -> SharedLedger {
    shared_with(url, group, limits()).await
}

async fn shared_with(url: &str, group: &str, limits: Vec<RateLimit>) -> SharedLedger {
    share(
        ledger_with(limits),
        SharedConfig {
            url: url.to_string(),
            group: group.to_string(),
            fallback_on_start: false,
        },
    )
    .await
    .expect("shared ledger")
}

fn weight(n: u32) -> Cost {
    Cost::new().with(RequestWeight, n).with(RawRequests, 1)
}

/// Admissions (send time, weight) of every ledger.
type Sent = Arc<Mutex<Vec<(i64, u64)>>>;

/// Every ledger sends as fast as it may for `for_ms`, from three tasks each.
async fn hammer(ledgers: &[&Ledger], for_ms: i64, sent: &Sent) {
    let end = ledgers[0].now_ms() + for_ms;
    let mut tasks = Vec::new();
    for (i, ledger) in ledgers.iter().enumerate() {
        for t in 0..3u32 {
            let ledger = (*ledger).clone();
            let sent = sent.clone();
            tasks.push(tokio::spawn(async move {
                let name = format!("p{i}t{t}");
                let cost = weight(1 + t);
                while ledger.now_ms() < end {
                    match ledger
                        .reserve(&name, Lane::Order, cost, Duration::from_millis(300))
                        .await
                    {
                        Ok(p) => sent.lock().push((p.sent_at_ms, u64::from(1 + t))),
                        Err(LedgerError::RateLimited { .. }) => {}
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.expect("task");
    }
}

/// Weight sent in each one-second window, by window start.
fn per_window(sent: &Sent) -> std::collections::BTreeMap<i64, u64> {
    let mut windows = std::collections::BTreeMap::new();
    for &(at, w) in sent.lock().iter() {
        *windows.entry(at.div_euclid(1000)).or_insert(0) += w;
    }
    windows
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let ok = tokio::time::timeout(Duration::from_secs(10), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_ledgers_on_one_budget_stay_within_it_and_use_most_of_it() {
    let redis = RedisServer::start();
    let mut keepers = Vec::new();
    for _ in 0..4 {
        keepers.push(shared(&redis.url(), "ip-a").await);
    }
    let ledgers: Vec<&Ledger> = keepers.iter().map(|k| k.ledger()).collect();
    let sent: Sent = Arc::default();
    hammer(&ledgers, 3_500, &sent).await;
    let windows = per_window(&sent);
    let full: Vec<u64> = windows
        .values()
        .copied()
        .skip(1)
        .take(windows.len().saturating_sub(2))
        .collect();
    assert!(full.len() >= 2, "{windows:?}");
    for (start, used) in &windows {
        assert!(
            *used <= WINDOW_LIMIT,
            "window {start}: {used} > {WINDOW_LIMIT} ({windows:?})"
        );
    }
    for used in &full {
        assert!(
            *used * 10 >= WINDOW_LIMIT * 9,
            "a full window used {used} of {WINDOW_LIMIT}: {windows:?}"
        );
    }
    let status = ledgers[0].status("p0t0");
    let sharing = status.sharing.expect("shared");
    assert!(sharing.connected);
    assert_eq!(sharing.processes, 4, "heartbeats of all four");
}

/// Waits until `ledger`'s clock is in the first 500 ms of a window `window_ms` long, so that
/// what a test does next happens within that window.
async fn early_in_a_window(ledger: &Ledger, window_ms: i64) {
    wait_for("the start of a window", || ledger.now_ms().rem_euclid(window_ms) < 500).await;
}

/// A newcomer whose first request draws on a full weight window and a five-minute raw-request
/// window: the raw-request pool, which has room, is leased at once — not only after its own
/// window ends (or some process happens to give units back) because the weight pool had no
/// room when both were asked for in one lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_short_window_does_not_hold_back_a_long_window_of_the_same_request() {
    const WEIGHT_WINDOW_MS: i64 = 3_000;
    let redis = RedisServer::start();
    // Raw requests: 20 per five minutes, so each process leases a single unit at a time and
    // holds no spare to give back (a give-back wakes every process, which would hide the fault).
    let limits = vec![
        RateLimit::new(RequestWeight, Second, 3, WINDOW_LIMIT),
        RateLimit::new(RawRequests, Minute, 5, 20),
    ];
    let first = shared_with(&redis.url(), "ip-a", limits.clone()).await;
    let cost = |w: u32| Cost::new().with(RequestWeight, w).with(RawRequests, 1);
    let window_of = |ms: i64| ms.div_euclid(WEIGHT_WINDOW_MS);
    // Early in a weight window, so what follows happens while it is still full.
    early_in_a_window(first.ledger(), WEIGHT_WINDOW_MS).await;
    let full = first
        .ledger()
        .reserve(
            "first",
            Lane::Order,
            cost(WINDOW_LIMIT as u32),
            Duration::from_millis(500),
        )
        .await
        .expect("the whole window");
    let newcomer = shared_with(&redis.url(), "ip-a", limits).await;
    let asked_at = newcomer.ledger().now_ms();
    let request = {
        let ledger = newcomer.ledger().clone();
        tokio::spawn(async move {
            ledger
                .reserve("newcomer", Lane::Order, cost(10), Duration::from_secs(10))
                .await
        })
    };
    let raw_lease = || {
        newcomer
            .ledger()
            .leases()
            .iter()
            .find(|v| v.limit.kind == RawRequests)
            .map_or(0, |v| v.lease)
    };
    wait_for("the newcomer's raw-request lease", || raw_lease() > 0).await;
    let leased_at = newcomer.ledger().now_ms();
    assert_eq!(
        window_of(leased_at),
        window_of(full.sent_at_ms),
        "the raw-request pool was leased only after the full weight window ended ({} ms after asking)",
        leased_at - asked_at
    );
    let permit = request
        .await
        .expect("task")
        .expect("admitted once the next weight window begins");
    assert!(window_of(permit.sent_at_ms) > window_of(full.sent_at_ms));
    println!(
        "figure: raw requests leased {} ms after asking; admitted {} ms after asking",
        leased_at - asked_at,
        permit.sent_at_ms - asked_at
    );
}

/// Three processes, room for two requests a window: the one turned away in a window is served
/// in the next, whoever asks first there. Under contention nobody gets more than its fair share
/// while another is hungry, so asking first at every window's start cannot starve the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_turned_away_is_served_in_the_next_window_before_those_that_were_served() {
    const WEIGHT_WINDOW_MS: i64 = 3_000;
    let redis = RedisServer::start();
    let limits = vec![
        RateLimit::new(RequestWeight, Second, 3, WINDOW_LIMIT),
        RateLimit::new(RawRequests, Second, 1, 10_000),
    ];
    let mut keepers = Vec::new();
    for _ in 0..3 {
        keepers.push(shared_with(&redis.url(), "ip-a", limits.clone()).await);
    }
    wait_for("each process to count the others", || {
        keepers
            .iter()
            .all(|k| k.ledger().status("x").sharing.is_some_and(|s| s.processes == 3))
    })
    .await;
    // Two fit a window (with the units leased ahead as leases run low), three do not, and one
    // is more than a fair third.
    let request = Cost::new()
        .with(RequestWeight, (WINDOW_LIMIT * 5 / 12) as u32)
        .with(RawRequests, 1);
    let window_of = |ms: i64| ms.div_euclid(WEIGHT_WINDOW_MS);
    let ledger = |i: usize| keepers[i].ledger().clone();
    early_in_a_window(&ledger(0), WEIGHT_WINDOW_MS).await;
    let first = ledger(0)
        .reserve("a", Lane::Order, request, Duration::from_millis(500))
        .await
        .expect("a");
    let second = ledger(1)
        .reserve("b", Lane::Order, request, Duration::from_millis(500))
        .await
        .expect("b");
    let full = window_of(first.sent_at_ms);
    assert_eq!(window_of(second.sent_at_ms), full, "both in one window");
    let ask = |i: usize| {
        let l = ledger(i);
        tokio::spawn(async move { (i, l.reserve("p", Lane::Order, request, Duration::from_secs(10)).await) })
    };
    // The third is turned away (the window is full) and so is hungry; only then do the other
    // two ask again, and all three want the next window.
    let third = ask(2);
    let redis_client = redis::Client::open(redis.url()).expect("client");
    let mut conn = redis_client.get_multiplexed_async_connection().await.expect("redis");
    let hungry_key = "hungry:runner:{ip-a}:ip0:REQUEST_WEIGHT:3000";
    let started = std::time::Instant::now();
    loop {
        let hungry: u32 = redis::cmd("ZCARD")
            .arg(hungry_key)
            .query_async(&mut conn)
            .await
            .expect("ZCARD");
        if hungry == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the third never turned away"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let asks = [third, ask(0), ask(1)];
    let mut sent = Vec::new();
    for ask in asks {
        let (i, permit) = ask.await.expect("task");
        sent.push((i, window_of(permit.expect("admitted").sent_at_ms)));
    }
    let third = sent.iter().find(|(i, _)| *i == 2).expect("the third").1;
    assert_eq!(third, full + 1, "the one turned away goes in the next window: {sent:?}");
    let per_window = |w: i64| sent.iter().filter(|(_, s)| *s == w).count();
    assert!(per_window(full + 1) <= 2 && per_window(full) == 0, "{sent:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backoff_seen_by_one_stops_every_process_and_a_newcomer_reads_it() {
    let redis = RedisServer::start();
    let a = shared(&redis.url(), "ip-b").await;
    let b = shared(&redis.url(), "ip-b").await;
    let p = a.ledger().try_reserve("s", Lane::Order, weight(1));
    let p = match p {
        Ok(p) => p,
        // The first reservation may have to wait for its lease.
        Err(_) => a
            .ledger()
            .reserve("s", Lane::Order, weight(1), Duration::from_secs(1))
            .await
            .expect("lease"),
    };
    a.ledger().observe(
        &p,
        &Observation {
            usage: Vec::new(),
            verdict: Verdict::Throttled {
                retry_after: Duration::from_secs(3),
            },
            scope: RequestWeight.default_scope(),
        },
    );
    wait_for("the other process to back off", || {
        b.ledger().status("s").state != BackoffState::Normal
    })
    .await;
    assert!(matches!(
        b.ledger()
            .reserve("s", Lane::Order, weight(1), Duration::from_millis(50))
            .await,
        Err(LedgerError::Throttled { .. })
    ));
    let resume = a.ledger().status("s").resume_at_ms.expect("resume");
    assert!(b.ledger().status("s").resume_at_ms.expect("resume") >= resume);
    // A process started now reads the ban before sending anything.
    let c = shared(&redis.url(), "ip-b").await;
    wait_for("the newcomer to read the ban", || {
        c.ledger().status("s").state != BackoffState::Normal
    })
    .await;
}

/// A ledger with two egress IP groups, named `order[0]` and `order[1]` (scopes ip0 and ip1),
/// shared on `budget`.
async fn shared_groups(url: &str, budget: &str, order: [&str; 2]) -> SharedLedger {
    let per_group = |n| {
        limits()
            .into_iter()
            .map(move |l| l.scoped(Scope::Ip(n)))
            .collect::<Vec<_>>()
    };
    let ledger = Ledger::new(
        [per_group(0), per_group(1)].concat(),
        LedgerConfig {
            backoff_jitter: Duration::ZERO,
            ..LedgerConfig::default()
        },
        Arc::new(TokioClock::new()),
    );
    let names = ScopeNames::new([
        (Scope::Ip(0), order[0].to_string()),
        (Scope::Ip(1), order[1].to_string()),
    ]);
    let config = SharedConfig {
        url: url.to_string(),
        group: budget.to_string(),
        fallback_on_start: false,
    };
    share_named(ledger, config, names).await.expect("shared ledger")
}

fn weight_from(scope: Scope) -> Cost {
    Cost::new()
        .with_scoped(scope, RequestWeight, 1)
        .with_scoped(scope, RawRequests, 1)
}

fn state_of(ledger: &Ledger, scope: Scope) -> BackoffState {
    let status = ledger.status("s");
    let pool = status.pools.iter().find(|p| p.scope == scope).expect("pool present");
    pool.backoff
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_backoff_keeps_its_group_whatever_order_the_processes_list_their_groups_in() {
    let redis = RedisServer::start();
    // The same two addresses, listed in opposite orders: "main" is ip0 in a, ip1 in b.
    let a = shared_groups(&redis.url(), "two-groups", ["main", "spare"]).await;
    let b = shared_groups(&redis.url(), "two-groups", ["spare", "main"]).await;
    let (a_main, b_main, b_spare) = (Scope::Ip(0), Scope::Ip(1), Scope::Ip(0));
    let p = a
        .ledger()
        .reserve("s", Lane::Order, weight_from(a_main), Duration::from_secs(1))
        .await
        .expect("lease");
    a.ledger().observe(
        &p,
        &Observation {
            usage: Vec::new(),
            verdict: Verdict::Throttled {
                retry_after: Duration::from_secs(3),
            },
            scope: a_main,
        },
    );
    wait_for("b to back off from main", || {
        state_of(b.ledger(), b_main) != BackoffState::Normal
    })
    .await;
    assert!(matches!(
        b.ledger()
            .reserve("s", Lane::Order, weight_from(b_main), Duration::from_millis(50))
            .await,
        Err(LedgerError::Throttled { .. })
    ));
    // The spare address goes on, in both processes.
    assert_eq!(state_of(b.ledger(), b_spare), BackoffState::Normal);
    b.ledger()
        .reserve("s", Lane::Order, weight_from(b_spare), Duration::from_secs(1))
        .await
        .expect("the spare group is not backed off");
    a.ledger()
        .reserve("s", Lane::Order, weight_from(Scope::Ip(1)), Duration::from_secs(1))
        .await
        .expect("a's spare group is not backed off");
    // A process started now, with the groups in yet another order, reads main's ban only.
    let c = shared_groups(&redis.url(), "two-groups", ["spare", "main"]).await;
    wait_for("the newcomer to read main's ban", || {
        state_of(c.ledger(), Scope::Ip(1)) != BackoffState::Normal
    })
    .await;
    assert_eq!(state_of(c.ledger(), Scope::Ip(0)), BackoffState::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_each_process_spends_its_share_and_recovers_when_it_returns_empty() {
    let redis = RedisServer::start();
    let a = shared(&redis.url(), "ip-c").await;
    let b = shared(&redis.url(), "ip-c").await;
    wait_for("both heartbeats", || {
        a.ledger().status("s").sharing.is_some_and(|s| s.processes == 2)
            && b.ledger().status("s").sharing.is_some_and(|s| s.processes == 2)
    })
    .await;
    let port = redis.stop();
    let sent: Sent = Arc::default();
    hammer(&[a.ledger(), b.ledger()], 2_500, &sent).await;
    for l in [a.ledger(), b.ledger()] {
        let sharing = l.status("s").sharing.expect("shared");
        assert!(!sharing.connected, "status says the shared ledger is gone");
    }
    for (start, used) in per_window(&sent) {
        assert!(used <= WINDOW_LIMIT, "window {start}: {used} without Redis");
    }
    // Back, but empty: both reconcile and share again.
    let _redis = RedisServer::start_on(port);
    wait_for("both to reconnect", || {
        [a.ledger(), b.ledger()]
            .iter()
            .all(|l| l.status("s").sharing.is_some_and(|s| s.connected))
    })
    .await;
    let sent: Sent = Arc::default();
    hammer(&[a.ledger(), b.ledger()], 2_500, &sent).await;
    for (start, used) in per_window(&sent) {
        assert!(used <= WINDOW_LIMIT, "window {start}: {used} after Redis came back");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_is_waited_out_on_the_local_share() {
    let redis = RedisServer::start();
    let a = shared(&redis.url(), "ip-d").await;
    let b = shared(&redis.url(), "ip-d").await;
    // Each one's share without Redis is the limit divided by the processes it knows of.
    wait_for("each ledger to count both", || {
        [&a, &b]
            .iter()
            .all(|l| l.ledger().status("s").sharing.is_some_and(|s| s.processes == 2))
    })
    .await;
    redis.signal("-STOP");
    let sent: Sent = Arc::default();
    hammer(&[a.ledger(), b.ledger()], 2_500, &sent).await;
    assert!(a.ledger().status("s").sharing.is_some_and(|s| !s.connected));
    redis.signal("-CONT");
    wait_for("the paused Redis to be used again", || {
        a.ledger().status("s").sharing.is_some_and(|s| s.connected)
    })
    .await;
    hammer(&[a.ledger(), b.ledger()], 1_500, &sent).await;
    for (start, used) in per_window(&sent) {
        assert!(used <= WINDOW_LIMIT, "window {start}: {used}");
    }
}

#[tokio::test]
async fn bad_urls_and_an_unreachable_redis_fail_at_start_unless_told_to_fall_back() {
    let config = |url: &str, fallback_on_start: bool| SharedConfig {
        url: url.to_string(),
        group: "x".to_string(),
        fallback_on_start,
    };
    assert!(matches!(
        share(local_ledger(), config("http://nowhere", false)).await,
        Err(SharedError::Url { .. })
    ));
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr").port()
    };
    let url = format!("redis://127.0.0.1:{port}/0");
    let err = share(local_ledger(), config(&url, false))
        .await
        .err()
        .expect("unreachable");
    assert!(matches!(err, SharedError::Unreachable { .. }), "{err}");
    assert!(!err.to_string().contains('\n'), "one line: {err}");
    let fallback = share(local_ledger(), config(&url, true)).await.expect("fallback");
    assert!(fallback.ledger().status("s").sharing.is_some_and(|s| !s.connected));
    fallback
        .ledger()
        .reserve("s", Lane::Order, weight(1), Duration::from_secs(1))
        .await
        .expect("the local share is spent");
}

#[tokio::test]
async fn a_budget_of_another_format_is_refused() {
    let redis = RedisServer::start();
    let client = redis::Client::open(redis.url()).expect("url");
    let mut c = client.get_multiplexed_async_connection().await.expect("conn");
    redis::cmd("SET")
        .arg("runner:{ip-e}:format")
        .arg("99")
        .query_async::<()>(&mut c)
        .await
        .expect("set");
    let err = share(
        local_ledger(),
        SharedConfig {
            url: redis.url(),
            group: "ip-e".to_string(),
            fallback_on_start: false,
        },
    )
    .await
    .err()
    .expect("refused");
    assert!(matches!(err, SharedError::UnknownFormat { .. }), "{err}");
}
