//! Lua strategies asking for market data through the host, against the simulator: one request for
//! many identical calls, `max_age_ms` and `age_ms`, bad options, and the savings in `ledger.status()`.

use std::time::Duration;

use crate::support::{connected_to_sim, wait_for, Files};
use runner::exchange::binance::{BinanceVenue, ClientOptions};
use runner::exchange::Venue;
use runner::host::StopReason;
use runner::sim::SimHandle;

const LONG: Duration = Duration::from_secs(30);

fn requests_to(sim: &SimHandle, path: &str) -> usize {
    sim.request_log().iter().filter(|r| r.path == path).count()
}

fn saved_state(files: &Files, name: &str) -> serde_json::Value {
    let path = files.path().join(format!("state/strategies/{name}.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn total_calls(venue: &BinanceVenue) -> u64 {
    venue.market_savings().iter().map(|(_, s)| s.calls).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_strategies_asking_the_same_depth_at_once_send_one_request() {
    let (sim, venue, host, files) = connected_to_sim(ClientOptions::default(), false).await;
    // Every strategy asks at the same exchange instant, and slow answers keep the first request in
    // flight while the others ask (strategies run on threads of their own).
    sim.faults().set_latency(Duration::from_millis(1500));
    let at = sim.now_ms() + 3000;
    let before = requests_to(&sim, "/api/v3/depth");
    for i in 0..20 {
        let path = files.write(
            &format!("s{i}.lua"),
            &format!(
                r#"
                local AT = {at}
                return {{
                    on_start = function() timer.after(math.max(1, AT - clock.now()), "ask") end,
                    on_timer = function()
                        local d, err = market.depth("BTCUSDT", 100)
                        state.levels = d and #d.bids or -1
                        state.source = d and d.source or tostring(err)
                        state.age_ms = d and d.age_ms or -1
                    end,
                }}
                "#
            ),
        );
        host.add(&path).await.expect("strategy starts");
    }
    wait_for("twenty answers", LONG, || total_calls(&venue) == 20).await;
    host.stop_all(StopReason::Shutdown).await;
    assert_eq!(
        requests_to(&sim, "/api/v3/depth") - before,
        1,
        "one request at the exchange"
    );
    let levels = sim.book("BTCUSDT", 100).unwrap().bids.len();
    assert!(levels > 0);
    let mut sources = Vec::new();
    for i in 0..20 {
        let state = saved_state(&files, &format!("s{i}"));
        assert_eq!(state["levels"], levels, "the whole book, up to 100 levels: {state}");
        assert!(state["age_ms"].as_u64().is_some(), "{state}");
        sources.push(state["source"].as_str().unwrap().to_owned());
    }
    sources.sort();
    assert_eq!(sources.iter().filter(|s| *s == "exchange").count(), 1, "{sources:?}");
    assert_eq!(sources.iter().filter(|s| *s == "joined").count(), 19, "{sources:?}");
    // The one who sent is charged; the nineteen others are credited what they saved.
    let savings = venue.market_savings();
    let saved: u64 = savings.iter().map(|(_, s)| s.weight_saved).sum();
    assert_eq!(saved, 19 * 5, "{savings:?}");
    venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_ms_age_ms_bad_options_and_the_savings_in_ledger_status() {
    let (sim, venue, host, files) = connected_to_sim(ClientOptions::default(), false).await;
    let path = files.write(
        "fresh.lua",
        r#"
        return {
            on_start = function()
                local a = market.ticker("BTCUSDT", { max_age_ms = 60000 })
                local b = market.ticker("BTCUSDT", { max_age_ms = 60000, wait_ms = 0 })
                local c = market.ticker("BTCUSDT")
                state.sources = a.source .. "," .. b.source .. "," .. c.source
                state.cached_age_ok = b.age_ms >= 0 and b.age_ms <= 60000
                local k = market.klines("BTCUSDT", "1m", 5, { max_age_ms = 1000 })
                local pairs_seen = 0
                for _ in pairs(k) do pairs_seen = pairs_seen + 1 end
                state.klines = #k .. "," .. pairs_seen .. "," .. type(k.age_ms) .. "," .. k.source
                local errors = {}
                for _, bad in ipairs({ -1, 0 / 0, 1e12, "10", true }) do
                    local ok, err = pcall(market.depth, "BTCUSDT", 10, { max_age_ms = bad })
                    errors[#errors + 1] = ok and "accepted" or tostring(err)
                end
                local ok, err = pcall(market.book_ticker, "BTCUSDT", { stream = "yes" })
                errors[#errors + 1] = ok and "accepted" or tostring(err)
                state.errors = errors
                local s = ledger.status()
                state.saved = s.market_data.requests_saved
                state.weight_saved = s.market_data.weight_saved
                state.hit_rate = s.market_data.hit_rate
                state.total_calls = s.market_data_total.calls
                state.done = true
            end,
        }
        "#,
    );
    host.add(&path).await.expect("strategy starts");
    wait_for("the strategy's calls", LONG, || total_calls(&venue) >= 4).await;
    host.stop_all(StopReason::Shutdown).await;
    let state = saved_state(&files, "fresh");
    assert_eq!(state["done"], true, "{state}");
    assert_eq!(state["sources"], "exchange,cache,exchange", "{state}");
    assert_eq!(state["cached_age_ok"], true, "{state}");
    assert_eq!(state["klines"], "5,5,number,exchange", "{state}");
    let errors: Vec<String> = state["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(errors.len(), 6);
    for error in &errors[..5] {
        assert!(error.contains("fresh.lua:"), "names the line: {error}");
        assert!(error.contains("market.depth: max_age_ms: "), "{error}");
    }
    assert!(errors[0].contains("got -1"), "{}", errors[0]);
    assert!(errors[3].contains("got string"), "{}", errors[3]);
    assert!(
        errors[5].contains("market.book_ticker: stream must be a boolean, got string"),
        "{}",
        errors[5]
    );
    assert_eq!(requests_to(&sim, "/api/v3/depth"), 0, "a bad option sends nothing");
    assert_eq!(state["saved"], 1, "{state}");
    assert_eq!(state["weight_saved"], 2, "the ticker's weight: {state}");
    assert_eq!(state["total_calls"], 4, "{state}");
    venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_answer_has_the_shape_and_values_of_the_asked_one() {
    let (_sim, venue, host, files) = connected_to_sim(ClientOptions::default(), false).await;
    let path = files.write(
        "shapes.lua",
        r#"
        return {
            on_start = function()
                local a = market.ticker("BTCUSDT", { max_age_ms = 60000 })
                local b = market.ticker("BTCUSDT", { max_age_ms = 60000 })
                local same = a.symbol == "BTCUSDT" and b.symbol == "BTCUSDT" and b.price == a.price
                local asked = market.book_ticker("BTCUSDT", { max_age_ms = 60000 })
                local held = market.book_ticker("BTCUSDT", { max_age_ms = 60000 })
                for _, f in ipairs({ "symbol", "bid", "bid_qty", "ask", "ask_qty", "update_id", "time" }) do
                    same = same and asked[f] ~= nil and asked[f] == held[f]
                end
                local d1 = market.depth("BTCUSDT", 5, { max_age_ms = 60000 })
                local d2 = market.depth("BTCUSDT", 5, { max_age_ms = 60000 })
                same = same and #d2.bids == #d1.bids and d2.bids[1][1] == d1.bids[1][1]
                    and d2.asks[1][2] == d1.asks[1][2] and d2.update_id == d1.update_id and d2.symbol == "BTCUSDT"
                local k1 = market.klines("BTCUSDT", "1m", 3, { max_age_ms = 60000 })
                local k2 = market.klines("BTCUSDT", "1m", 3, { max_age_ms = 60000 })
                same = same and #k1 == 3 and #k2 == 3
                for i = 1, 3 do
                    for _, f in ipairs({ "open_time", "open", "high", "low", "close", "volume", "close_time" }) do
                        same = same and k1[i][f] ~= nil and k1[i][f] == k2[i][f]
                    end
                    same = same and math.type(k2[i].open_time) == "integer" and math.type(k2[i].close_time) == "integer"
                end
                local t1 = market.trades("BTCUSDT", 3, { max_age_ms = 60000 })
                local t2 = market.trades("BTCUSDT", 3, { max_age_ms = 60000 })
                same = same and #t1 == #t2
                for i = 1, #t1 do
                    for _, f in ipairs({ "symbol", "id", "price", "qty", "time", "buyer_maker" }) do
                        same = same and t1[i][f] ~= nil and t1[i][f] == t2[i][f]
                    end
                    same = same and math.type(t2[i].id) == "integer" and type(t2[i].buyer_maker) == "boolean"
                end
                state.shapes = asked.source .. "," .. held.source .. "," .. d1.source .. "," .. d2.source
                    .. "," .. k1.source .. "," .. k2.source .. "," .. t1.source .. "," .. t2.source
                    .. "," .. type(held.age_ms) .. "," .. type(d2.age_ms) .. "," .. type(k2.age_ms)
                state.same = same
                state.shapes = a.source .. "," .. b.source .. "," .. state.shapes
                state.done = true
            end,
        }
        "#,
    );
    host.add(&path).await.expect("strategy starts");
    wait_for("the strategy's calls", LONG, || total_calls(&venue) >= 10).await;
    host.stop_all(StopReason::Shutdown).await;
    let state = saved_state(&files, "shapes");
    assert_eq!(state["done"], true, "{state}");
    assert_eq!(
        state["shapes"],
        "exchange,cache,exchange,cache,exchange,cache,exchange,cache,exchange,cache,number,number,number",
        "{state}"
    );
    assert_eq!(
        state["same"], true,
        "fields differ between the asked and the held answer: {state}"
    );
    venue.shutdown().await;
}
