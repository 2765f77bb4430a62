//! The host against the real client and the built-in simulator on loopback.

use std::time::Duration;

use crate::support::{connected_to_sim, stats, wait_for};
use runner::exchange::binance::transport::ws_api::OrderTransport;
use runner::exchange::binance::ClientOptions;
use runner::exchange::{OrderStatus, Venue};
use runner::host::StopReason;
use runner::sim::SimHandle;

const LONG: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strategy_trades_on_the_simulator() {
    let sim = trades_on_the_simulator(OrderTransport::Rest, false).await;
    assert!(sim
        .request_log()
        .iter()
        .all(|r| r.transport != "WS_API" || !r.method.starts_with("order.")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strategy_trades_on_the_simulator_over_the_ws_api() {
    let sim = trades_on_the_simulator(OrderTransport::WsApi, false).await;
    let log = sim.request_log();
    let over_ws = |method: &str| log.iter().any(|r| r.transport == "WS_API" && r.method == method);
    assert!(over_ws("order.place") && over_ws("order.cancel"), "{log:?}");
    assert!(!log
        .iter()
        .any(|r| r.transport == "REST" && r.path == "/api/v3/order" && r.method != "GET"));
}

/// A spinning strategy thread still drives its own HTTP connections and WebSocket API session
/// while it waits for events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_polling_strategy_trades_on_the_simulator() {
    for transport in [OrderTransport::Rest, OrderTransport::WsApi] {
        trades_on_the_simulator(transport, true).await;
    }
}

/// A strategy places, reads the market and its account, and cancels on stop; returns the simulator.
async fn trades_on_the_simulator(order_transport: OrderTransport, busy_poll: bool) -> SimHandle {
    let options = ClientOptions {
        order_transport,
        ..ClientOptions::default()
    };
    let (sim, venue, host, files) = connected_to_sim(options, busy_poll).await;

    let path = files.write(
        "resting.lua",
        r#"
        return {
            symbols = { "BTCUSDT" },
            streams = { "book" },
            on_book = function(q)
                state.quotes = (state.quotes or 0) + 1
                if state.placed then return end
                state.placed = true
                local price = market.round_price("BTCUSDT", q.bid * 0.9)
                local o, err = orders.place { symbol = "BTCUSDT", side = "BUY", type = "LIMIT",
                    quantity = market.round_qty("BTCUSDT", 0.001), price = price, client_id = "rest-1" }
                state.place = o and o.status or tostring(err)
                local d = market.depth("BTCUSDT", 5)
                state.depth_levels = d and #d.bids or -1
                state.usdt = account.balances().USDT.free
                state.weight = ledger.status().mine.weight
            end,
            on_order = function(o) state.last_status = o.status end,
            on_stop = function()
                local cancelled = orders.cancel_all("BTCUSDT")
                state.cancelled = cancelled and #cancelled or -1
            end,
        }
        "#,
    );
    host.add(&path).await.expect("strategy starts");
    wait_for("an order resting on the simulator", LONG, || {
        let s = stats(&host, "resting");
        s.orders_placed == 1 && s.open_orders == 1 && s.events_handled > 3
    })
    .await;
    host.stop_all(StopReason::Shutdown).await;
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(files.path().join("state/strategies/resting.json")).unwrap()).unwrap();
    assert_eq!(state["place"], "NEW", "{state}");
    assert_eq!(state["depth_levels"], 5, "{state}");
    assert_eq!(state["cancelled"], 1, "{state}");
    assert!(state["usdt"].as_f64().unwrap() > 0.0, "{state}");
    assert!(
        state["weight"].as_u64().unwrap() > 0,
        "the depth call was charged to this strategy: {state}"
    );
    let s = stats(&host, "resting");
    assert_eq!((s.errors, s.trips), (0, 0), "{s:?}");
    // The one order was placed from on_book: its tick-to-order latency is on record.
    assert_eq!(s.tick_to_order.map(|t| t.count), Some(1), "{s:?}");
    venue.shutdown().await;
    sim
}

/// A stop that cuts a callback short while its order is in flight must not abandon the order:
/// the answer still arrives and is applied before the stop returns (with no user stream, nothing
/// else would tell).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_in_flight_when_a_stop_cuts_the_callback_is_seen_through() {
    let options = ClientOptions {
        user_data: false,
        ..ClientOptions::default()
    };
    let (sim, venue, host, files) = connected_to_sim(options, false).await;
    sim.faults().delay_order_answers(Duration::from_millis(1500));
    let path = files.write(
        "cut.lua",
        r#"
        return {
            symbols = { "BTCUSDT" },
            streams = { "book" },
            on_book = function(q)
                if state.placed then return end
                state.placed = true
                orders.place { symbol = "BTCUSDT", side = "BUY", type = "LIMIT", client_id = "cut-1",
                    quantity = market.round_qty("BTCUSDT", 0.001), price = market.round_price("BTCUSDT", q.bid * 0.9) }
            end,
        }
        "#,
    );
    host.add(&path).await.expect("strategy starts");
    wait_for("the order to reach the simulator", LONG, || {
        !sim.orders_by_client_id("cut-1").is_empty()
    })
    .await;
    // The answer is still 1.5 s away: the stop cuts the callback while the call waits for it, and
    // returns once the strategy's thread has seen the call through.
    host.stop_all(StopReason::Shutdown).await;
    let open = venue.open_orders("cut", None);
    assert!(
        open.iter()
            .any(|o| o.client_id == "cut-1" && o.status == OrderStatus::New && o.id.is_some()),
        "{open:?}"
    );
    assert_eq!(sim.orders_by_client_id("cut-1").len(), 1);
    venue.shutdown().await;
}
