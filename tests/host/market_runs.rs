//! Quotes and trades queued behind one another reach their callbacks as one run (one coroutine
//! resume for many events): a callback that waits for the exchange, fails or runs away in the
//! middle of a run must not cost the events after it, nor deliver any twice or out of order.

use std::time::{Duration, Instant};

use crate::support::{config, quote, report, stats, wait_for, Files, TestVenue};
use runner::exchange::{EventSink, MarketEvent, Trade};
use runner::host::{Host, HostConfig, StopReason};

const LONG: Duration = Duration::from_secs(30);
/// Events in the run: they fit one batch the strategy's thread takes from its inbox.
const EVENTS: u64 = 40;

/// A strategy that checks every event arrives once, in order, with its fields: events carry the ids
/// 1..=EVENTS (quotes their update id, every third one a trade its trade id), alternating symbols.
/// `extra` runs in every callback, after the check, with the event's `id`; event 1 waits for the
/// exchange, so the others queue up behind it and are taken together.
fn checker(extra: &str) -> String {
    format!(
        r#"
        local expect, bad = 1, nil
        local function check(id, symbol, field_ok)
            local want = (id % 2 == 0) and "ETHUSDT" or "BTCUSDT"
            if not bad and (id ~= expect or symbol ~= want or not field_ok) then bad = id end
            expect = id + 1
            if id == 1 then {wait} end
            if id == {EVENTS} then {done} end
            {extra}
        end
        return {{
            symbols = {{ "BTCUSDT", "ETHUSDT" }},
            streams = {{ "book", "trade" }},
            on_book = function(q)
                check(q.update_id, q.symbol, q.bid == q.update_id and q.ask == q.bid + 0.5 and q.bid_qty == 1.5
                    and q.ask_qty == 2.5 and q.time == 1700000000000 and math.type(q.update_id) == "integer")
            end,
            on_trade = function(t)
                check(t.id, t.symbol, t.price == t.id and t.qty == 0.25 and t.buyer_maker == true and t.time == 7)
            end,
        }}
        "#,
        wait = report(r#""wait:" .. id"#),
        done = report(r#""end:" .. tostring(bad or "none") .. ":" .. (expect - 1)"#),
    )
}

fn event(id: u64) -> MarketEvent {
    let symbol = if id.is_multiple_of(2) { "ETHUSDT" } else { "BTCUSDT" };
    if id.is_multiple_of(3) {
        MarketEvent::Trade(Trade {
            symbol: symbol.into(),
            id,
            price: id as f64,
            qty: 0.25,
            time: 7,
            buyer_maker: true,
        })
    } else {
        MarketEvent::Book(quote(symbol, id as f64, id))
    }
}

/// Feeds event 1, then, while its callback waits for the exchange, events 2..=EVENTS in one batch;
/// returns once the strategy reported the end.
async fn feed(host: &Host, venue: &TestVenue, name: &str) -> Vec<String> {
    host.market(event(1));
    wait_for("the first callback to wait", LONG, || {
        venue.calls.lock().iter().any(|c| c.starts_with("place"))
    })
    .await;
    let now = Instant::now();
    let mut batch: Vec<(MarketEvent, Instant)> = (2..=EVENTS).map(|id| (event(id), now)).collect();
    host.market_batch(&mut batch);
    wait_for("the last event", LONG, || !venue.reports(name, "end:").is_empty()).await;
    venue.all_reports(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_goes_on_after_a_callback_that_waits_or_fails_every_event_once_in_order() {
    let files = Files::new();
    let venue = TestVenue::new();
    *venue.latency.lock() = Duration::from_millis(100);
    let host = Host::new(venue.clone(), config(&files));
    // Event 20 waits for the exchange in the middle of the run, event 25 fails.
    let path = files.write(
        "runs.lua",
        &checker(&format!(
            r#"if id == 20 then {} end if id == 25 then error("boom") end"#,
            report(r#""wait:" .. id"#)
        )),
    );
    host.add(&path).await.expect("loads");
    let reports = feed(&host, &venue, "runs").await;
    assert_eq!(
        reports,
        ["wait:1", "wait:20", &format!("end:none:{EVENTS}")],
        "{reports:?}"
    );
    let s = stats(&host, "runs");
    assert_eq!(s.errors, 1, "{s:?}");
    assert!(s.last_error.as_deref().is_some_and(|e| e.contains("boom")), "{s:?}");
    assert_eq!((s.events_handled, s.events_coalesced, s.trips), (EVENTS, 0, 0), "{s:?}");
    host.stop_all(StopReason::Shutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_callback_in_a_run_is_stopped_and_the_run_goes_on() {
    let files = Files::new();
    let venue = TestVenue::new();
    *venue.latency.lock() = Duration::from_millis(100);
    let limited = HostConfig {
        cpu_limit: Duration::from_millis(30),
        ..config(&files)
    };
    let host = Host::new(venue.clone(), limited);
    // Events 10 to 12, one after another in the run, each spend about 60 % of a callback's budget
    // (each has its own, not a share of the run's); event 15 spins, hiding behind `pcall`.
    let path = files.write(
        "runaway.lua",
        &checker(
            "if id >= 10 and id <= 12 then local x = 0 for i = 1, 2200000 do x = x + i end end
             if id == 15 then while true do pcall(function() while true do end end) end end",
        ),
    );
    host.add(&path).await.expect("loads");
    let started = Instant::now();
    let reports = feed(&host, &venue, "runaway").await;
    assert_eq!(reports, ["wait:1", &format!("end:none:{EVENTS}")], "{reports:?}");
    let s = stats(&host, "runaway");
    assert_eq!((s.trips, s.errors), (1, 0), "{s:?}");
    assert_eq!(s.events_handled, EVENTS, "{s:?}");
    assert!(s.running, "one trip does not stop it: {s:?}");
    assert!(started.elapsed() < LONG, "{:?}", started.elapsed());
    host.stop_all(StopReason::Shutdown).await;
}
