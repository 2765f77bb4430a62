//! The exchange asks the runner to wait (429 with Retry-After), bans its IP (418), or
//! another process spends weight on the same IP: the simulator's request log must show
//! nothing during the wait, traffic again afterwards, and no 429 the runner could avoid.

use std::time::Duration;

use runner::ledger::PoolKind;

use crate::harness::{
    arrivals_between, config_with_weight, field, poll_until, stop, strategy, summary_throttles, Exchange,
};
use crate::support::Running;

/// Waits (in the simulator's log) for a successful request that arrived at or after `at_ms`;
/// returns how long after `at_ms` it arrived.
fn wait_for_success_after(exchange: &Exchange, at_ms: i64) -> i64 {
    let first = poll_until("a successful request after the wait", || {
        exchange.log().into_iter().find(|r| r.status == 200 && r.at_ms >= at_ms)
    });
    first.at_ms - at_ms
}

#[test]
fn after_a_429_nothing_is_sent_until_retry_after_and_then_traffic_resumes() {
    const RETRY_AFTER_SECS: i64 = 2;
    let exchange = Exchange::start(config_with_weight(60, 6000));
    let dir = tempfile::tempdir().unwrap();
    let mut run = Running::spawn(exchange.runner(&dir.path().join("state"), &[strategy("poller")]));
    run.wait_for("polling", |l| l.contains("poll ok"));

    exchange.sim().faults().force_429(RETRY_AFTER_SECS as u64);
    let throttled = poll_until("the 429 in the request log", || {
        exchange.log().into_iter().find(|r| r.status == 429)
    });
    let wait_ends = throttled.at_ms + RETRY_AFTER_SECS * 1000;
    let told = run.wait_for("the strategy to be told to back off", |l| {
        l.contains("poll err backoff")
    });
    assert!(
        field(&told, "retry_after").is_some_and(|ms| ms > 0),
        "backoff carries retry_after_ms: {told}"
    );
    let resumed_after = wait_for_success_after(&exchange, wait_ends);
    run.wait_for("the strategy polling again", |l| {
        l.contains("poll ok") && field(l, "at").is_some_and(|at| at >= wait_ends)
    });
    println!("figure 429: first request {resumed_after} ms after Retry-After ended");

    let during = arrivals_between(&exchange.log(), throttled.at_ms, wait_ends);
    assert!(
        during.is_empty(),
        "requests arrived during the Retry-After wait: {during:?}"
    );
    let text = stop(run);
    let stats = exchange.stats();
    assert_eq!(
        (stats.count_429, stats.count_418),
        (1, 0),
        "only the injected 429, never a 418"
    );
    assert_eq!(summary_throttles(&text), (1, 0), "{text}");
}

#[test]
fn after_a_418_nothing_is_sent_until_the_ban_ends_and_then_traffic_resumes() {
    const BAN_SECS: i64 = 3;
    let exchange = Exchange::start(config_with_weight(60, 6000));
    let dir = tempfile::tempdir().unwrap();
    let mut run = Running::spawn(exchange.runner(&dir.path().join("state"), &[strategy("poller")]));
    run.wait_for("polling", |l| l.contains("poll ok"));

    // The ban starts now; the runner learns of it from the answer to its next request.
    let ban_ends = exchange.now_ms() + BAN_SECS * 1000;
    exchange.sim().faults().force_418(BAN_SECS as u64);
    let banned = poll_until("the 418 in the request log", || {
        exchange.log().into_iter().find(|r| r.status == 418)
    });
    run.wait_for("the strategy to be told of the ban", |l| l.contains("poll err banned"));
    let resumed_after = wait_for_success_after(&exchange, ban_ends);
    run.wait_for("the strategy polling again", |l| {
        l.contains("poll ok") && field(l, "at").is_some_and(|at| at >= ban_ends)
    });
    println!("figure 418: first request {resumed_after} ms after the ban ended");

    let during = arrivals_between(&exchange.log(), banned.at_ms, ban_ends);
    assert!(during.is_empty(), "requests arrived during the ban: {during:?}");
    let text = stop(run);
    let stats = exchange.stats();
    assert_eq!(
        (stats.count_429, stats.count_418),
        (0, 1),
        "only the one request that found the ban was answered 418"
    );
    assert_eq!(summary_throttles(&text), (0, 1), "{text}");
}

#[test]
fn weight_spent_by_another_process_is_read_from_the_headers_and_the_rest_is_used() {
    const WINDOW_SECS: i64 = 3;
    const LIMIT: u64 = 200;
    const EXTERNAL: u64 = 100;
    const WINDOWS: usize = 3;
    let exchange = Exchange::start(config_with_weight(WINDOW_SECS as u32, LIMIT));
    let dir = tempfile::tempdir().unwrap();
    let mut run = Running::spawn(exchange.runner(&dir.path().join("state"), &[strategy("poller")]));
    run.wait_for("polling", |l| l.contains("poll ok"));

    let window_ms = WINDOW_SECS * 1000;
    let mut shared = Vec::new();
    for _ in 0..WINDOWS {
        // At the start of a window, as another process would at full speed.
        let start = (exchange.now_ms() / window_ms + 1) * window_ms;
        std::thread::sleep(Duration::from_millis((start - exchange.now_ms()).max(0) as u64));
        exchange.sim().faults().add_external_weight(EXTERNAL);
        shared.push(start);
    }
    let after_last = shared[WINDOWS - 1] + window_ms;
    wait_for_success_after(&exchange, after_last);
    let text = stop(run);

    let stats = exchange.stats();
    assert_eq!(
        (stats.count_429, stats.count_418),
        (0, 0),
        "never a 429 or 418:\n{text}"
    );
    assert_eq!(summary_throttles(&text), (0, 0), "{text}");
    let pool = stats
        .pools
        .iter()
        .find(|p| p.kind == PoolKind::RequestWeight)
        .expect("the weight pool");
    assert!(pool.peak <= LIMIT, "peak {} over the limit {LIMIT}", pool.peak);
    for start in shared {
        let used = pool
            .windows
            .iter()
            .find(|w| w.start == start)
            .map(|w| w.count)
            .unwrap_or(0);
        println!(
            "figure external weight: window {start}: {used} of {LIMIT} used, {EXTERNAL} of it by the other process"
        );
        // The runner may leave 5 % for cancels and a request's worth of rounding, no more.
        assert!(
            (LIMIT * 9 / 10..=LIMIT).contains(&used),
            "window at {start}: {used} of {LIMIT} used ({EXTERNAL} by the other process); windows: {:?}",
            pool.windows
        );
    }
}
