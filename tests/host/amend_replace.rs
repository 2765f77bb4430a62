//! `orders.amend` and `orders.replace` from Lua against the simulator: the amended order keeps its
//! id with a lower quantity, an increase is `invalid_order`, and a replacement's new order rests
//! while the old one is reported CANCELED through `on_order`.

use std::time::Duration;

use crate::support::{connected_to_sim, stats, wait_for};
use runner::exchange::binance::ClientOptions;
use runner::exchange::Venue;
use runner::host::StopReason;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strategy_amends_and_replaces_its_orders() {
    let (_sim, venue, host, files) = connected_to_sim(ClientOptions::default(), false).await;
    let path = files.write(
        "amender.lua",
        r#"
        -- Once the strategy has seen everything the test reads, it says so with one more order.
        local function mark_when_done()
            if state.old_status == "CANCELED" and state.unknown and not state.marked then
                state.marked = true
                orders.place { symbol = "BTCUSDT", side = "BUY", type = "LIMIT", client_id = "all-seen",
                    quantity = market.round_qty("BTCUSDT", 0.002), price = market.round_price("BTCUSDT", state.bid * 0.8) }
            end
        end
        return {
            symbols = { "BTCUSDT" },
            streams = { "book" },
            on_book = function(q)
                if state.done then return end
                state.done = true
                state.bid = q.bid
                local qty = market.round_qty("BTCUSDT", 0.002)
                local o = orders.place { symbol = "BTCUSDT", side = "BUY", type = "LIMIT",
                    quantity = qty, price = market.round_price("BTCUSDT", q.bid * 0.9), client_id = "amend-1" }
                local _, up = orders.amend { symbol = "BTCUSDT", id = o.id, quantity = qty * 2 }
                state.increase = up and up.code
                local a = orders.amend { symbol = "BTCUSDT", id = "amend-1", quantity = market.round_qty("BTCUSDT", 0.001) }
                state.amended = { id = a.id == o.id, quantity = a.quantity, stop_price = a.stop_price or "none" }
                local n, err = orders.replace { symbol = "BTCUSDT", cancel_id = "amend-1", side = "BUY", type = "LIMIT",
                    quantity = qty, price = market.round_price("BTCUSDT", q.bid * 0.8), client_id = "replaced-1" }
                state.replaced = n and n.status or tostring(err)
                local _, bad = orders.replace { symbol = "BTCUSDT", cancel_id = "nobody", side = "BUY", type = "LIMIT",
                    quantity = qty, price = market.round_price("BTCUSDT", q.bid * 0.8), mode = "ALLOW_FAILURE" }
                state.unknown = bad and bad.exchange_code
                mark_when_done()
            end,
            on_order = function(o)
                if o.client_id == "amend-1" then state.old_status = o.status end
                mark_when_done()
            end,
        }
        "#,
    );
    host.add(&path).await.expect("strategy starts");
    wait_for("the strategy saw every outcome", Duration::from_secs(30), || {
        let s = stats(&host, "amender");
        s.open_orders == 2 && s.orders_placed == 3
    })
    .await;
    host.stop_all(StopReason::Shutdown).await;
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(files.path().join("state/strategies/amender.json")).unwrap()).unwrap();
    assert_eq!(state["increase"], "invalid_order", "{state}");
    assert_eq!(state["amended"]["id"], true, "{state}");
    assert_eq!(state["amended"]["quantity"].as_f64(), Some(0.001), "{state}");
    assert_eq!(state["amended"]["stop_price"], "none", "{state}");
    assert_eq!(state["replaced"], "NEW", "{state}");
    assert_eq!(state["unknown"], -2011, "{state}");
    assert_eq!(state["old_status"], "CANCELED", "{state}");
    venue.shutdown().await;
}
