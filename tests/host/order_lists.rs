//! `orders.place_list` and `orders.cancel_list` from Lua against the simulator: an OTOCO whose working
//! order fills, `on_order` for every order with its `list_id`, the list canceled whole, and bad lists
//! refused before anything is sent (the exchange's code for prices on the wrong sides, a usage error
//! for an order of another symbol or a missing one).

use std::time::Duration;

use crate::support::{connected_to_sim, stats, wait_for};
use runner::exchange::binance::ClientOptions;
use runner::exchange::Venue;
use runner::host::StopReason;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strategy_places_and_cancels_an_order_list() {
    let (_sim, venue, host, files) = connected_to_sim(ClientOptions::default(), false).await;
    let path = files.write(
        "lister.lua",
        r#"
        local function px(f) return market.round_price("BTCUSDT", state.bid * f) end
        return {
            symbols = { "BTCUSDT" },
            streams = { "book" },
            on_book = function(q)
                if state.done then return end
                state.done = true
                state.bid = q.bid
                state.seen = {}
                local qty = market.round_qty("BTCUSDT", 0.001)
                -- Prices on the wrong sides of the market: the exchange's own code, nothing sent.
                local _, wrong = orders.place_list { symbol = "BTCUSDT", type = "oco", side = "SELL", quantity = qty,
                    above = { type = "LIMIT_MAKER", price = px(1.1) },
                    below = { type = "STOP_LOSS_LIMIT", stop_price = px(1.05), price = px(1.04) } }
                state.wrong = wrong and wrong.exchange_code
                local ok, other = pcall(orders.place_list, { symbol = "BTCUSDT", type = "oco", side = "SELL",
                    quantity = qty, above = { symbol = "ETHUSDT", type = "LIMIT_MAKER", price = px(1.1) },
                    below = { type = "STOP_LOSS_LIMIT", stop_price = px(0.9), price = px(0.89) } })
                state.other_symbol = not ok and tostring(other):find("list's symbol BTCUSDT", 1, true) ~= nil
                local ok2, missing = pcall(orders.place_list, { symbol = "BTCUSDT", type = "oco", side = "SELL",
                    quantity = qty, above = { type = "LIMIT_MAKER", price = px(1.1) } })
                state.missing = not ok2 and tostring(missing):find("below is required", 1, true) ~= nil
                state.open_after_refusals = #orders.open()

                local list = assert(orders.place_list { symbol = "BTCUSDT", type = "otoco", client_id = "bracket-1",
                    working = { side = "BUY", type = "LIMIT", quantity = qty, price = px(1.02), client_id = "entry-1" },
                    pending_above = { side = "SELL", type = "LIMIT_MAKER", quantity = qty, price = px(1.2) },
                    pending_below = { side = "SELL", type = "STOP_LOSS_LIMIT", quantity = qty,
                        stop_price = px(0.8), price = px(0.79) } })
                state.list_id = list.list_id
                state.list_client_id = list.client_id
                state.places = { list.working.client_id, list.pending_above.client_id, list.pending_below.client_id }
                state.orders_in_list = #list.orders
            end,
            on_order = function(o)
                if not state.list_id then return end
                state.seen[o.client_id] = o.status
                if o.list_id ~= state.list_id then state.foreign_list = o.list_id end
                local above, below = state.places[2], state.places[3]
                if state.seen[above] == "NEW" and state.seen[below] == "NEW" and not state.canceled then
                    local canceled = assert(orders.cancel_list { symbol = "BTCUSDT", list_id = state.list_id })
                    state.canceled = #canceled
                end
            end,
        }
        "#,
    );
    host.add(&path).await.expect("strategy starts");
    wait_for(
        "the list is placed, filled and canceled",
        Duration::from_secs(30),
        || {
            let s = stats(&host, "lister");
            s.orders_placed == 3 && s.open_orders == 0 && s.orders_filled >= 1 && s.orders_cancelled >= 2
        },
    )
    .await;
    host.stop_all(StopReason::Shutdown).await;
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(files.path().join("state/strategies/lister.json")).unwrap()).unwrap();
    assert_eq!(state["wrong"], -2010, "{state}");
    assert_eq!(state["other_symbol"], true, "{state}");
    assert_eq!(state["missing"], true, "{state}");
    assert_eq!(state["open_after_refusals"], 0, "{state}");
    assert_eq!(state["list_client_id"], "bracket-1", "{state}");
    assert_eq!(state["orders_in_list"], 3, "{state}");
    assert!(state["list_id"].as_i64().is_some(), "{state}");
    assert!(
        state.get("foreign_list").is_none(),
        "every order carried the list id: {state}"
    );
    assert_eq!(state["canceled"], 3, "{state}");
    let places = state["places"].as_array().unwrap();
    assert_eq!(places[0], "entry-1");
    assert_eq!(state["seen"]["entry-1"], "FILLED", "{state}");
    venue.shutdown().await;
}
