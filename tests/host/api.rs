//! Every API function and event callback, against a test double of the venue.

use std::sync::Arc;
use std::time::Duration;

use crate::support::{config, quote, report, stats, wait_for, Files, TestVenue};
use runner::exchange::{
    ApiError, ErrorCode, EventSink, Kline, MarketEvent, Order, OrderKind, OrderStatus, SelfTradePrevention, Side,
    StopTrigger, TimeInForce, Trade,
};
use runner::host::{Host, HostConfig, StopReason};

const LONG: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_functions_behave_as_the_contract_says() {
    let files = Files::new();
    let venue = TestVenue::new();
    venue.quotes.lock().insert("BTCUSDT".into(), quote("BTCUSDT", 100.0, 3));
    *venue.fail_next.lock() = Some(ApiError::new(ErrorCode::RateLimited, "budget").with_retry_after(1500));
    let body = r#"
        local function expect_error(needle, f, ...)
            local ok, err = pcall(f, ...)
            assert(not ok, "expected an error containing " .. needle)
            assert(tostring(err):find(needle, 1, true), tostring(err))
        end
        local function check_all()
            local r, err = market.ticker("BTCUSDT")
            assert(r == nil and err.code == "rate_limited" and err.retry_after_ms == 1500, "expected failure")
            assert(tostring(err) == "rate_limited: budget", tostring(err))
            assert(err.exchange_code == nil)
            local q = market.quote("BTCUSDT")
            assert(q.symbol == "BTCUSDT" and q.bid == 100 and q.ask == 100.5 and q.bid_qty == 1.5
                and q.ask_qty == 2.5 and q.update_id == 3 and q.time == 1700000000000)
            assert(market.quote("ETHUSDT") == nil)
            assert(market.ticker("BTCUSDT").price == 100.25)
            local bt = market.book_ticker("ETHUSDT")
            assert(bt.symbol == "ETHUSDT" and bt.bid == 100 and bt.ask == 100.5)
            local d = market.depth("BTCUSDT", 5, { wait_ms = 0 })
            assert(d.symbol == "BTCUSDT" and d.update_id == 9 and d.bids[1][1] == 100 and d.bids[2][2] == 2 and d.asks[1][2] == 3)
            local k = market.klines("BTCUSDT", "1m", 2)
            assert(#k == 1 and k[1].open_time == 60000 and k[1].close == 1.5 and k[1].close_time == 119999)
            local tr = market.trades("BTCUSDT", 10)
            assert(tr[1].id == 5 and tr[1].price == 100 and tr[1].qty == 0.5 and tr[1].buyer_maker == true)
            local b = market.book("BTCUSDT", 2)
            assert(#b.bids == 2 and #b.asks == 2 and b.update_id == 11)
            assert(market.book("ETHUSDT") == nil)
            local info = market.info("ETHBTC")
            assert(info.base == "ETH" and info.quote == "BTC" and info.tick_size == 0.01 and info.step_size == 0.0001
                and info.min_qty == 0.0001 and info.max_qty == 9000 and info.min_notional == 5 and info.status == "TRADING")
            local symbols = market.symbols()
            assert(#symbols == 3 and symbols[1] == "BTCUSDT")
            assert(market.round_price("BTCUSDT", 100.004) == 100)
            assert(market.round_qty("BTCUSDT", 0.12345) == 0.1234)
            local o = orders.place { symbol = "BTCUSDT", side = "BUY", type = "LIMIT", quantity = 0.5, price = 100,
                client_id = "limit-1", wait_ms = 250 }
            assert(o.status == "NEW" and o.client_id == "limit-1" and o.tif == "GTC" and o.type == "LIMIT"
                and o.side == "BUY" and o.quantity == 0.5 and o.price == 100 and o.id ~= nil)
            local c = orders.cancel("BTCUSDT", "limit-1")
            assert(c.status == "CANCELED" and c.client_id == "limit-1")
            assert(orders.get("BTCUSDT", 42).side == "SELL")
            assert(#orders.cancel_all("BTCUSDT") == 0)
            assert(#orders.open() == 1 and #orders.open("BTCUSDT") == 1 and #orders.open("ETHUSDT") == 0)
            local bal = account.balances()
            assert(bal.USDT.free == 1000 and bal.USDT.locked == 5)
            local st = ledger.status()
            assert(st.state == "normal" and st.mine.weight == 12 and st.mine.orders == 3 and type(st.pools) == "table")
            assert(clock.now() == 1700000000123)
            log.info("hello %s %d", "world", 5)
            log.debug("debug")
            log.warn({})
            log.error("error %q", "x")
            print("printed", 1, nil)
            expect_error("bad argument #1 (symbol) to 'market.quote': string expected, got number", market.quote, 5)
            expect_error("unknown symbol 'NOPE'", market.quote, "NOPE")
            expect_error("unknown symbol 'NOPE'", market.ticker, "NOPE")
            expect_error("positive integer", market.depth, "BTCUSDT", -5)
            expect_error("unknown interval", market.klines, "BTCUSDT", "7m")
            expect_error("side must be", orders.place, { symbol = "BTCUSDT", side = "BUYY", type = "LIMIT" })
            expect_error("did you mean quantity?", orders.place, { symbol = "BTCUSDT", side = "BUY", type = "LIMIT", quantty = 1 })
            -- The fields are read in one raw pass: keys that are not names, and fields only an
            -- __index would give, are refused as before.
            expect_error("unknown field '1'", orders.place, { "x", symbol = "BTCUSDT", side = "BUY", type = "LIMIT" })
            expect_error("unknown field", orders.place, { [{}] = 1, symbol = "BTCUSDT", side = "BUY", type = "LIMIT" })
            expect_error("symbol is required", orders.place,
                setmetatable({ side = "BUY", type = "LIMIT" }, { __index = { symbol = "BTCUSDT" } }))
            expect_error("side must be a string", orders.place, { symbol = "BTCUSDT", side = {}, type = "LIMIT" })
            local junk = { symbol = "BTCUSDT", side = "BUY", type = "LIMIT" }
            for i = 1, 20000 do junk["k" .. i] = i end
            expect_error("unknown field 'k", orders.place, junk)
            expect_error("unknown field 'pricee'", orders.place_list, { symbol = "BTCUSDT", type = "oco", side = "SELL",
                quantity = 1, above = { type = "LIMIT_MAKER", price = 110 }, below = { type = "STOP_LOSS", pricee = 90 } })
            expect_error("tif must be", orders.place, { symbol = "BTCUSDT", side = "BUY", type = "LIMIT", tif = "GTX" })
            expect_error("type must be", orders.place, { symbol = "BTCUSDT", side = "BUY", type = "STOP" })
            expect_error("quantity must be a number", orders.place, { symbol = "BTCUSDT", side = "BUY", type = "MARKET", quantity = "1" })
            expect_error("bad argument #1 (order)", orders.place, "BTCUSDT")
            expect_error("order id", orders.cancel, "BTCUSDT", {})
            expect_error("bad argument #1 (ms)", timer.every, "x", "t")
            expect_error("ms must be", timer.every, 0, "t")
            expect_error("wait_ms: a number of milliseconds expected", market.depth, "BTCUSDT", 5, { wait_ms = "soon" })
            expect_error("read-only", function() orders.place = nil end)
        end
        local ok, err = pcall(check_all)
        local message = ok and "api-ok" or ("api-fail " .. tostring(err))
    "#;
    let path = files.write(
        "api.lua",
        &format!(
            "return {{ order_wait_ms = 700, max_wait_ms = 1234, on_start = function()\n{body}\n{}\nend }}",
            report("message")
        ),
    );
    let host = Host::new(venue.clone(), config(&files));
    let name = host.add(&path).await.expect("loads");
    assert_eq!(name, "api");
    wait_for("the API report", LONG, || !venue.reports("api", "api-").is_empty()).await;
    assert_eq!(venue.reports("api", "api-"), ["api-ok"]);
    let calls = venue.calls.lock().clone();
    assert!(calls.contains(&"depth BTCUSDT 5 0".to_string()), "{calls:?}");
    let placed = venue.placed.lock().clone();
    assert_eq!(placed[0].2.wait, Duration::from_millis(250), "per-call wait_ms");
    assert_eq!(placed[1].2.wait, Duration::from_millis(700), "order_wait_ms default");
    assert_eq!(&*placed[0].2.strategy, "api");
    // The report's own order is counted once its reply is back in the strategy.
    wait_for("the order count", LONG, || stats(&host, "api").orders_placed == 2).await;
    let s = stats(&host, "api");
    assert_eq!(s.errors, 0);
    host.stop_all(StopReason::Shutdown).await;
}

fn order(strategy: &str, client_id: &str, status: OrderStatus, filled: f64, price: f64) -> Order {
    Order {
        strategy: strategy.into(),
        id: Some(1),
        client_id: client_id.into(),
        symbol: "BTCUSDT".into(),
        side: Side::Buy,
        order_type: runner::exchange::OrderType::Limit,
        tif: None,
        status,
        price,
        quantity: 1.0,
        filled_qty: filled,
        filled_quote: filled * price,
        avg_price: price,
        last_fill_qty: filled,
        last_fill_price: price,
        last_commission: if filled > 0.0 { 0.001 } else { 0.0 },
        commission_asset: (filled > 0.0).then(|| "BNB".to_string()),
        reject_reason: None,
        time: 1,
        update_time: 2,
        stop_price: None,
        list_id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_their_callbacks() {
    let files = Files::new();
    let venue = TestVenue::new();
    let say = |what: &str| report(what);
    let path = files.write(
        "events.lua",
        &format!(
            r#"
            local ticks = 0
            return {{
                symbols = {{ "BTCUSDT", "ETHUSDT" }},
                streams = {{ "book", "depth", "trade", "kline_1m" }},
                on_start = function() timer.after(5, "once") timer.every(5, "tick") end,
                on_book = function(q) {} end,
                on_depth = function(symbol) {} end,
                on_trade = function(t) {} end,
                on_kline = function(k) {} end,
                on_order = function(o) {} end,
                on_timer = function(name)
                    if name == "tick" then
                        ticks = ticks + 1
                        if ticks == 3 then timer.cancel("tick") {} end
                    else
                        {}
                    end
                end,
            }}
            "#,
            say(r#"string.format("book:%s:%g:%g:%d", q.symbol, q.bid, q.ask, q.update_id)"#),
            say(r#""depth:" .. symbol"#),
            say(r#"string.format("trade:%s:%d:%g:%s", t.symbol, t.id, t.qty, tostring(t.buyer_maker))"#),
            say(r#"string.format("kline:%s:%s:%g:%s", k.symbol, k.interval, k.close, tostring(k.closed))"#),
            say(r#"string.format("order:%s:%s:%g", o.client_id, o.status, o.filled_qty)"#),
            say(r#""timer:tick3""#),
            say(r#""timer:" .. name"#),
        ),
    );
    let host = Host::new(venue.clone(), config(&files));
    host.add(&path).await.expect("loads");
    let subscribed = venue.subscriptions.lock().get("events").cloned().unwrap_or_default();
    assert_eq!(subscribed.len(), 8, "2 symbols x 4 streams: {subscribed:?}");

    host.market(MarketEvent::Book(quote("ETHUSDT", 2000.0, 4)));
    host.market(MarketEvent::Book(quote("ETHBTC", 0.05, 1))); // not subscribed
    host.market(MarketEvent::DepthChanged("BTCUSDT".into()));
    host.market(MarketEvent::Trade(Trade {
        symbol: "BTCUSDT".into(),
        id: 77,
        price: 100.0,
        qty: 0.25,
        time: 5,
        buyer_maker: false,
    }));
    let kline = Kline {
        open_time: 0,
        open: 1.0,
        high: 1.0,
        low: 1.0,
        close: 1.25,
        volume: 1.0,
        close_time: 59_999,
    };
    host.market(MarketEvent::Kline {
        symbol: "BTCUSDT".into(),
        interval: "1m".into(),
        kline,
        closed: true,
    });
    host.market(MarketEvent::Kline {
        symbol: "BTCUSDT".into(),
        interval: "5m".into(),
        kline,
        closed: true,
    });
    host.order(order("someone-else", "theirs", OrderStatus::New, 0.0, 100.0));
    host.order(order("events", "mine", OrderStatus::New, 0.0, 100.0));
    host.order(order("events", "mine", OrderStatus::PartiallyFilled, 0.5, 100.0));
    host.order(order("events", "mine", OrderStatus::Filled, 1.0, 100.0));

    let expected = [
        "book:ETHUSDT:2000:2000.5:4",
        "depth:BTCUSDT",
        "trade:BTCUSDT:77:0.25:false",
        "kline:BTCUSDT:1m:1.25:true",
        "order:mine:NEW:0",
        "order:mine:PARTIALLY_FILLED:0.5",
        "order:mine:FILLED:1",
        "timer:once",
        "timer:tick3",
    ];
    wait_for("every event", LONG, || {
        let seen = venue.all_reports("events");
        expected.iter().all(|e| seen.iter().any(|s| s == e))
    })
    .await;
    let seen = venue.all_reports("events");
    assert!(
        !seen
            .iter()
            .any(|s| s.contains("ETHBTC") || s.contains("5m") || s.contains("theirs")),
        "{seen:?}"
    );
    let market_order: Vec<&String> = seen.iter().filter(|s| !s.starts_with("timer")).collect();
    assert_eq!(
        market_order[..4],
        expected[..4].iter().collect::<Vec<_>>()[..],
        "in arrival order"
    );

    let s = stats(&host, "events");
    assert!(s.events_handled >= 9, "{s:?}");
    assert_eq!(s.orders_filled, 1);
    assert_eq!(s.flows.get("BTC"), Some(&1.0));
    assert_eq!(s.flows.get("USDT"), Some(&-100.0));
    assert!((s.flows["BNB"] + 0.002).abs() < 1e-12, "{:?}", s.flows);
    assert!(s.running);
    host.stop_all(StopReason::Shutdown).await;
    assert!(!stats(&host, "events").running);
    assert!(venue.subscriptions.lock()["events"].is_empty(), "unsubscribed on stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_errors_are_logged_and_the_strategy_goes_on() {
    let files = Files::new();
    let venue = TestVenue::new();
    let path = files.write(
        "flaky.lua",
        &format!(
            r#"
            return {{
                symbols = {{ "BTCUSDT" }},
                on_book = function(q)
                    if q.update_id == 1 then error("first one fails") end
                    if q.update_id == 2 then market.quote(42) end
                    {}
                end,
            }}
            "#,
            report(r#""seen:" .. q.update_id"#)
        ),
    );
    let host = Host::new(venue.clone(), config(&files));
    host.add(&path).await.unwrap();
    for id in 1..=3 {
        host.market(MarketEvent::Book(quote("BTCUSDT", 1.0, id)));
        if id < 3 {
            wait_for("the error", LONG, || stats(&host, "flaky").errors == id).await;
        }
    }
    wait_for("the next event", LONG, || venue.reports("flaky", "seen:") == ["seen:3"]).await;
    assert_eq!(stats(&host, "flaky").errors, 2);
    assert_eq!(stats(&host, "flaky").trips, 0);
    host.stop_all(StopReason::Shutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_is_saved_on_stop_and_restored_at_start() {
    let files = Files::new();
    let venue = TestVenue::new();
    let state_dir = files.path().join("state");
    let host_config = HostConfig {
        state_dir: Some(state_dir.clone()),
        ..config(&files)
    };
    let path = files.write(
        "keeper.lua",
        &format!(
            r#"
            state.count = state.count or 0
            state.nested = state.nested or {{ list = {{ 1, 2, 3 }}, flag = true }}
            return {{
                name = "keeper",
                symbols = {{ "BTCUSDT" }},
                on_start = function() {} end,
                on_book = function(q) state.count = state.count + 1 state.fn = print end,
                on_stop = function(reason) state.reason = reason end,
            }}
            "#,
            report(r#""start:" .. state.count"#)
        ),
    );
    let host = Host::new(venue.clone(), host_config.clone());
    host.add(&path).await.unwrap();
    for id in 1..=3 {
        host.market(MarketEvent::Book(quote("BTCUSDT", 1.0, id)));
        wait_for("the event", LONG, || stats(&host, "keeper").events_handled == id).await;
    }
    host.stop_all(StopReason::Duration).await;
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state_dir.join("strategies/keeper.json")).unwrap()).unwrap();
    assert_eq!(saved["count"], 3);
    assert_eq!(saved["reason"], "duration");
    assert_eq!(saved["nested"]["list"], serde_json::json!([1, 2, 3]));
    assert!(saved.get("fn").is_none(), "functions are dropped");

    let host = Host::new(venue.clone(), host_config);
    host.add(&path).await.unwrap();
    wait_for("the restored start", LONG, || {
        venue.reports("keeper", "start:").len() == 2
    })
    .await;
    assert_eq!(venue.reports("keeper", "start:"), ["start:0", "start:3"]);
    host.stop_all(StopReason::Shutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_names_and_bad_files_are_refused() {
    let files = Files::new();
    let venue = TestVenue::new();
    let host = Host::new(venue.clone(), config(&files));
    let a = files.write("a.lua", r#"return { name = "same" }"#);
    let b = files.write("b.lua", r#"return { name = "same" }"#);
    host.add(&a).await.unwrap();
    let err = host.add(&b).await.unwrap_err();
    assert!(err.to_string().contains("already running"), "{err}");
    let bad = files.write(
        "bad.lua",
        "return {\n  symbols = { 'BTCUSDT' },\n  on_book = function(q) q. end }",
    );
    let err = host.add(&bad).await.unwrap_err();
    assert!(err.to_string().contains("bad.lua:3:"), "{err}");
    assert_eq!(host.names(), ["same"]);
    let sink: Arc<dyn EventSink> = host.clone();
    sink.market(MarketEvent::DepthChanged("BTCUSDT".into()));
    host.stop_all(StopReason::Shutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_orders_and_self_trade_prevention_reach_the_venue_typed() {
    let files = Files::new();
    let venue = TestVenue::new();
    let host = Host::new(venue.clone(), config(&files));
    let source = format!(
        r#"return {{ name = "stops", on_start = function()
            local o = orders.place {{ symbol = "BTCUSDT", side = "SELL", type = "STOP_LOSS_LIMIT", quantity = 0.5,
                price = 90, stop_price = 91, stp = "EXPIRE_BOTH", client_id = "stop-1" }}
            assert(o.type == "STOP_LOSS_LIMIT" and o.tif == "GTC")
            local none, err = orders.place {{ symbol = "BTCUSDT", side = "SELL", type = "STOP_LOSS", quantity = 0.5 }}
            local bad = pcall(orders.place, {{ symbol = "BTCUSDT", side = "SELL", type = "STOP_LOSS", quantity = 0.5,
                stop_price = 91, stp = "SOMETIMES" }})
            {}
        end }}"#,
        report(r#"(none == nil and err.code or "?") .. ":" .. tostring(bad)"#)
    );
    host.add(&files.write("stops.lua", &source)).await.unwrap();
    wait_for("the report", Duration::from_secs(10), || {
        !venue.reports("stops", "invalid_order").is_empty()
    })
    .await;
    assert_eq!(venue.reports("stops", "invalid_order"), ["invalid_order:false"]);
    let placed = venue.placed.lock().clone();
    let (_, stop, _) = placed
        .iter()
        .find(|(_, r, _)| r.symbol == "BTCUSDT" && r.side == Side::Sell)
        .unwrap();
    assert_eq!(
        stop.kind,
        OrderKind::StopLossLimit {
            price: 90.0,
            quantity: 0.5,
            tif: TimeInForce::Gtc,
            trigger: StopTrigger {
                stop_price: Some(91.0),
                trailing_delta: None
            }
        }
    );
    assert_eq!(stop.stp, Some(SelfTradePrevention::ExpireBoth));
    host.stop_all(StopReason::Shutdown).await;
}
