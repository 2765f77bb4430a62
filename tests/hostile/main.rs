//! Strategies that try hard to get the IP throttled (429) or banned (418), each run by the
//! real `runner` binary against a simulator with small limits. The verdict comes from the
//! simulator's own records: no 429, no 418, no window of any pool over its limit, and the
//! budget actually used when the strategy wants more than there is.

#[path = "../support/mod.rs"]
mod support;

mod harness;
mod sandbox;

use std::time::Duration;

use harness::{small_limits, strategy, Exchange};
use runner::ledger::limits::PoolKind;

/// Long enough to cross at least three whole windows wherever the run starts.
const RUN: Duration = Duration::from_secs(9);
/// Windows with any use a run must show: three whole ones and the partial first one.
const WINDOWS: usize = 4;
/// Market data may not take the last 5 % of a window: 90 % is the bar for "used".
const USED: f64 = 0.9;

#[test]
fn a_weight_250_depth_loop_is_held_to_the_limit() {
    // Two snapshots of 250 fit under the market-data cap (95 % of 540), the third never does.
    let exchange = Exchange::start(small_limits(540));
    let outcome = exchange.run(&[strategy("depth_loop.lua")], RUN);
    outcome.report("depth_loop");
    outcome.assert_memory_bounded(1);
    outcome.assert_never_throttled();
    outcome.assert_windows_crossed(PoolKind::RequestWeight, WINDOWS);
    outcome.assert_budget_used(PoolKind::RequestWeight, USED);
}

#[test]
fn retrying_at_once_and_ignoring_errors_is_held_to_the_limit() {
    let exchange = Exchange::start(small_limits(300));
    let outcome = exchange.run(&[strategy("ignore_errors.lua")], RUN);
    outcome.report("ignore_errors");
    outcome.assert_memory_bounded(1);
    outcome.assert_never_throttled();
    outcome.assert_windows_crossed(PoolKind::RequestWeight, WINDOWS);
    outcome.assert_budget_used(PoolKind::RequestWeight, USED);
}

#[test]
fn catching_every_failure_with_pcall_and_retrying_is_held_to_the_limit() {
    let exchange = Exchange::start(small_limits(300));
    let outcome = exchange.run(&[strategy("pcall_retry.lua")], RUN);
    outcome.report("pcall_retry");
    outcome.assert_memory_bounded(1);
    outcome.assert_never_throttled();
    outcome.assert_windows_crossed(PoolKind::RequestWeight, WINDOWS);
    outcome.assert_budget_used(PoolKind::RequestWeight, USED);
}

#[test]
fn an_order_flood_is_held_to_the_order_limit() {
    let exchange = Exchange::start(small_limits(300));
    let outcome = exchange.run(&[strategy("order_flood.lua")], RUN);
    outcome.report("order_flood");
    outcome.assert_memory_bounded(1);
    outcome.assert_never_throttled();
    outcome.assert_windows_crossed(PoolKind::Orders, WINDOWS);
    outcome.assert_budget_used(PoolKind::Orders, USED);
}

#[test]
fn a_cancel_storm_is_held_to_the_limits() {
    let exchange = Exchange::start(small_limits(300));
    let outcome = exchange.run(&[strategy("cancel_storm.lua")], RUN);
    outcome.report("cancel_storm");
    outcome.assert_memory_bounded(1);
    outcome.assert_never_throttled();
    outcome.assert_windows_crossed(PoolKind::Orders, WINDOWS);
    outcome.assert_budget_used(PoolKind::Orders, USED);
    assert!(
        outcome.text().contains("cancel_storm cycles="),
        "the storm ran:\n{}",
        outcome.text()
    );
}

#[test]
fn twenty_strategies_hammering_at_once_share_the_limit_and_none_starves() {
    const COPIES: usize = 20;
    let dir = tempfile::tempdir().expect("temp dir");
    let source = std::fs::read_to_string(strategy("swarm.lua")).expect("swarm.lua");
    let names: Vec<String> = (1..=COPIES).map(|i| format!("swarm_{i:02}")).collect();
    let files: Vec<_> = names
        .iter()
        .map(|name| {
            let path = dir.path().join(format!("{name}.lua"));
            std::fs::write(&path, &source).expect("write a copy");
            path
        })
        .collect();
    let exchange = Exchange::start(small_limits(300));
    let outcome = exchange.run(&files, RUN);
    outcome.report("swarm x20");
    outcome.assert_memory_bounded(COPIES);
    outcome.assert_never_throttled();
    outcome.assert_windows_crossed(PoolKind::RequestWeight, WINDOWS);
    outcome.assert_budget_used(PoolKind::RequestWeight, USED);

    let text = outcome.text();
    let mut shares = Vec::new();
    for name in &names {
        // What the strategy itself read from `ledger.status().mine`, last report first.
        let seen = outcome
            .output
            .iter()
            .rev()
            .filter(|line| line.contains("swarm mine") && line.ends_with(&format!("strategy={name}")))
            .find_map(|line| field(line, "total_weight="))
            .unwrap_or_else(|| panic!("{name} never reported ledger.status().mine:\n{text}"));
        let summary =
            summary_weight(&outcome.output, name).unwrap_or_else(|| panic!("{name} missing in the summary:\n{text}"));
        assert!(
            seen > 0 && summary > 0,
            "{name} starved: mine {seen}, summary {summary}"
        );
        shares.push(summary);
    }
    let (least, most) = (
        shares.iter().min().copied().unwrap_or(0),
        shares.iter().max().copied().unwrap_or(0),
    );
    println!("HOSTILE swarm x20 per-strategy weight: least {least}, most {most}, all {shares:?}");
}

#[test]
fn reload_storms_changing_symbols_respect_connection_and_message_limits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let template = std::fs::read_to_string(strategy("subscribe_storm.lua")).expect("subscribe_storm.lua");
    let file = dir.path().join("subscribe_storm.lua");
    std::fs::write(&file, &template).expect("write the strategy");
    let exchange = Exchange::start(small_limits(300));
    // Hot reload is on by default in paper mode; the test stops the run itself.
    let cmd = exchange.runner(
        &dir.path().join("state"),
        std::slice::from_ref(&file),
        Duration::from_secs(120),
    );
    let mut run = support::Running::spawn(cmd);
    run.wait_for("the strategy running", |l| l.contains("running; press Ctrl-C"));

    // Every save asks for another set of symbols; some ask for none, so connections close and reopen.
    const SETS: [&str; 6] = [
        r#""ETHUSDT", "BNBUSDT""#,
        "",
        r#""SOLUSDT", "BTCUSDT", "ETHBTC""#,
        r#""XRPUSDT""#,
        "",
        r#""BNBBTC", "SOLBTC", "BNBETH", "ETHUSDT""#,
    ];
    let started = std::time::Instant::now();
    let mut saves = 0usize;
    while started.elapsed() < RUN {
        let version = SETS[saves % SETS.len()];
        let text = template.replace(
            r#"local SYMBOLS = { "BTCUSDT" } -- VERSION 0"#,
            &format!("local SYMBOLS = {{ {version} }} -- VERSION {}", saves + 1),
        );
        support::save_like_an_editor(&file, &text);
        saves += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    run.terminate();
    let outcome = exchange.finish(run);
    outcome.report("subscribe_storm");
    outcome.assert_memory_bounded(1);
    outcome.assert_never_throttled();
    let reloads = outcome
        .output
        .iter()
        .filter_map(|l| field(l, "subscribe_storm reload="))
        .max()
        .unwrap_or(0);
    println!(
        "HOSTILE subscribe_storm: {saves} saves, {reloads} reloads, {} market-stream handshakes",
        outcome
            .requests
            .iter()
            .filter(|r| r.transport == "WS" && r.path == "/stream")
            .count()
    );
    assert!(
        reloads >= 20,
        "the storm must really reload ({reloads} of {saves} saves):\n{}",
        outcome.text()
    );
    assert_eq!(
        outcome.stats.ws_message_limit_closes, 0,
        "a connection was closed for sending more than 5 messages a second"
    );
    assert!(
        outcome.stats.ws_connections >= 3,
        "connections came and went: {:?}",
        outcome.stats
    );
}

/// The number after `key` in a log line.
fn field(line: &str, key: &str) -> Option<u64> {
    let at = line.find(key)? + key.len();
    line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// `weight used N` from the summary block of strategy `name`.
fn summary_weight(output: &[String], name: &str) -> Option<u64> {
    let header = format!("  {name}: orders placed");
    let at = output.iter().position(|l| l.starts_with(&header))?;
    output[at..].iter().find_map(|l| field(l, "weight used "))
}
