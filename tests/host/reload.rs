//! Hot reload: a fresh VM swapped in between two events, carrying state and timers.

use std::time::Duration;

use crate::support::{config, order, quote, report, saving_config, stats, wait_for, Files, TestVenue};
use runner::exchange::{EventSink, MarketEvent, StreamKind};
use runner::host::{Host, StopReason};

const LONG: Duration = Duration::from_secs(20);

fn version(v: u32, symbols: &str) -> String {
    format!(
        r#"
        state.loads = (state.loads or 0) + 1
        return {{
            name = "live",
            symbols = {{ {symbols} }},
            on_start = function() timer.every(10, "tick") {} end,
            on_reload = function() {} end,
            on_timer = function(name) state.ticks = (state.ticks or 0) + 1 state.tick_version = {v} end,
            on_book = function(q) state.last_quote = q.update_id end,
            on_order = function(o)
                if o.id ~= (state.last_order or 0) + 1 then state.gaps = (state.gaps or 0) + 1 end
                state.last_order = o.id
                state.orders = (state.orders or 0) + 1
            end,
            on_stop = function() state.version = {v} end,
        }}
        "#,
        report(&format!(r#""start:v{v}:" .. state.loads"#)),
        report(&format!(r#""reload:v{v}:" .. state.loads"#)),
    )
}

fn saved_state(files: &Files) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(files.path().join("state/strategies/live.json")).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_state_timers_and_every_event() {
    reloads_keep_state_timers_and_every_event(false).await;
}

/// The same with the strategy's thread spinning between events instead of sleeping: its timers,
/// stop and state saving must all still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_state_timers_and_every_event_when_busy_polling() {
    reloads_keep_state_timers_and_every_event(true).await;
}

async fn reloads_keep_state_timers_and_every_event(busy_poll: bool) {
    let files = Files::new();
    let venue = TestVenue::new();
    let config = runner::host::HostConfig {
        busy_poll,
        ..saving_config(&files)
    };
    let host = Host::new(venue.clone(), config);
    let path = files.write("live.lua", &version(1, r#""BTCUSDT""#));
    host.add(&path).await.unwrap();
    wait_for("on_start", LONG, || venue.reports("live", "start:") == ["start:v1:1"]).await;

    // Order events (never dropped) and quotes (coalesced) stream in while we reload repeatedly.
    const ORDERS: u64 = 2000;
    let feeder = {
        let host = host.clone();
        tokio::spawn(async move {
            for id in 1..=ORDERS {
                host.order(order("live", id));
                host.market(MarketEvent::Book(quote("BTCUSDT", 1.0, id)));
                if id % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };
    let mut swaps = Vec::new();
    for v in 2..=11 {
        std::fs::write(&path, version(v, r#""BTCUSDT""#)).unwrap();
        let outcome = host.reload("live").await.expect("reload");
        assert!(!outcome.subscriptions_changed);
        swaps.push(outcome.swap);
    }
    feeder.await.unwrap();
    wait_for("every order event", LONG, || {
        stats(&host, "live").events_handled >= ORDERS
    })
    .await;
    wait_for("the reload reports", LONG, || {
        venue.reports("live", "reload:").len() == 10
    })
    .await;
    let reloads = venue.reports("live", "reload:");
    assert_eq!(
        reloads.first().map(String::as_str),
        Some("reload:v2:2"),
        "state carried into the new VM"
    );
    assert_eq!(reloads.last().map(String::as_str), Some("reload:v11:11"));
    assert_eq!(venue.reports("live", "start:").len(), 1, "on_reload, not on_start");

    // Timers registered by v1 now fire on the current version.
    let ticks_then = stats(&host, "live").events_handled;
    wait_for("timer ticks after the reloads", LONG, || {
        stats(&host, "live").events_handled > ticks_then + 2
    })
    .await;
    host.stop_all(StopReason::Shutdown).await;
    let state = saved_state(&files);
    assert_eq!(state["orders"], ORDERS, "no order event lost across ten swaps");
    assert!(state.get("gaps").is_none(), "and none out of order: {state}");
    assert_eq!(state["last_quote"], ORDERS, "the latest quote always arrives");
    assert_eq!(state["version"], 11);
    assert_eq!(state["tick_version"], 11);
    swaps.sort();
    let p50 = swaps[swaps.len() / 2];
    println!(
        "reload swap p50 {p50:?}, max {:?} (under event load)",
        swaps[swaps.len() - 1]
    );
    assert!(p50 < Duration::from_millis(50), "swap p50 {p50:?} ({swaps:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reload_keeps_the_running_version() {
    let files = Files::new();
    let venue = TestVenue::new();
    let host = Host::new(venue.clone(), config(&files));
    let path = files.write("live.lua", &version(1, r#""BTCUSDT""#));
    host.add(&path).await.unwrap();
    std::fs::write(&path, "return {\n  name = 'live',\n  on_book = function( end }").unwrap();
    let err = host.reload("live").await.unwrap_err().to_string();
    assert!(err.contains("live.lua:3:"), "{err}");
    std::fs::write(&path, r#"return { name = "live", symbols = { "NOPEUSDT" } }"#).unwrap();
    let err = host.reload("live").await.unwrap_err().to_string();
    assert!(err.contains("unknown symbol 'NOPEUSDT'"), "{err}");
    std::fs::write(&path, r#"timer.every(1, "flood") return { name = "other" }"#).unwrap();
    let err = host.reload("live").await.unwrap_err().to_string();
    assert!(err.contains("name changed"), "{err}");

    // Still version 1: its on_book runs, its timer ticks, and the failed candidate's timer never started.
    host.market(MarketEvent::Book(quote("BTCUSDT", 1.0, 5)));
    wait_for("the old version to go on", LONG, || {
        stats(&host, "live").events_handled > 3
    })
    .await;
    assert!(stats(&host, "live").running);
    assert!(venue.reports("live", "reload:").is_empty());
    host.stop_all(StopReason::Shutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_follows_changed_subscriptions_and_required_files() {
    let files = Files::new();
    let venue = TestVenue::new();
    let host = Host::new(venue.clone(), saving_config(&files));
    files.write("helper.lua", "return { n = 1 }");
    let path = files.write(
        "live.lua",
        &format!(r#"local h = require("helper") {}"#, version(1, r#""BTCUSDT""#)),
    );
    host.add(&path).await.unwrap();
    let watched = host.watched_files("live");
    assert_eq!(watched.len(), 2, "{watched:?}");
    assert!(watched[1].ends_with("helper.lua"));

    std::fs::write(&path, version(2, r#""BTCUSDT", "ETHUSDT""#)).unwrap();
    let outcome = host.reload("live").await.unwrap();
    assert!(outcome.subscriptions_changed);
    let subscribed = venue.subscriptions.lock()["live"].clone();
    assert_eq!(subscribed.len(), 2);
    assert!(subscribed.iter().all(|k| k.kind == StreamKind::Book));
    assert_eq!(host.watched_files("live").len(), 1, "helper no longer required");
    host.market(MarketEvent::Book(quote("ETHUSDT", 1.0, 77)));
    host.market(MarketEvent::Book(quote("ETHBTC", 1.0, 78)));
    // A stop is handled after the event in hand, so once the inbox is empty the quote is in.
    wait_for("the quote to be taken", LONG, || stats(&host, "live").pending == 0).await;
    host.stop_all(StopReason::Shutdown).await;
    assert_eq!(
        saved_state(&files)["last_quote"],
        77,
        "the newly subscribed symbol arrives, others do not"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lazily_required_files_are_watched_and_pending_orders_arrive_before_stop() {
    let files = Files::new();
    let venue = TestVenue::new();
    let host = Host::new(venue.clone(), saving_config(&files));
    files.write("late.lua", "return 42");
    let path = files.write(
        "live.lua",
        r#"return { name = "live",
            on_start = function() state.late = require("late") end,
            on_order = function(o) state.orders = (state.orders or 0) + 1 end }"#,
    );
    host.add(&path).await.unwrap();
    wait_for("the lazy require", LONG, || host.watched_files("live").len() == 2).await;
    for id in 1..=200 {
        host.order(order("live", id));
    }
    host.stop_all(StopReason::Shutdown).await;
    let state = saved_state(&files);
    assert_eq!(state["late"], 42);
    assert_eq!(
        state["orders"], 200,
        "order events still queued at stop are delivered first"
    );
}
