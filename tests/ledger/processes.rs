//! Real `runner` processes sharing one budget through a real `redis-server`, each running a
//! hostile strategy against one simulator with small limits: the simulator's own counts and
//! request log are the ground truth (nothing over a limit, no 429 or 418, most of the budget
//! used, nothing sent by anyone during a back-off, Redis lost, restarted or paused).

use std::path::{Path, PathBuf};
use std::process::Command;

use runner::ledger::PoolKind;
use runner::sim::{SimStats, WindowUsage};

use crate::harness::{config_with_weight, poll_until, stop, summary_throttles, Exchange};
use crate::redis_server::RedisServer;
use crate::support::{repo_root, Running};

/// Every weight window lasts this long: a run crosses several in a few seconds.
const WINDOW_MS: i64 = 1000;
/// The hammer strategy, asking for `depth_limit` levels a call (500: weight 25; 1000: weight 50).
fn hammer(dir: &tempfile::TempDir, depth_limit: u32) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("tests/ledger/lua/hammer.lua")).expect("hammer.lua");
    let text = text.replace("local DEPTH_LIMIT = 500", &format!("local DEPTH_LIMIT = {depth_limit}"));
    assert!(text.contains(&format!("DEPTH_LIMIT = {depth_limit}")));
    let path = dir.path().join("hammer.lua");
    std::fs::write(&path, text).expect("write the strategy");
    path
}

/// A simulator enforcing `weight` per second, with short bans.
fn exchange(weight: u64) -> Exchange {
    Exchange::start(config_with_weight((WINDOW_MS / 1000) as u32, weight))
}

/// `runner` with the hammer, sharing `group`'s budget in `redis`, starting with the
/// simulator's weight limit so even its first requests count in the shared pool.
fn hammer_command(exchange: &Exchange, redis_url: &str, weight: u64, strategy: &Path, state: PathBuf) -> Command {
    let mut cmd = exchange.runner(&state, &[strategy.to_path_buf()]);
    cmd.args(["--ledger", redis_url, "--ledger-group", "test-ip"])
        .arg("--limit")
        .arg(format!("REQUEST_WEIGHT={weight}/{}s", WINDOW_MS / 1000));
    cmd
}

/// What a fleet runs: `n` processes, each with the hammer asking for `depth_limit` levels.
struct Fleet<'a> {
    exchange: &'a Exchange,
    redis_url: String,
    weight: u64,
    n: usize,
    depth_limit: u32,
}

/// The fleet's processes started at once; returns when every one has had an answer.
fn start_fleet(f: &Fleet, dir: &tempfile::TempDir) -> Vec<Running> {
    let strategy = hammer(dir, f.depth_limit);
    let mut fleet: Vec<Running> = (0..f.n)
        .map(|i| {
            Running::spawn(hammer_command(
                f.exchange,
                &f.redis_url,
                f.weight,
                &strategy,
                dir.path().join(format!("state-{i}")),
            ))
        })
        .collect();
    for run in &mut fleet {
        run.wait_for("the hammer's first answer", |l| l.contains("hammer got="));
    }
    fleet
}

/// Stops every process; each must exit cleanly and report no 429 or 418. Returns their output.
fn stop_fleet(fleet: Vec<Running>) -> Vec<String> {
    for run in &fleet {
        run.terminate();
    }
    fleet
        .into_iter()
        .map(|run| {
            let text = stop(run);
            assert_eq!(summary_throttles(&text), (0, 0), "{text}");
            text
        })
        .collect()
}

/// Waits until the simulator's clock has passed `at_ms`.
fn wait_until(exchange: &Exchange, at_ms: i64) {
    poll_until("the simulator's clock", || (exchange.now_ms() >= at_ms).then_some(()));
}

fn weight_pool(stats: &SimStats) -> &runner::sim::PoolStats {
    stats
        .pools
        .iter()
        .find(|p| p.kind == PoolKind::RequestWeight)
        .expect("a weight pool")
}

/// No 429 or 418 at the simulator, and no window of any pool over its limit.
fn assert_never_over(stats: &SimStats) {
    assert_eq!((stats.count_429, stats.count_418), (0, 0), "{stats:?}");
    for pool in &stats.pools {
        for w in &pool.windows {
            assert!(
                w.count <= pool.limit,
                "{} {}: window {} counted {} > {}",
                pool.kind,
                pool.interval,
                w.start,
                w.count,
                pool.limit
            );
        }
    }
}

/// The weight windows that lie wholly within `[from_ms, to_ms)`, each with its count (0 if
/// the simulator saw nothing in it); at least `n` of them.
fn windows_within(stats: &SimStats, from_ms: i64, to_ms: i64, n: usize) -> Vec<WindowUsage> {
    let first = from_ms.div_euclid(WINDOW_MS) * WINDOW_MS + WINDOW_MS;
    let seen = &weight_pool(stats).windows;
    let windows: Vec<WindowUsage> = (0..)
        .map(|i| first + i * WINDOW_MS)
        .take_while(|start| start + WINDOW_MS <= to_ms)
        .map(|start| WindowUsage {
            start,
            count: seen.iter().find(|w| w.start == start).map_or(0, |w| w.count),
        })
        .collect();
    assert!(windows.len() >= n, "only {} full windows: {windows:?}", windows.len());
    windows
}

#[test]
fn four_processes_hammering_one_ip_stay_within_every_window_and_use_most_of_it() {
    const WEIGHT: u64 = 1000;
    let redis = RedisServer::start();
    let exchange = exchange(WEIGHT);
    let dir = tempfile::tempdir().unwrap();
    let fleet = start_fleet(
        &Fleet {
            exchange: &exchange,
            redis_url: redis.url(),
            weight: WEIGHT,
            n: 4,
            depth_limit: 500,
        },
        &dir,
    );
    let all_running = exchange.now_ms();
    wait_until(&exchange, all_running + 5 * WINDOW_MS);
    let before_stop = exchange.now_ms();
    let outputs = stop_fleet(fleet);
    for text in &outputs {
        assert!(
            text.contains("REQUEST_WEIGHT 1s ip0 shared by 4"),
            "the summary names the shared pool and its 4 processes:\n{text}"
        );
    }

    let stats = exchange.stats();
    assert_never_over(&stats);
    // From the second window on: the first holds the last process's start.
    let full = windows_within(&stats, all_running + WINDOW_MS, before_stop, 2);
    // Market data may fill a window up to 95 % (the rest is kept for orders).
    let market_cap = WEIGHT - (WEIGHT as f64 * 0.05).ceil() as u64;
    for w in &full {
        assert!(
            w.count * 10 >= WEIGHT * 9,
            "window {} used {} of {WEIGHT} while demand exceeded it: {full:?}",
            w.start,
            w.count
        );
        assert!(w.count <= market_cap, "{full:?}");
    }
    println!(
        "figure: 4 processes, weight per window (limit {WEIGHT}): {:?}",
        full.iter().map(|w| w.count).collect::<Vec<_>>()
    );
}

#[test]
fn a_429_seen_by_one_process_stops_every_process_until_retry_after_has_passed() {
    // 100 a second and a call of weight 50: one call a second for the whole fleet, so the
    // 429 answers the only request in flight and whatever follows is sent after it.
    const WEIGHT: u64 = 100;
    const RETRY_AFTER_SECS: i64 = 2;
    let redis = RedisServer::start();
    let exchange = exchange(WEIGHT);
    let dir = tempfile::tempdir().unwrap();
    let fleet = start_fleet(
        &Fleet {
            exchange: &exchange,
            redis_url: redis.url(),
            weight: WEIGHT,
            n: 3,
            depth_limit: 1000,
        },
        &dir,
    );
    exchange.sim().faults().force_429(RETRY_AFTER_SECS as u64);
    let throttled = poll_until("the 429 in the request log", || {
        exchange.log().into_iter().find(|r| r.status == 429)
    });
    let wait_ends = throttled.at_ms + RETRY_AFTER_SECS * 1000;
    let resumed = poll_until("a successful request after Retry-After", || {
        exchange
            .log()
            .into_iter()
            .find(|r| r.status == 200 && r.at_ms >= wait_ends)
    });
    let log = exchange.log();
    let during: Vec<_> = log
        .iter()
        .filter(|r| r.at_ms > throttled.at_ms && r.at_ms < wait_ends)
        .collect();
    assert!(
        during.is_empty(),
        "requests arrived during the Retry-After wait: {during:?}"
    );
    println!(
        "figure: first request {} ms after Retry-After ended",
        resumed.at_ms - wait_ends
    );
    let outputs: Vec<String> = {
        for run in &fleet {
            run.terminate();
        }
        fleet.into_iter().map(stop).collect()
    };
    let stats = exchange.stats();
    assert_eq!((stats.count_429, stats.count_418), (1, 0), "only the injected 429");
    let (told, others): (Vec<&String>, Vec<&String>) = outputs.iter().partition(|t| summary_throttles(t).0 > 0);
    assert_eq!(told.len(), 1, "exactly one process received the 429");
    for text in others {
        assert!(
            text.contains("another process on this IP was told to back off"),
            "every other process joined the back-off:\n{text}"
        );
    }
}

/// What each process has printed so far: `each_says` looks only at lines printed after it.
fn marks(fleet: &[Running]) -> Vec<usize> {
    fleet.iter().map(|run| run.seen.len()).collect()
}

/// Waits in each process's output, after its mark, for a line containing `text`.
fn each_says(fleet: &mut [Running], marks: &[usize], what: &str, text: &str) {
    for (run, mark) in fleet.iter_mut().zip(marks) {
        if !run.seen[*mark..].iter().any(|l| l.contains(text)) {
            run.wait_for(what, |l| l.contains(text));
        }
    }
}

/// Waits until each process's last word on how many processes share the budget is `n`
/// (its share without Redis is the limit divided by that).
fn each_counts(fleet: &mut [Running], n: usize) {
    const COUNT: &str = "processes sharing this budget: ";
    let count = |line: &str| -> Option<usize> {
        let after = &line[line.find(COUNT)? + COUNT.len()..];
        after.split(' ').next()?.parse().ok()
    };
    for run in fleet.iter_mut() {
        let last = run.seen.iter().rev().find_map(|l| count(l));
        if last != Some(n) {
            run.wait_for(&format!("{COUNT}{n}"), |l| count(l) == Some(n));
        }
    }
}

/// What each process printed lately and what the simulator saw last, for a failure message.
fn lately(fleet: &mut [Running], exchange: &Exchange) -> String {
    let mut text = String::new();
    for (i, run) in fleet.iter_mut().enumerate() {
        run.catch_up();
        let tail = run.seen.len().saturating_sub(25);
        text += &format!("--- process {i}:\n{}\n", run.seen[tail..].join("\n"));
    }
    let log = exchange.log();
    let tail = log.len().saturating_sub(15);
    text + &format!("--- simulator:\n{:?}", &log[tail..])
}

/// Without Redis each process spends, from the first whole window after it noticed, its
/// share of the limit: the whole windows from `from_ms` for the next `WINDOWS` windows are
/// within the limit and carry traffic. Returns their counts.
fn fallback_windows(fleet: &mut [Running], exchange: &Exchange, from_ms: i64, weight: u64) -> Vec<u64> {
    const WINDOWS: i64 = 2;
    wait_until(exchange, from_ms + (WINDOWS + 1) * WINDOW_MS);
    let stats = exchange.stats();
    assert_never_over(&stats);
    let windows = windows_within(&stats, from_ms, from_ms + (WINDOWS + 1) * WINDOW_MS, WINDOWS as usize);
    for w in &windows {
        assert!(
            w.count >= weight / 2,
            "window {} used only {} of {weight} on the local shares: {windows:?}\n{}",
            w.start,
            w.count,
            lately(fleet, exchange)
        );
    }
    windows.iter().map(|w| w.count).collect()
}

#[test]
fn redis_killed_and_restarted_empty_then_paused_longer_than_a_window_draws_no_429() {
    const WEIGHT: u64 = 1000;
    const PROCESSES: usize = 4;
    let redis = RedisServer::start();
    let exchange = exchange(WEIGHT);
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = start_fleet(
        &Fleet {
            exchange: &exchange,
            redis_url: redis.url(),
            weight: WEIGHT,
            n: PROCESSES,
            depth_limit: 500,
        },
        &dir,
    );
    const UNAVAILABLE: &str = "SHARED LEDGER UNAVAILABLE";
    const BACK: &str = "shared ledger reachable again";
    each_counts(&mut fleet, PROCESSES);

    // Killed mid-window: every key is lost. Each process spends what it holds of the window
    // under way, then its share (a quarter of the limit) from the next window on.
    let mark = marks(&fleet);
    let port = redis.stop();
    each_says(&mut fleet, &mark, "the loss of Redis", UNAVAILABLE);
    let lost_at = exchange.now_ms();
    let killed = fallback_windows(&mut fleet, &exchange, lost_at, WEIGHT);

    // Back, empty, on the same port.
    let mark = marks(&fleet);
    let redis = RedisServer::start_on(port);
    each_says(&mut fleet, &mark, "Redis back", BACK);
    let back_at = exchange.now_ms();
    wait_until(&exchange, back_at + 2 * WINDOW_MS);
    assert!(
        exchange
            .log()
            .iter()
            .any(|r| r.status == 200 && r.at_ms > back_at + WINDOW_MS),
        "traffic goes on after Redis came back\n{}",
        lately(&mut fleet, &exchange)
    );
    // The heartbeats went with the keys: each process counts the others again before the pause.
    each_counts(&mut fleet, PROCESSES);

    // Paused for longer than a window: answers stop coming, the processes give up on it (the
    // loud line) and spend their local shares (a quarter of the limit each) from the next
    // window on, with no 429.
    let mark = marks(&fleet);
    redis.signal("-STOP");
    each_says(&mut fleet, &mark, "the paused Redis to be given up on", UNAVAILABLE);
    let paused_at = exchange.now_ms();
    let paused = fallback_windows(&mut fleet, &exchange, paused_at, WEIGHT);
    let mark = marks(&fleet);
    redis.signal("-CONT");
    each_says(&mut fleet, &mark, "the paused Redis to be used again", BACK);
    let resumed_at = exchange.now_ms();
    wait_until(&exchange, resumed_at + 2 * WINDOW_MS);
    assert!(
        exchange
            .log()
            .iter()
            .any(|r| r.status == 200 && r.at_ms > resumed_at + WINDOW_MS),
        "traffic goes on after Redis resumed\n{}",
        lately(&mut fleet, &exchange)
    );
    assert_never_over(&exchange.stats());
    stop_fleet(fleet);
    println!("figure: {PROCESSES} processes on local shares (limit {WEIGHT}), weight per window: Redis killed {killed:?}, paused {paused:?}");
}
