//! Restarts: stopped in the middle of a full window or of a ban, the runner started again
//! with the same state dir neither sends during the ban nor bursts over the window; killed
//! with SIGKILL, it comes back knowing its orders (journal) and its windows (ledger).

use std::fs;
use std::path::Path;

use runner::ledger::{IntervalUnit, PoolKind, RateLimit};
use runner::sim::SimConfig;
use rust_decimal::Decimal;
use serde_json::Value;

use crate::harness::{
    arrivals_between, config_with_weight, count_requests, field, poll_until, seen_or_wait, stop, strategy,
    summary_throttles, Exchange,
};
use crate::support::Running;

#[test]
fn a_restart_in_the_middle_of_a_full_window_does_not_burst_over_it() {
    const WINDOW_MS: i64 = 15_000;
    const LIMIT: u64 = 300;
    let exchange = Exchange::start(config_with_weight((WINDOW_MS / 1000) as u32, LIMIT));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut first = Running::spawn(exchange.runner(&state, &[strategy("poller")]));
    first.wait_for("polling", |l| l.contains("poll ok"));

    // A window the runner has nearly filled, with time left to restart inside it.
    let window = poll_until("a nearly full window with time left", || {
        let now = exchange.now_ms();
        let start = now / WINDOW_MS * WINDOW_MS;
        let used = weight_in_window(&exchange, start);
        (used >= LIMIT * 9 / 10 && start + WINDOW_MS - now > 8_000).then_some(start)
    });
    let first_text = stop(first);
    assert_eq!(summary_throttles(&first_text), (0, 0), "{first_text}");
    let used_at_stop = weight_in_window(&exchange, window);

    let mut second = Running::spawn(exchange.runner(&state, &[strategy("poller")]));
    second.wait_for("polling after the restart", |l| l.contains("poll ok"));
    let second_text = stop(second);

    let stats = exchange.stats();
    assert_eq!(
        (stats.count_429, stats.count_418),
        (0, 0),
        "the restarted runner went over the window it inherited ({used_at_stop} of {LIMIT} used at the stop):\n{second_text}"
    );
    assert_eq!(summary_throttles(&second_text), (0, 0), "{second_text}");
    let window_total = weight_in_window(&exchange, window);
    println!(
        "figure restart mid-window: {used_at_stop} of {LIMIT} used at the stop, {window_total} at the window's end"
    );
    assert!(window_total <= LIMIT);
}

fn weight_in_window(exchange: &Exchange, start: i64) -> u64 {
    exchange
        .stats()
        .pools
        .iter()
        .find(|p| p.kind == PoolKind::RequestWeight)
        .and_then(|p| p.windows.iter().find(|w| w.start == start).map(|w| w.count))
        .unwrap_or(0)
}

#[test]
fn a_restart_in_the_middle_of_a_ban_sends_nothing_until_it_ends() {
    const BAN_SECS: i64 = 5;
    let exchange = Exchange::start(config_with_weight(60, 6000));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut first = Running::spawn(exchange.runner(&state, &[strategy("poller")]));
    first.wait_for("polling", |l| l.contains("poll ok"));

    let ban_ends = exchange.now_ms() + BAN_SECS * 1000;
    exchange.sim().faults().force_418(BAN_SECS as u64);
    let banned = poll_until("the 418 in the request log", || {
        exchange.log().into_iter().find(|r| r.status == 418)
    });
    first.wait_for("the ban to reach the strategy", |l| l.contains("poll err banned"));
    // A strategy waiting out the ban holds a graceful stop until its call returns: stop the
    // process hard once the ledger has saved the ban.
    poll_until("the ledger to save the ban", || {
        let text = fs::read_to_string(state.join("ledger.json")).ok()?;
        let json: Value = serde_json::from_str(&text).ok()?;
        (json["banned_until_ms"].as_i64()? > banned.at_ms).then_some(())
    });
    let first_text = first.seen.join("\n");
    drop(first);
    assert!(
        exchange.now_ms() < ban_ends - 1_000,
        "the first run took too long to stop for this test to mean anything"
    );

    let mut second = Running::spawn(exchange.runner(&state, &[strategy("poller")]));
    second.wait_for("polling after the ban", |l| {
        l.contains("poll ok") && field(l, "at").is_some_and(|at| at >= ban_ends)
    });
    let second_text = stop(second);

    let during = arrivals_between(&exchange.log(), banned.at_ms, ban_ends);
    if let Some(first) = exchange.log().iter().find(|r| r.at_ms >= ban_ends) {
        println!(
            "figure restart mid-ban: first request {} ms after the ban ended",
            first.at_ms - ban_ends
        );
    }
    assert!(
        during.is_empty(),
        "requests arrived during the ban, across the restart: {during:?}\nfirst run:\n{first_text}\nsecond run:\n{second_text}"
    );
    let stats = exchange.stats();
    assert_eq!((stats.count_429, stats.count_418), (0, 1));
}

/// The saved `used` of the ledger's pool of `kind` per `unit` (one unit), with its window start.
fn saved_pool(state: &Path, kind: &str, unit: &str) -> Option<(i64, u64)> {
    let text = fs::read_to_string(state.join("ledger.json")).ok()?;
    let json: Value = serde_json::from_str(&text).ok()?;
    json["pools"].as_array()?.iter().find_map(|p| {
        let interval = &p["interval"];
        let matches = p["kind"] == kind && interval["unit"] == unit && interval["num"] == 1;
        matches.then(|| {
            (
                p["window_start_ms"].as_i64().unwrap_or(0),
                p["used"].as_u64().unwrap_or(0),
            )
        })
    })
}

fn journal_ids(state: &Path) -> Vec<String> {
    fs::read_to_string(state.join("orders.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["t"] == "new")
        .filter_map(|r| r["client_id"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn after_kill_9_the_journal_and_the_ledger_come_back_and_orders_are_looked_up_not_resent() {
    const DAY_MS: i64 = 86_400_000;
    let mut config = SimConfig::default();
    // A day-long window of a pool the exchange reports in no header: after the restart
    // the runner can only know its count from the saved ledger.
    config
        .limits
        .push(RateLimit::new(PoolKind::RawRequests, IntervalUnit::Day, 1, 100_000_000));
    let exchange = Exchange::start(config);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut first = Running::spawn(exchange.runner(&state, &[strategy("keeper")]));
    for id in ["keep-1", "keep-2", "keep-3"] {
        first.wait_for("a resting order", |l| l.contains(&format!("placed {id} NEW")));
    }
    first.wait_for("the market order", |l| l.contains("placed keep-m FILLED"));
    let (day_start, raw_saved) = poll_until("the ledger to save a day's requests", || {
        saved_pool(&state, "RawRequests", "Day").filter(|(_, used)| *used >= 100)
    });
    // SIGKILL: no shutdown path runs, nothing is flushed or cancelled.
    drop(first);

    let ids = journal_ids(&state);
    for id in ["keep-1", "keep-2", "keep-3", "keep-m"] {
        assert!(
            ids.iter().any(|j| j == id),
            "{id} journaled before it was sent: {ids:?}"
        );
    }
    let placed = exchange.stats().orders_placed;
    assert_eq!(placed, 4);

    // While the runner is down the market trades through the resting buys.
    let price = exchange.sim().orders_by_client_id("keep-1")[0].price;
    assert!(exchange.sim().set_price("BTCUSDT", price * Decimal::new(9, 1)));
    poll_until("the exchange to fill the resting orders", || {
        ["keep-1", "keep-2", "keep-3"]
            .iter()
            .all(|id| exchange.sim().orders_by_client_id(id)[0].status == "FILLED")
            .then_some(())
    });
    let lookups_before = count_requests(&exchange.log(), "GET", "/api/v3/order");

    let mut second = Running::spawn(exchange.runner(&state, &[strategy("keeper_after")]));
    let restored = second.wait_for("the restored ledger", |l| l.contains("restored raw_1d_used="));
    for id in ["keep-1", "keep-2", "keep-3"] {
        seen_or_wait(&mut second, "the strategy to learn the fill", |l| {
            l.contains(&format!("on_order {id} FILLED"))
        });
    }
    let second_text = stop(second);

    if exchange.now_ms() / DAY_MS * DAY_MS == day_start {
        let used = field(&restored, "raw_1d_used").unwrap_or(-1);
        println!("figure kill -9: {raw_saved} requests of the day saved, {used} known at on_start after the restart");
        assert!(
            used >= raw_saved as i64,
            "the day's request count ({raw_saved} saved) was restored, not restarted from zero: {restored}"
        );
    }
    assert_eq!(
        exchange.stats().orders_placed,
        placed,
        "nothing re-sent:\n{second_text}"
    );
    assert_eq!(count_requests(&exchange.log(), "POST", "/api/v3/order"), 4);
    assert!(
        count_requests(&exchange.log(), "GET", "/api/v3/order") >= lookups_before + 3,
        "the open orders were looked up"
    );
    for id in ["keep-1", "keep-2", "keep-3", "keep-m"] {
        assert_eq!(exchange.sim().orders_by_client_id(id).len(), 1, "{id} exists once");
    }
    let stats = exchange.stats();
    assert_eq!((stats.count_429, stats.count_418), (0, 0));
}
