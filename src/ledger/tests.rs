//! Rule-by-rule tests of the ledger, under tokio's paused time so every wait is
//! exact and instant.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::backoff::resume_margin_ms;
use super::limits::IntervalUnit::{Day, Minute, Second};
use super::limits::PoolKind::{Connections, Orders, RawRequests, RequestWeight};
use super::*;

/// A minute-aligned exchange time, so window arithmetic in the tests is readable.
const T0: i64 = 1_700_000_040_000;
const SEC: Duration = Duration::from_secs(1);

fn config() -> LedgerConfig {
    LedgerConfig {
        market_headroom: 0.1,
        backoff_jitter: Duration::ZERO,
        state_dir: None,
    }
}

fn ledger_with(limits: Vec<RateLimit>, config: LedgerConfig) -> Ledger {
    Ledger::new(limits, config, Arc::new(TokioClock::starting_at(T0)))
}

fn ledger(limits: Vec<RateLimit>) -> Ledger {
    ledger_with(limits, config())
}

fn weight(n: u32) -> Cost {
    Cost::new().with(RequestWeight, n).with(RawRequests, 1)
}

fn order(weight: u32, orders: u32) -> Cost {
    Cost::new()
        .with(RequestWeight, weight)
        .with(Orders, orders)
        .with(RawRequests, 1)
}

fn pool(status: &LedgerStatus, kind: PoolKind) -> &PoolStatus {
    status.pools.iter().find(|p| p.kind == kind).expect("pool present")
}

fn weight_per_minute(limit: u64) -> Vec<RateLimit> {
    vec![RateLimit::new(RequestWeight, Minute, 1, limit)]
}

#[tokio::test(start_paused = true)]
async fn reservation_is_all_or_nothing_across_pools() {
    let l = ledger(vec![
        RateLimit::new(RequestWeight, Minute, 1, 100),
        RateLimit::new(Orders, Second, 10, 2),
        RateLimit::new(RawRequests, Minute, 5, 1000),
    ]);
    l.try_reserve("s", Lane::Order, order(1, 2)).unwrap();
    let err = l.try_reserve("s", Lane::Order, order(5, 1)).unwrap_err();
    assert_eq!(err, LedgerError::RateLimited { until_ms: T0 + 10_000 });
    let st = l.status("s");
    assert_eq!(
        pool(&st, RequestWeight).used,
        1,
        "weight must not be taken when orders are full"
    );
    assert_eq!(pool(&st, RawRequests).used, 1);
    assert_eq!(pool(&st, Orders).used, 2);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_is_admitted_exactly_at_the_window_reset() {
    let l = ledger(weight_per_minute(10));
    let start = Instant::now();
    tokio::time::advance(Duration::from_millis(12_345)).await;
    l.try_reserve("s", Lane::Order, weight(10)).unwrap();
    let p = l.reserve("s", Lane::Order, weight(4), 120 * SEC).await.unwrap();
    assert_eq!(p.sent_at_ms, T0 + 60_000);
    assert_eq!(Instant::now() - start, Duration::from_secs(60));
    assert_eq!(pool(&l.status("s"), RequestWeight).used, 4);
}

#[tokio::test(start_paused = true)]
async fn zero_wait_fails_at_once_and_a_passed_deadline_says_when_room_comes() {
    let l = ledger(weight_per_minute(10));
    l.try_reserve("s", Lane::Order, weight(9)).unwrap();
    let start = Instant::now();
    assert_eq!(
        l.reserve("s", Lane::Order, weight(2), Duration::ZERO)
            .await
            .unwrap_err(),
        LedgerError::RateLimited { until_ms: T0 + 60_000 }
    );
    assert_eq!(Instant::now(), start);
    assert_eq!(
        l.reserve("s", Lane::Order, weight(2), 5 * SEC).await.unwrap_err(),
        LedgerError::RateLimited { until_ms: T0 + 60_000 }
    );
    assert_eq!(Instant::now() - start, 5 * SEC);
    // The waiter that gave up left nothing behind: a small request still fits.
    l.try_reserve("s", Lane::Order, weight(1)).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_cost_larger_than_a_window_is_refused_at_once() {
    let l = ledger(vec![
        RateLimit::new(RequestWeight, Minute, 1, 100),
        RateLimit::new(Connections, Minute, 5, 2),
    ]);
    let start = Instant::now();
    let err = l.reserve("s", Lane::Order, weight(101), 600 * SEC).await.unwrap_err();
    assert!(
        matches!(err, LedgerError::TooLarge(ref m) if m.contains("REQUEST_WEIGHT")),
        "{err:?}"
    );
    // Market data may use only 90 of 100.
    assert!(matches!(
        l.try_reserve("s", Lane::MarketData, weight(95)),
        Err(LedgerError::TooLarge(_))
    ));
    let three = Cost::new().with(Connections, 3);
    assert!(matches!(
        l.try_reserve("s", Lane::Order, three),
        Err(LedgerError::TooLarge(_))
    ));
    assert_eq!(Instant::now(), start);
}

#[tokio::test(start_paused = true)]
async fn fifo_within_a_lane_does_not_starve_a_big_request() {
    let l = ledger(weight_per_minute(100));
    l.try_reserve("s", Lane::MarketData, weight(85)).unwrap();
    let big = tokio::spawn({
        let l = l.clone();
        async move { l.reserve("big", Lane::MarketData, weight(50), 120 * SEC).await }
    });
    tokio::task::yield_now().await;
    // Room for 5 more now, but the big request is ahead: the small ones wait behind it.
    let small: Vec<_> = (0..5)
        .map(|_| {
            let l = l.clone();
            tokio::spawn(async move { l.reserve("small", Lane::MarketData, weight(1), 120 * SEC).await })
        })
        .collect();
    tokio::task::yield_now().await;
    assert_eq!(pool(&l.status("s"), RequestWeight).used, 85);
    assert!(matches!(
        l.try_reserve("small", Lane::MarketData, weight(1)),
        Err(LedgerError::RateLimited { .. })
    ));
    let big = big.await.unwrap().unwrap();
    assert_eq!(big.sent_at_ms, T0 + 60_000);
    for s in small {
        let p = s.await.unwrap().unwrap();
        assert_eq!(p.sent_at_ms, T0 + 60_000);
        assert!(p.seq > big.seq, "the big request at the head goes first");
    }
}

#[tokio::test(start_paused = true)]
async fn a_waiter_blocked_on_one_pool_does_not_hold_up_other_pools() {
    let l = ledger(vec![
        RateLimit::new(RequestWeight, Minute, 1, 100),
        RateLimit::new(Orders, Second, 10, 1),
    ]);
    l.try_reserve("s", Lane::Order, order(1, 1)).unwrap();
    let waiting = tokio::spawn({
        let l = l.clone();
        async move { l.reserve("s", Lane::Order, order(1, 1), 60 * SEC).await }
    });
    tokio::task::yield_now().await;
    // Only the orders pool is blocked; a weight-only request still goes.
    let now = l.try_reserve("s", Lane::Order, weight(5)).unwrap();
    assert_eq!(now.sent_at_ms, T0);
    assert_eq!(waiting.await.unwrap().unwrap().sent_at_ms, T0 + 10_000);
}

#[tokio::test(start_paused = true)]
async fn lanes_go_cancel_then_order_then_market_data() {
    let l = ledger(weight_per_minute(10));
    l.try_reserve("s", Lane::Order, weight(10)).unwrap();
    let mut tasks = Vec::new();
    for lane in [Lane::MarketData, Lane::Order, Lane::Cancel] {
        let l = l.clone();
        tasks.push(tokio::spawn(
            async move { l.reserve("s", lane, weight(3), 120 * SEC).await },
        ));
        tokio::task::yield_now().await;
    }
    let permits: Vec<Permit> = futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    let mut by_seq = permits.clone();
    by_seq.sort_by_key(|p| p.seq);
    let order: Vec<Lane> = by_seq.iter().map(|p| p.lane).collect();
    assert_eq!(order, vec![Lane::Cancel, Lane::Order, Lane::MarketData]);
    assert!(permits.iter().all(|p| p.sent_at_ms == T0 + 60_000));
}

#[tokio::test(start_paused = true)]
async fn market_data_leaves_the_headroom_to_cancels() {
    let l = ledger(weight_per_minute(100));
    for _ in 0..9 {
        l.try_reserve("md", Lane::MarketData, weight(10)).unwrap();
    }
    assert!(matches!(
        l.try_reserve("md", Lane::MarketData, weight(1)),
        Err(LedgerError::RateLimited { .. })
    ));
    l.try_reserve("trader", Lane::Cancel, weight(1)).unwrap();
    l.try_reserve("trader", Lane::Order, weight(9)).unwrap();
    assert_eq!(pool(&l.status("md"), RequestWeight).used, 100);
}

#[tokio::test(start_paused = true)]
async fn usage_is_tracked_per_strategy() {
    let l = ledger(vec![
        RateLimit::new(RequestWeight, Minute, 1, 1000),
        RateLimit::new(Orders, Second, 10, 50),
        RateLimit::new(Orders, Day, 1, 1000),
    ]);
    l.try_reserve("a", Lane::MarketData, weight(20)).unwrap();
    l.try_reserve("a", Lane::Order, order(1, 1)).unwrap();
    l.try_reserve("b", Lane::Order, order(1, 1)).unwrap();
    let h = l.handle("b");
    h.try_reserve(Lane::Order, order(1, 1)).unwrap();
    let a = l.status("a").mine;
    assert_eq!((a.weight, a.orders, a.total_weight, a.total_orders), (21, 1, 21, 1));
    assert_eq!(h.status().mine.orders, 2);
    assert_eq!(l.status("nobody").mine, StrategyUsage::default());
    // A new window resets the window counts, not the totals.
    tokio::time::advance(60 * SEC).await;
    let a = l.status("a").mine;
    assert_eq!((a.weight, a.orders, a.total_weight, a.total_orders), (0, 0, 21, 1));
    assert_eq!(pool(&l.status("a"), RequestWeight).peak, 23);
}

#[tokio::test(start_paused = true)]
async fn server_usage_raises_the_count_but_never_lowers_it() {
    let l = ledger(weight_per_minute(6000));
    let p = l.try_reserve("s", Lane::Order, weight(10)).unwrap();
    let header = |used| Observation {
        usage: vec![ServerUsage {
            scope: RequestWeight.default_scope(),
            kind: RequestWeight,
            interval: Interval::new(Minute, 1),
            used,
        }],
        verdict: Verdict::Ok,
        scope: RequestWeight.default_scope(),
    };
    l.observe(&p, &header(2500));
    assert_eq!(pool(&l.status("s"), RequestWeight).used, 2500);
    l.observe(&p, &header(40));
    assert_eq!(pool(&l.status("s"), RequestWeight).used, 2500);
    // A response to a request of the previous window never touches this one.
    tokio::time::advance(60 * SEC).await;
    l.try_reserve("s", Lane::Order, weight(1)).unwrap();
    l.observe(&p, &header(5000));
    assert_eq!(pool(&l.status("s"), RequestWeight).used, 1);
    assert_eq!(pool(&l.status("s"), RequestWeight).peak, 2500);
}

#[tokio::test(start_paused = true)]
async fn credit_gives_weight_back_in_the_same_window_and_wakes_waiters() {
    let l = ledger(vec![
        RateLimit::new(RequestWeight, Minute, 1, 10),
        RateLimit::new(Orders, Second, 10, 100),
    ]);
    let placed = l.try_reserve("s", Lane::Order, order(1, 1)).unwrap();
    l.try_reserve("s", Lane::Order, weight(9)).unwrap();
    let start = Instant::now();
    let waiter = tokio::spawn({
        let l = l.clone();
        async move { l.reserve("s", Lane::Order, weight(1), 30 * SEC).await }
    });
    tokio::time::advance(Duration::from_millis(1500)).await;
    l.credit(&placed, RequestWeight, 1);
    let p = waiter.await.unwrap().unwrap();
    assert_eq!(Instant::now() - start, Duration::from_millis(1500));
    assert_eq!(p.sent_at_ms, T0 + 1500);
    assert_eq!(l.status("s").mine.total_weight, 10);
    // A credit for a request of an earlier window does nothing.
    tokio::time::advance(60 * SEC).await;
    l.try_reserve("s", Lane::Order, weight(3)).unwrap();
    l.credit(&placed, RequestWeight, 1);
    assert_eq!(pool(&l.status("s"), RequestWeight).used, 3);
}

#[tokio::test(start_paused = true)]
async fn a_fill_lowers_the_unfilled_order_count_but_not_below_zero() {
    let l = ledger(vec![
        RateLimit::new(Orders, Second, 10, 3),
        RateLimit::new(Orders, Day, 1, 1000),
    ]);
    for _ in 0..3 {
        l.try_reserve("s", Lane::Order, order(0, 1)).unwrap();
    }
    assert!(l.try_reserve("s", Lane::Order, order(0, 1)).is_err());
    l.order_filled(Scope::Account(0), 1);
    l.try_reserve("s", Lane::Order, order(0, 1)).unwrap();
    l.order_filled(Scope::Account(0), 10);
    let st = l.status("s");
    assert!(st.pools.iter().all(|p| p.used == 0));
}

#[tokio::test(start_paused = true)]
async fn after_a_429_nothing_is_admitted_before_retry_after() {
    let l = ledger(weight_per_minute(6000));
    let p = l.try_reserve("s", Lane::Order, weight(1)).unwrap();
    let start = Instant::now();
    l.observe(
        &p,
        &Observation {
            usage: vec![],
            verdict: Verdict::Throttled { retry_after: 7 * SEC },
            scope: RequestWeight.default_scope(),
        },
    );
    // Retry-After plus the clock margin: never a ms early by the exchange's clock.
    let until_ms = T0 + 7_000 + resume_margin_ms(7_000);
    for lane in [Lane::Cancel, Lane::Order, Lane::MarketData] {
        assert_eq!(
            l.try_reserve("s", lane, weight(1)).unwrap_err(),
            LedgerError::Throttled { until_ms }
        );
    }
    // A deadline short of the resume time fails at once, without waiting.
    assert_eq!(
        l.reserve("s", Lane::Cancel, weight(1), 3 * SEC).await.unwrap_err(),
        LedgerError::Throttled { until_ms }
    );
    assert_eq!(Instant::now(), start);
    let st = l.status("s");
    assert_eq!(
        (st.state, st.resume_at_ms, st.throttled_count),
        (BackoffState::Throttled, Some(until_ms), 1)
    );
    // A deadline past it waits and proceeds exactly at the resume time.
    let p = l.reserve("s", Lane::MarketData, weight(1), 10 * SEC).await.unwrap();
    assert_eq!(p.sent_at_ms, until_ms);
    assert_eq!(Instant::now() - start, Duration::from_millis((until_ms - T0) as u64));
    assert_eq!(l.status("s").state, BackoffState::Normal);
}

#[tokio::test(start_paused = true)]
async fn a_backoff_fails_waiters_whose_deadline_comes_first() {
    let l = ledger(weight_per_minute(10));
    l.try_reserve("s", Lane::Order, weight(10)).unwrap();
    let short = tokio::spawn({
        let l = l.clone();
        async move { l.reserve("s", Lane::Order, weight(1), 70 * SEC).await }
    });
    let long = tokio::spawn({
        let l = l.clone();
        async move { l.reserve("s", Lane::Order, weight(1), 200 * SEC).await }
    });
    tokio::time::advance(SEC).await;
    l.enter_backoff(Scope::Ip(0), &Verdict::Banned { until_ms: T0 + 120_000 });
    let resume = T0 + 120_000 + resume_margin_ms(120_000 - 1_000);
    assert_eq!(
        short.await.unwrap().unwrap_err(),
        LedgerError::Banned { until_ms: resume }
    );
    let p = long.await.unwrap().unwrap();
    assert_eq!(p.sent_at_ms, resume, "not admitted at the window reset during the ban");
    let st = l.status("s");
    assert_eq!((st.banned_count, st.state), (1, BackoffState::Normal));
}

#[tokio::test(start_paused = true)]
async fn a_backoff_stops_its_own_scope_only_and_its_waiters_resume_exactly_at_its_end() {
    let (a, b) = (Scope::Ip(0), Scope::Ip(1));
    let per_group = |scope| RateLimit::new(RequestWeight, Minute, 1, 1000).scoped(scope);
    let l = ledger(vec![
        per_group(a),
        per_group(b),
        RateLimit::new(Orders, Second, 10, 100).scoped(Scope::Account(0)),
    ]);
    let from = |scope| Cost::new().with_scoped(scope, RequestWeight, 1);
    let order_from = |scope| from(scope).with_scoped(Scope::Account(0), Orders, 1);
    let p = l.try_reserve("s", Lane::Order, from(a)).unwrap();
    let start = Instant::now();
    l.observe(
        &p,
        &Observation {
            usage: vec![],
            verdict: Verdict::Throttled { retry_after: 5 * SEC },
            scope: a,
        },
    );
    let until_ms = T0 + 5_000 + resume_margin_ms(5_000);
    // Everything leaving from A waits, an order on the account included; B goes on.
    for cost in [from(a), order_from(a)] {
        assert_eq!(
            l.try_reserve("s", Lane::Cancel, cost).unwrap_err(),
            LedgerError::Throttled { until_ms }
        );
    }
    let waiter = tokio::spawn({
        let l = l.clone();
        let cost = order_from(a);
        async move { l.reserve("s", Lane::Order, cost, 10 * SEC).await }
    });
    tokio::task::yield_now().await;
    l.try_reserve("s", Lane::MarketData, from(b)).unwrap();
    // A waiter on A sets nothing aside: B's orders take the account's pool meanwhile.
    l.try_reserve("s", Lane::Order, order_from(b)).unwrap();
    tokio::time::advance(2 * SEC).await;
    l.try_reserve("s", Lane::Order, order_from(b)).unwrap();
    let status = l.status("s");
    let scope_state = |scope| {
        let p = status.pools.iter().find(|p| p.scope == scope).expect("pool present");
        (p.backoff, p.backoff_until_ms)
    };
    assert_eq!(scope_state(a), (BackoffState::Throttled, Some(until_ms)));
    assert_eq!(scope_state(b), (BackoffState::Normal, None));
    // Once per scope stopped, with why and how long is left (2 s of the wait have passed).
    let left_ms = until_ms - T0 - 2_000;
    assert_eq!(
        status.backoffs(),
        vec![ScopeBackoffStatus {
            scope: a,
            scope_name: None,
            state: BackoffState::Throttled,
            until_ms,
            left_ms,
        }]
    );
    assert_eq!(status.backoffs()[0].state.http_status(), Some(429));
    assert_eq!(status.now_ms, T0 + 2_000, "the time the times left count from");
    assert!(status
        .pools
        .iter()
        .all(|p| p.backoff_until_ms.map(|until| status.left_ms(until)) == (p.scope == a).then_some(left_ms)));
    assert_eq!(
        (status.state, status.resume_at_ms),
        (BackoffState::Throttled, Some(until_ms))
    );
    // The waiter on A is admitted exactly when A's back-off ends, not a ms before.
    let permit = waiter.await.unwrap().unwrap();
    assert_eq!(permit.sent_at_ms, until_ms);
    assert_eq!(Instant::now() - start, Duration::from_millis((until_ms - T0) as u64));
    assert_eq!(l.status("s").state, BackoffState::Normal);
}

#[tokio::test(start_paused = true)]
async fn jitter_delays_the_resume_within_its_bound() {
    let l = ledger_with(
        weight_per_minute(100),
        LedgerConfig {
            backoff_jitter: Duration::from_millis(250),
            ..config()
        },
    );
    l.enter_backoff(Scope::Ip(0), &Verdict::Throttled { retry_after: 2 * SEC });
    let resume = l.status("s").resume_at_ms.unwrap();
    let end = T0 + 2_000 + resume_margin_ms(2_000);
    assert!((end..=end + 250).contains(&resume), "{resume}");
    let p = l.reserve("s", Lane::Order, weight(1), 5 * SEC).await.unwrap();
    assert_eq!(p.sent_at_ms, resume);
}

#[tokio::test(start_paused = true)]
async fn new_limits_keep_counts_and_wake_waiters() {
    let l = ledger(weight_per_minute(10));
    l.try_reserve("s", Lane::Order, weight(10)).unwrap();
    let waiter = tokio::spawn({
        let l = l.clone();
        async move { l.reserve("s", Lane::Order, weight(5), 30 * SEC).await }
    });
    tokio::time::advance(SEC).await;
    l.set_limits(vec![
        RateLimit::new(RequestWeight, Minute, 1, 20),
        RateLimit::new(Orders, Second, 10, 5),
    ]);
    assert_eq!(waiter.await.unwrap().unwrap().sent_at_ms, T0 + 1_000);
    let st = l.status("s");
    assert_eq!(
        (pool(&st, RequestWeight).used, pool(&st, RequestWeight).limit),
        (15, 20)
    );
    assert_eq!(l.limits().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn shrinking_limits_fail_waiters_that_can_never_fit() {
    let l = ledger(weight_per_minute(100));
    l.try_reserve("s", Lane::Order, weight(100)).unwrap();
    let waiter = tokio::spawn({
        let l = l.clone();
        async move { l.reserve("s", Lane::Order, weight(50), 300 * SEC).await }
    });
    tokio::task::yield_now().await;
    l.set_limits(weight_per_minute(20));
    assert!(matches!(waiter.await.unwrap(), Err(LedgerError::TooLarge(_))));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_frees_those_behind_it() {
    let l = ledger(weight_per_minute(10));
    l.try_reserve("s", Lane::Order, weight(5)).unwrap();
    let big = tokio::spawn({
        let l = l.clone();
        async move { l.reserve("s", Lane::Order, weight(8), 300 * SEC).await }
    });
    tokio::task::yield_now().await;
    let small = tokio::spawn({
        let l = l.clone();
        async move { l.reserve("s", Lane::Order, weight(2), 300 * SEC).await }
    });
    tokio::task::yield_now().await;
    big.abort();
    let p = small.await.unwrap().unwrap();
    assert_eq!(p.sent_at_ms, T0);
}

#[tokio::test(start_paused = true)]
async fn the_server_offset_moves_the_windows() {
    let l = ledger(vec![RateLimit::new(RequestWeight, Second, 10, 5)]);
    l.set_server_offset_ms(9_500);
    assert_eq!(l.now_ms(), T0 + 9_500);
    l.try_reserve("s", Lane::Order, weight(5)).unwrap();
    let p = l.reserve("s", Lane::Order, weight(1), 5 * SEC).await.unwrap();
    assert_eq!(p.sent_at_ms, T0 + 10_000, "resets at the exchange's :10, 500 ms later");
}

#[tokio::test(start_paused = true)]
async fn a_closed_ledger_refuses_and_releases_waiters() {
    let l = ledger(weight_per_minute(1));
    l.try_reserve("s", Lane::Order, weight(1)).unwrap();
    let waiter = tokio::spawn({
        let l = l.clone();
        async move { l.reserve("s", Lane::Order, weight(1), 300 * SEC).await }
    });
    tokio::task::yield_now().await;
    l.close().unwrap();
    assert_eq!(waiter.await.unwrap().unwrap_err(), LedgerError::Closed);
    assert_eq!(
        l.try_reserve("s", Lane::Cancel, weight(0)).unwrap_err(),
        LedgerError::Closed
    );
}

mod persistence {
    use super::*;

    fn persisted(dir: &std::path::Path) -> LedgerConfig {
        LedgerConfig {
            state_dir: Some(dir.to_path_buf()),
            ..config()
        }
    }

    /// A new ledger on the same state dir, with a clock reading the current (paused)
    /// time, as a restarted process would see it; `start` is when exchange time was `T0`.
    fn reopen(dir: &std::path::Path, start: Instant) -> Ledger {
        let now = T0 + (Instant::now() - start).as_millis() as i64;
        Ledger::new(
            weight_per_minute(100),
            persisted(dir),
            Arc::new(TokioClock::starting_at(now)),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_mid_window_keeps_the_count() {
        let start = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let l = ledger_with(weight_per_minute(100), persisted(dir.path()));
        l.try_reserve("s", Lane::Order, weight(60)).unwrap();
        l.save().unwrap();
        assert!(!dir.path().join("ledger.json.tmp").exists());
        tokio::time::advance(30 * SEC).await;
        let again = reopen(dir.path(), start);
        assert_eq!(pool(&again.status("s"), RequestWeight).used, 60);
        assert!(again.try_reserve("s", Lane::Order, weight(41)).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_keeps_the_count_of_a_pool_the_defaults_lack() {
        let start = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        // The exchange announced a 10-second pool the configured defaults do not have.
        let announced = vec![RateLimit::new(RequestWeight, Second, 10, 50)];
        let l = ledger_with(weight_per_minute(100), persisted(dir.path()));
        l.set_limits(announced.clone());
        l.try_reserve("s", Lane::Order, weight(45)).unwrap();
        l.save().unwrap();
        tokio::time::advance(2 * SEC).await;
        let again = reopen(dir.path(), start);
        assert!(
            again.try_reserve("s", Lane::Order, weight(6)).is_err(),
            "the 10-second window's 45 carried over"
        );
        // Announcing the same pool again keeps the count.
        again.set_limits(announced);
        assert_eq!(pool(&again.status("s"), RequestWeight).used, 45);
        tokio::time::advance(10 * SEC).await;
        assert!(again.try_reserve("s", Lane::Order, weight(50)).is_ok(), "a new window");
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_after_the_window_discards_the_count() {
        let start = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let l = ledger_with(weight_per_minute(100), persisted(dir.path()));
        l.try_reserve("s", Lane::Order, weight(60)).unwrap();
        l.save().unwrap();
        tokio::time::advance(61 * SEC).await;
        assert_eq!(pool(&reopen(dir.path(), start).status("s"), RequestWeight).used, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_during_a_ban_keeps_the_ban() {
        let start = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let l = ledger_with(weight_per_minute(100), persisted(dir.path()));
        l.enter_backoff(Scope::Ip(0), &Verdict::Banned { until_ms: T0 + 300_000 });
        l.save().unwrap();
        tokio::time::advance(100 * SEC).await;
        let again = reopen(dir.path(), start);
        let resume = T0 + 300_000 + resume_margin_ms(300_000);
        assert_eq!(
            again.try_reserve("s", Lane::Cancel, weight(1)).unwrap_err(),
            LedgerError::Banned { until_ms: resume }
        );
        tokio::time::advance(Duration::from_millis((resume - T0) as u64 - 100_000)).await;
        let after = reopen(dir.path(), start);
        assert_eq!(after.status("s").state, BackoffState::Normal);
    }

    #[tokio::test(start_paused = true)]
    async fn a_corrupt_file_starts_fresh() {
        let start = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ledger.json"), b"{\"version\": 1, \"pools\": [tru").unwrap();
        let l = reopen(dir.path(), start);
        assert_eq!(pool(&l.status("s"), RequestWeight).used, 0);
        l.try_reserve("s", Lane::Order, weight(7)).unwrap();
        l.save().unwrap();
        assert_eq!(pool(&reopen(dir.path(), start).status("s"), RequestWeight).used, 7);
    }

    #[tokio::test(start_paused = true)]
    async fn autosave_writes_changes_and_a_final_save_on_stop() {
        let start = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let l = ledger_with(weight_per_minute(100), persisted(dir.path()));
        let autosave = l.spawn_autosave(SEC);
        l.try_reserve("s", Lane::Order, weight(5)).unwrap();
        let file = dir.path().join("ledger.json");
        let written = tokio::time::timeout(10 * SEC, async {
            while !file.exists() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(written.is_ok(), "autosave never wrote the file");
        l.try_reserve("s", Lane::Order, weight(6)).unwrap();
        autosave.stop().await;
        assert_eq!(pool(&reopen(dir.path(), start).status("s"), RequestWeight).used, 11);
    }
}

#[tokio::test(start_paused = true)]
async fn pools_of_every_scope_and_window_kind_count_only_their_own_draws() {
    use WindowKind::{Bucket, Fixed, Rolling};
    let ip = Scope::Ip(0);
    let account = Scope::Account(1);
    let connection = Scope::Connection(2);
    let endpoint = Scope::Endpoint(3);
    let instrument = Scope::AccountInstrument {
        account: 1,
        instrument: 7,
    };
    let l = ledger(vec![
        RateLimit::new(RequestWeight, Minute, 1, 100).scoped(ip).windowed(Fixed),
        RateLimit::new(Orders, Second, 10, 3).scoped(account).windowed(Rolling),
        RateLimit::new(RawRequests, Second, 1, 2)
            .scoped(connection)
            .windowed(Bucket),
        RateLimit::new(RawRequests, Second, 10, 5)
            .scoped(endpoint)
            .windowed(Fixed),
        RateLimit::new(Orders, Second, 10, 2)
            .scoped(instrument)
            .windowed(Bucket),
    ]);
    let status = |scope: Scope| {
        l.status("s")
            .pools
            .into_iter()
            .find(|p| p.scope == scope)
            .expect("pool present")
    };
    // A request on the endpoint, from the IP: two pools, the others untouched.
    let get = Cost::new()
        .with_scoped(ip, RequestWeight, 4)
        .with_scoped(endpoint, RawRequests, 1);
    for _ in 0..5 {
        l.try_reserve("s", Lane::Order, get).unwrap();
    }
    assert!(matches!(
        l.try_reserve("s", Lane::Order, get),
        Err(LedgerError::RateLimited { until_ms }) if until_ms == T0 + 10_000
    ));
    // Another endpoint has no pool of its own here: only the IP's weight counts.
    l.try_reserve(
        "s",
        Lane::Order,
        Cost::new()
            .with_scoped(Scope::Endpoint(9), RawRequests, 1)
            .with_scoped(ip, RequestWeight, 1),
    )
    .unwrap();
    assert_eq!((status(ip).used, status(endpoint).used), (21, 5));
    assert_eq!(
        (status(account).used, status(connection).used, status(instrument).used),
        (0, 0, 0)
    );

    // Rolling: three orders spread over the window; room returns as each leaves it.
    let place = Cost::new()
        .with_scoped(account, Orders, 1)
        .with_scoped(instrument, Orders, 1);
    let place_other = Cost::new().with_scoped(account, Orders, 1);
    l.try_reserve("s", Lane::Order, place).unwrap();
    tokio::time::advance(Duration::from_millis(4_000)).await;
    l.try_reserve("s", Lane::Order, place_other).unwrap();
    l.try_reserve("s", Lane::Order, place_other).unwrap();
    assert!(
        l.try_reserve("s", Lane::Order, place_other).is_err(),
        "3 in the last 10 s"
    );
    // Past T0+10 s a fixed window would have reset; the rolling one still holds the first order
    // until its whole slice has left the window.
    tokio::time::advance(Duration::from_millis(6_500)).await;
    assert_eq!(status(account).used, 3);
    tokio::time::advance(Duration::from_millis(1_000)).await;
    assert_eq!(status(account).used, 2, "the first order left the window");
    l.try_reserve("s", Lane::Order, place_other).unwrap();

    // Full again: the next order waits until the two of second 4 have left the window.
    let start = Instant::now();
    l.reserve("s", Lane::Order, place, 20 * SEC).await.unwrap();
    assert_eq!(Instant::now() - start, Duration::from_millis(3_500));

    // Bucket: 2 per 10 s per instrument, draining one unit every 5 s.
    assert_eq!(status(instrument).used, 1, "the first order drained, this one not yet");
    let only_instrument = Cost::new().with_scoped(instrument, Orders, 1);
    l.try_reserve("s", Lane::Order, only_instrument).unwrap();
    let start = Instant::now();
    let p = l.reserve("s", Lane::Order, only_instrument, 20 * SEC).await.unwrap();
    assert_eq!(Instant::now() - start, 5 * SEC, "one unit drains every 5 s");
    assert_eq!(status(instrument).used, 2);
    l.credit(&p, Orders, 1);
    assert_eq!(status(instrument).used, 1, "a credit returns to the bucket");

    // Bucket per connection: 2 per second.
    let frame = Cost::new().with_scoped(connection, RawRequests, 1);
    l.try_reserve("s", Lane::Order, frame).unwrap();
    l.try_reserve("s", Lane::Order, frame).unwrap();
    assert!(l.try_reserve("s", Lane::Order, frame).is_err());
    tokio::time::advance(Duration::from_millis(500)).await;
    l.try_reserve("s", Lane::Order, frame).unwrap();
    let s = status(connection);
    assert_eq!((s.window, s.used), (Bucket, 2));
}
