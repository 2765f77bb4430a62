//! The simulator's REST API over real HTTP on loopback: endpoint shapes, errors, signing,
//! order matching and balances, exact limit enforcement (429 then 418) and fault knobs.

use std::time::Duration;

use crate::sim_support::*;
use reqwest::Method;
use runner::ledger::limits::{IntervalUnit, PoolKind, RateLimit};
use runner::sim::{FailKind, SimConfig, PAPER_API_KEY};
use rust_decimal::Decimal;
use serde_json::Value;

fn dec(v: &Value) -> Decimal {
    v.as_str().expect("decimal string").parse().expect("decimal")
}

#[tokio::test]
async fn market_data_endpoints_answer_in_binance_shapes() {
    let sim = start(SimConfig::default()).await;
    let rest = Rest::new(&sim);

    let ping = rest.get("/api/v3/ping").await;
    assert_eq!((ping.status, ping.body.clone()), (200, serde_json::json!({})));
    assert_eq!(ping.used_weight(), Some(1));
    let time = rest.get("/api/v3/time").await;
    assert!((time.body["serverTime"].as_i64().unwrap() - now_ms()).abs() < 2_000);

    let info = rest.get("/api/v3/exchangeInfo").await;
    assert_eq!(info.used_weight(), Some(22));
    let limits = info.body["rateLimits"].as_array().unwrap();
    assert!(limits
        .iter()
        .any(|l| l["rateLimitType"] == "REQUEST_WEIGHT" && l["limit"] == 6000 && l["interval"] == "MINUTE"));
    let symbols = info.body["symbols"].as_array().unwrap();
    assert!(symbols.len() >= 8);
    let btc = symbols.iter().find(|s| s["symbol"] == "BTCUSDT").unwrap();
    let filters: Vec<&str> = btc["filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filterType"].as_str().unwrap())
        .collect();
    for f in [
        "PRICE_FILTER",
        "LOT_SIZE",
        "MARKET_LOT_SIZE",
        "NOTIONAL",
        "MAX_NUM_ORDERS",
    ] {
        assert!(filters.contains(&f), "{f} missing");
    }
    let parsed: runner::exchange::binance::wire::ExchangeInfo = serde_json::from_value(info.body.clone()).unwrap();
    assert_eq!(parsed.symbols.len(), symbols.len());

    let depth = rest.get("/api/v3/depth?symbol=BTCUSDT&limit=5").await;
    assert_eq!(depth.used_weight(), Some(27));
    let snap: runner::exchange::binance::wire::DepthSnapshot = serde_json::from_value(depth.body.clone()).unwrap();
    assert_eq!((snap.bids.len(), snap.asks.len()), (5, 5));
    assert!(snap.bids[0][0] < snap.asks[0][0], "book is not crossed");
    assert!(snap.bids.windows(2).all(|w| w[0][0] > w[1][0]) && snap.asks.windows(2).all(|w| w[0][0] < w[1][0]));
    let big = rest.get("/api/v3/depth?symbol=BTCUSDT&limit=1000").await;
    assert_eq!(big.used_weight(), Some(77));

    // Cross rates are consistent: ETHBTC ≈ ETHUSDT / BTCUSDT (within a dislocation's size).
    let price = |s: &str| {
        let rest = &rest;
        let s = s.to_string();
        async move { dec(&rest.get(&format!("/api/v3/ticker/price?symbol={s}")).await.body["price"]) }
    };
    let (eth, btc_p, ethbtc) = (price("ETHUSDT").await, price("BTCUSDT").await, price("ETHBTC").await);
    let implied = eth / btc_p;
    assert!(
        ((ethbtc - implied) / implied).abs() < Decimal::new(2, 2),
        "{ethbtc} vs {implied}"
    );

    let all = rest.get("/api/v3/ticker/bookTicker").await;
    assert!(all.body.as_array().unwrap().len() >= 8);
    let some = rest
        .get("/api/v3/ticker/price?symbols=%5B%22BTCUSDT%22,%22ETHBTC%22%5D")
        .await;
    assert_eq!(some.body.as_array().unwrap().len(), 2);

    // Trades print as the market runs; klines and 24 h stats are built from them.
    let trades = eventually("trades", || async {
        let t = rest.get("/api/v3/trades?symbol=BTCUSDT&limit=10").await;
        (!t.body.as_array()?.is_empty()).then_some(t)
    })
    .await;
    let rows: Vec<runner::exchange::binance::wire::RestTrade> = serde_json::from_value(trades.body).unwrap();
    assert!(rows.windows(2).all(|w| w[0].id < w[1].id));
    let agg = rest.get("/api/v3/aggTrades?symbol=BTCUSDT&limit=3").await;
    assert!(!agg.body.as_array().unwrap().is_empty());
    let klines = rest.get("/api/v3/klines?symbol=BTCUSDT&interval=1m").await;
    let k: Vec<runner::exchange::binance::wire::KlineRow> = serde_json::from_value(klines.body).unwrap();
    assert!(!k.is_empty() && k[0].2 >= k[0].3, "high >= low");
    // A day of history exists from the start, ending at today's price.
    let history = rest.get("/api/v3/klines?symbol=ETHBTC&interval=1m&limit=1000").await;
    let h: Vec<runner::exchange::binance::wire::KlineRow> = serde_json::from_value(history.body).unwrap();
    assert_eq!(h.len(), 1000);
    assert!(h.windows(2).all(|w| w[1].0 - w[0].0 == 60_000), "one candle per minute");
    assert!(
        h.iter().all(|k| k.2 >= k.1.max(k.4) && k.3 <= k.1.min(k.4)),
        "high/low bound open/close"
    );
    let last_close = h.last().unwrap().4;
    assert!(((last_close - ethbtc) / ethbtc).abs() < Decimal::new(2, 2));
    let hourly = rest.get("/api/v3/klines?symbol=ETHBTC&interval=1h&limit=5").await;
    assert_eq!(hourly.body.as_array().unwrap().len(), 5);
    let avg = rest.get("/api/v3/avgPrice?symbol=BTCUSDT").await;
    assert_eq!(avg.body["mins"], 5);
    let day = rest.get("/api/v3/ticker/24hr?symbol=BTCUSDT").await;
    assert!(day.body["count"].as_u64().unwrap() >= 1 && day.body["bidPrice"].is_string());
    assert_eq!(
        rest.get("/api/v3/ticker/24hr").await.used_weight().map(|w| w >= 80),
        Some(true)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_binance_errors_never_a_dropped_connection() {
    let sim = start(still_market()).await;
    let rest = Rest::new(&sim);
    let cases = [
        ("/api/v3/depth?symbol=NOPE", 400, -1121),
        ("/api/v3/depth?symbol=BTC%C3%A9USDT", 400, -1100),
        // A limit over 5000 is truncated (documented); zero is malformed.
        ("/api/v3/depth?symbol=BTCUSDT&limit=0", 400, -1100),
        ("/api/v3/depth", 400, -1102),
        ("/api/v3/depth?symbol=BTCUSDT&bogus=1", 400, -1104),
        ("/api/v3/depth?symbol=BTCUSDT&symbol=ETHUSDT", 400, -1101),
        ("/api/v3/klines?symbol=BTCUSDT&interval=7m", 400, -1120),
        ("/api/v3/ticker/price?symbols=notjson", 400, -1100),
        ("/api/v3/ticker/price?symbol=BTCUSDT&symbols=%5B%5D", 400, -1128),
    ];
    for (path, status, code) in cases {
        let a = rest.get(path).await;
        assert_eq!((a.status, a.code()), (status, code), "{path}: {}", a.body);
    }
    assert_eq!(rest.get("/api/v3/nope").await.status, 404);
    let garbage = rest
        .send(
            Method::POST,
            "/api/v3/order",
            Some(PAPER_API_KEY),
            Some("\u{0}%%%&&==x".to_string()),
        )
        .await;
    assert_eq!(garbage.status, 400);
    // Still serving.
    assert_eq!(rest.get("/api/v3/ping").await.status, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn signed_requests_check_key_timestamp_and_signature() {
    let sim = start(still_market()).await;
    let rest = Rest::new(&sim);
    let ok = rest.signed(Method::GET, "/api/v3/account", "").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.used_weight(), Some(20));
    let usdt = ok.body["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["asset"] == "USDT")
        .unwrap()
        .clone();
    assert_eq!(dec(&usdt["free"]), Decimal::from(100_000));

    let q = signed_query("", now_ms());
    let no_key = rest
        .send(Method::GET, &format!("/api/v3/account?{q}"), None, None)
        .await;
    assert_eq!((no_key.status, no_key.code()), (401, -2014));
    let wrong = rest
        .send(Method::GET, &format!("/api/v3/account?{q}"), Some("nope"), None)
        .await;
    assert_eq!(
        (wrong.code(), wrong.msg()),
        (-2015, "Invalid API-key, IP, or permissions for action.")
    );
    let tampered = q.replace("signature=", "signature=0");
    let bad = rest
        .send(
            Method::GET,
            &format!("/api/v3/account?{tampered}"),
            Some(PAPER_API_KEY),
            None,
        )
        .await;
    assert_eq!(
        (bad.code(), bad.msg()),
        (-1022, "Signature for this request is not valid.")
    );
    let old = signed_query("recvWindow=5000", now_ms() - 10_000);
    let stale = rest
        .send(
            Method::GET,
            &format!("/api/v3/account?{old}"),
            Some(PAPER_API_KEY),
            None,
        )
        .await;
    assert_eq!(
        (stale.code(), stale.msg()),
        (-1021, "Timestamp for this request is outside of the recvWindow.")
    );
    // A stale request still costs weight, as on the exchange.
    assert_eq!(stale.used_weight(), Some(100));
    let ahead = signed_query("", now_ms() + 5_000);
    assert_eq!(
        rest.send(
            Method::GET,
            &format!("/api/v3/account?{ahead}"),
            Some(PAPER_API_KEY),
            None
        )
        .await
        .code(),
        -1021
    );
    let wide = signed_query("recvWindow=60001", now_ms());
    assert_eq!(
        rest.send(
            Method::GET,
            &format!("/api/v3/account?{wide}"),
            Some(PAPER_API_KEY),
            None
        )
        .await
        .code(),
        -1131
    );
    let unsigned = rest
        .send(
            Method::GET,
            &format!("/api/v3/account?timestamp={}", now_ms()),
            Some(PAPER_API_KEY),
            None,
        )
        .await;
    assert_eq!(unsigned.code(), -1102);

    // Parameters split between query and form body: the signature covers query + body.
    let ts = now_ms();
    let query = "symbol=BTCUSDT&side=BUY&type=LIMIT";
    let body = format!("timeInForce=GTC&quantity=0.001&price=10000&timestamp={ts}");
    let sig = runner::sim::hmac_hex(runner::sim::PAPER_API_SECRET, &format!("{query}{body}"));
    let split = rest
        .send(
            Method::POST,
            &format!("/api/v3/order?{query}"),
            Some(PAPER_API_KEY),
            Some(format!("{body}&signature={sig}")),
        )
        .await;
    assert_eq!(
        (split.status, split.body["status"].as_str()),
        (200, Some("NEW")),
        "{}",
        split.body
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn orders_match_with_balances_commission_and_exchange_messages() {
    let sim = start(still_market()).await;
    let rest = Rest::new(&sim);
    let book = sim.book("BTCUSDT", 1).unwrap();
    let (best_bid, best_ask) = (book.bids[0][0], book.asks[0][0]);

    // A limit buy below the market rests; it shows in the book and in openOrders.
    let below = (best_bid - Decimal::from(500)).round_dp(2);
    let rest_params = format!(
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price={below}&newClientOrderId=rest-1"
    );
    let placed = rest.signed(Method::POST, "/api/v3/order", &rest_params).await;
    assert_eq!(
        (placed.status, placed.body["status"].as_str()),
        (200, Some("NEW")),
        "{}",
        placed.body
    );
    assert_eq!(placed.header("x-mbx-order-count-10s").as_deref(), Some("1"));
    assert_eq!(placed.used_weight(), Some(0), "a successful order costs no weight");
    assert_eq!(sim.balance("USDT").1, below * Decimal::new(1, 2));
    let in_book = sim.book("BTCUSDT", 5000).unwrap();
    assert!(in_book.bids.iter().any(|[p, _]| *p == below));
    let dup = rest.signed(Method::POST, "/api/v3/order", &rest_params).await;
    assert_eq!((dup.code(), dup.msg()), (-2010, "Duplicate order sent."));
    assert_eq!(dup.used_weight(), Some(1), "a failed order costs 1");
    let open = rest.signed(Method::GET, "/api/v3/openOrders", "symbol=BTCUSDT").await;
    assert_eq!(open.body.as_array().unwrap().len(), 1);
    let status = rest
        .signed(Method::GET, "/api/v3/order", "symbol=BTCUSDT&origClientOrderId=rest-1")
        .await;
    assert_eq!(status.body["status"], "NEW");
    let cancel = rest
        .signed(
            Method::DELETE,
            "/api/v3/order",
            "symbol=BTCUSDT&origClientOrderId=rest-1",
        )
        .await;
    assert_eq!(
        (
            cancel.body["status"].as_str(),
            cancel.body["origClientOrderId"].as_str()
        ),
        (Some("CANCELED"), Some("rest-1"))
    );
    assert_eq!(sim.balance("USDT"), (Decimal::from(100_000), Decimal::ZERO));
    let again = rest
        .signed(
            Method::DELETE,
            "/api/v3/order",
            "symbol=BTCUSDT&origClientOrderId=rest-1",
        )
        .await;
    assert_eq!((again.code(), again.msg()), (-2011, "Unknown order sent."));
    let missing = rest
        .signed(Method::GET, "/api/v3/order", "symbol=BTCUSDT&orderId=999999")
        .await;
    assert_eq!((missing.code(), missing.msg()), (-2013, "Order does not exist."));

    // A market buy by quote amount fills at once, paying 0.1 % in the asset received.
    let market = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            "symbol=BTCUSDT&side=BUY&type=MARKET&quoteOrderQty=1000",
        )
        .await;
    assert_eq!(market.body["status"], "FILLED", "{}", market.body);
    let fills = market.body["fills"].as_array().unwrap();
    let qty: Decimal = fills.iter().map(|f| dec(&f["qty"])).sum();
    let commission: Decimal = fills.iter().map(|f| dec(&f["commission"])).sum();
    assert_eq!(commission, (qty * Decimal::new(1, 3)).round_dp(8));
    assert!(dec(&market.body["cummulativeQuoteQty"]) <= Decimal::from(1000));
    assert_eq!(sim.balance("BTC").0, Decimal::from(10) + qty - commission);
    assert_eq!(fills[0]["commissionAsset"], "BTC");
    assert!(dec(&fills[0]["price"]) >= best_ask);

    // Exchange rejections and filter failures, word for word.
    let cases = [
        (
            "symbol=BTCUSDT&side=SELL&type=LIMIT_MAKER&quantity=0.01&price=1000",
            -2010,
            "Order would immediately match and take.",
        ),
        (
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=100&price=50000",
            -2010,
            "Account has insufficient balance for requested action.",
        ),
        (
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.000001&price=50000",
            -1013,
            "Filter failure: LOT_SIZE",
        ),
        (
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000.001",
            -1013,
            "Filter failure: PRICE_FILTER",
        ),
        (
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.00001&price=100",
            -1013,
            "Filter failure: NOTIONAL",
        ),
        (
            "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=0.01&price=50000",
            -1102,
            "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.",
        ),
        (
            "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01&price=50000",
            -1106,
            "Parameter 'price' sent when not required.",
        ),
        (
            "symbol=XXXUSDT&side=BUY&type=MARKET&quantity=0.01",
            -1121,
            "Invalid symbol.",
        ),
        (
            "symbol=BTCUSDT&side=UP&type=MARKET&quantity=0.01",
            -1117,
            "Invalid side.",
        ),
    ];
    for (params, code, msg) in cases {
        let a = rest.signed(Method::POST, "/api/v3/order", params).await;
        assert_eq!((a.code(), a.msg()), (code, msg), "{params}");
    }

    // FOK that cannot fill completely expires untouched; IOC takes what it can.
    let far = (best_ask + Decimal::from(1)).round_dp(2);
    let fok = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            &format!("symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=FOK&quantity=1&price={far}"),
        )
        .await;
    assert_eq!(
        (fok.body["status"].as_str(), dec(&fok.body["executedQty"])),
        (Some("EXPIRED"), Decimal::ZERO)
    );
    let ioc = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            &format!("symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=IOC&quantity=1&price={far}"),
        )
        .await;
    assert_eq!(ioc.body["status"], "EXPIRED");
    assert!(dec(&ioc.body["executedQty"]) > Decimal::ZERO);

    let trades = rest.signed(Method::GET, "/api/v3/myTrades", "symbol=BTCUSDT").await;
    assert!(trades.body.as_array().unwrap().len() >= 2);
    let all = rest.signed(Method::GET, "/api/v3/allOrders", "symbol=BTCUSDT").await;
    assert_eq!(all.body.as_array().unwrap().len(), 4);
    let rl = rest.signed(Method::GET, "/api/v3/rateLimit/order", "").await;
    assert!(rl
        .body
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["rateLimitType"] == "ORDERS" && e["count"].is_u64()));
    let test = rest
        .signed(
            Method::POST,
            "/api/v3/order/test",
            "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01",
        )
        .await;
    assert_eq!((test.status, test.body.clone()), (200, serde_json::json!({})));
    sim.shutdown().await;
}

#[tokio::test]
async fn limit_maker_orders_are_answered_ack_unless_another_response_is_asked_for() {
    let sim = start(still_market()).await;
    let rest = Rest::new(&sim);
    let best_bid = sim.book("BTCUSDT", 1).unwrap().bids[0][0];
    let below = (best_bid - Decimal::from(500)).round_dp(2);
    let params = format!("symbol=BTCUSDT&side=BUY&type=LIMIT_MAKER&quantity=0.01&price={below}");
    let ack = rest.signed(Method::POST, "/api/v3/order", &params).await;
    assert_eq!(ack.status, 200, "{}", ack.body);
    assert!(
        ack.body["orderId"].is_u64() && ack.body["transactTime"].is_i64(),
        "{}",
        ack.body
    );
    assert!(ack.body.get("status").is_none(), "ACK carries no status: {}", ack.body);
    let result = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            &format!("{params}&newOrderRespType=RESULT"),
        )
        .await;
    assert_eq!(result.body["status"], "NEW", "{}", result.body);
    assert!(result.body.get("fills").is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn resting_orders_fill_as_makers_when_the_market_moves_through_them() {
    let sim = start(still_market()).await;
    let rest = Rest::new(&sim);
    let bid = sim.book("ETHUSDT", 1).unwrap().bids[0][0];
    let price = (bid * Decimal::new(99, 2)).round_dp(2);
    let placed = rest
        .signed(Method::POST, "/api/v3/order", &format!("symbol=ETHUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.5&price={price}&newClientOrderId=maker-1"))
        .await;
    assert_eq!(placed.body["status"], "NEW");
    assert!(sim.set_price("ETHUSDT", price * Decimal::new(98, 2)));
    sim.step_market();
    let orders = sim.orders_by_client_id("maker-1");
    assert_eq!(orders.len(), 1, "exactly one order exists");
    assert_eq!(
        (orders[0].status.as_str(), orders[0].executed_qty),
        ("FILLED", Decimal::new(5, 1))
    );
    let trades = rest.signed(Method::GET, "/api/v3/myTrades", "symbol=ETHUSDT").await;
    let t = &trades.body.as_array().unwrap()[0];
    assert_eq!((t["isMaker"].as_bool(), dec(&t["price"])), (Some(true), price));
    assert_eq!(
        sim.balance("USDT"),
        (Decimal::from(100_000) - price * Decimal::new(5, 1), Decimal::ZERO)
    );
    sim.shutdown().await;
}

fn small_limits() -> SimConfig {
    SimConfig {
        limits: vec![
            RateLimit::new(PoolKind::RequestWeight, IntervalUnit::Second, 2, 10),
            RateLimit::new(PoolKind::Orders, IntervalUnit::Second, 2, 2),
            RateLimit::new(PoolKind::RawRequests, IntervalUnit::Minute, 5, 1_000),
        ],
        ban_base: Duration::from_secs(1),
        ..still_market()
    }
}

/// Sleeps until just after the start of the next 2-second window, so a test's burst fits in one.
async fn align_to_two_seconds() {
    let ms = now_ms();
    let next = (ms / 2000 + 1) * 2000;
    tokio::time::sleep(Duration::from_millis((next - ms + 20) as u64)).await;
}

#[tokio::test]
async fn over_the_limit_is_429_and_anything_during_the_wait_is_418() {
    let sim = start(small_limits()).await;
    let rest = Rest::new(&sim);
    align_to_two_seconds().await;
    for i in 1..=10 {
        let a = rest.get("/api/v3/ping").await;
        assert_eq!((a.status, a.header("x-mbx-used-weight-2s")), (200, Some(i.to_string())));
    }
    let over = rest.get("/api/v3/ping").await;
    assert_eq!((over.status, over.code()), (429, -1003));
    let retry: u64 = over.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "seconds until the window resets: {retry}");
    assert!(over
        .msg()
        .starts_with("Too much request weight used; current limit is 10 request weight per 2 SECOND."));
    let banned = rest.get("/api/v3/time").await;
    assert_eq!((banned.status, banned.code()), (418, -1003));
    assert!(banned
        .msg()
        .starts_with("Way too much request weight used; IP banned until "));
    assert!(banned
        .msg()
        .ends_with("Please use WebSocket Streams for live updates to avoid bans."));
    assert_eq!(banned.header("retry-after").as_deref(), Some("1"));
    let stats = sim.stats();
    assert_eq!((stats.count_429, stats.count_418, stats.bans), (1, 1, 1));
    let weight = stats.pools.iter().find(|p| p.kind == PoolKind::RequestWeight).unwrap();
    assert_eq!(weight.peak, 11);
    // The log shows what arrived during the wait and how it was answered.
    let log = sim.request_log();
    let first_429 = log.iter().position(|r| r.status == 429).unwrap();
    assert!(log[first_429 + 1..].iter().all(|r| r.status == 418));

    // After the wait and the ban, requests are served again.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(rest.get("/api/v3/ping").await.status, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn unfilled_order_count_is_enforced_with_1015() {
    let sim = start(small_limits()).await;
    let rest = Rest::new(&sim);
    align_to_two_seconds().await;
    let bid = sim.book("BTCUSDT", 1).unwrap().bids[0][0] - Decimal::from(1000);
    let place = |n: u32| {
        format!("symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price={bid}&newClientOrderId=o{n}")
    };
    for n in 1..=2 {
        let a = rest.signed(Method::POST, "/api/v3/order", &place(n)).await;
        assert_eq!((a.status, a.header("x-mbx-order-count-2s")), (200, Some(n.to_string())));
    }
    let third = rest.signed(Method::POST, "/api/v3/order", &place(3)).await;
    assert_eq!(
        (third.status, third.code(), third.msg()),
        (
            429,
            -1015,
            "Too many new orders; current limit is 2 orders per 2 SECOND."
        )
    );
    assert!(third.header("retry-after").is_some());
    assert!(sim.orders_by_client_id("o3").is_empty());
    // Market data is still allowed; another new order in the wait is a ban.
    assert_eq!(rest.get("/api/v3/time").await.status, 200);
    assert_eq!(rest.signed(Method::POST, "/api/v3/order", &place(4)).await.status, 418);
    sim.shutdown().await;
}

#[tokio::test]
async fn fault_knobs_inject_failures_latency_skew_and_external_weight() {
    let sim = start(still_market()).await;
    let rest = Rest::new(&sim);
    let faults = sim.faults();

    faults.fail_next(2, FailKind::BadGateway);
    assert_eq!(rest.get("/api/v3/ping").await.status, 502);
    assert_eq!(rest.get("/api/v3/ping").await.status, 502);
    assert_eq!(rest.get("/api/v3/ping").await.status, 200);

    // -1007: the order is processed but the answer says the outcome is unknown.
    faults.fail_next(1, FailKind::Unknown1007);
    let bid = sim.book("BTCUSDT", 1).unwrap().bids[0][0] - Decimal::from(1000);
    let params = format!(
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price={bid}&newClientOrderId=lost-1"
    );
    let lost = rest.signed(Method::POST, "/api/v3/order", &params).await;
    assert_eq!((lost.status, lost.code()), (503, -1007));
    assert_eq!(sim.orders_by_client_id("lost-1").len(), 1);

    // Answers to order placements delayed past the client's timeout: the order exists anyway.
    faults.delay_order_answers(Duration::from_millis(600));
    let query = signed_query(&params.replace("lost-1", "slow-1"), now_ms());
    let timed_out = rest
        .http
        .post(format!("{}/api/v3/order?{query}", rest.base))
        .header("X-MBX-APIKEY", PAPER_API_KEY)
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(timed_out.is_err());
    assert_eq!(sim.orders_by_client_id("slow-1").len(), 1);
    faults.delay_order_answers(Duration::ZERO);

    faults.set_latency(Duration::from_millis(150));
    let t0 = std::time::Instant::now();
    rest.get("/api/v3/ping").await;
    assert!(t0.elapsed() >= Duration::from_millis(150));
    faults.set_latency(Duration::ZERO);

    faults.set_clock_skew_ms(-30_000);
    let skewed = rest.get("/api/v3/time").await.body["serverTime"].as_i64().unwrap();
    assert!((now_ms() - 30_000 - skewed).abs() < 2_000);
    faults.set_clock_skew_ms(0);

    let before = rest.get("/api/v3/ping").await.used_weight().unwrap();
    faults.add_external_weight(1000);
    let after = rest.get("/api/v3/ping").await.used_weight().unwrap();
    assert_eq!(after, before + 1001);

    // Over HTTP too: force a 429, then anything is a 418.
    let http = reqwest::Client::new();
    let set = http
        .post(format!("{}/sim/faults", rest.base))
        .json(&serde_json::json!({"force_429_secs": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status().as_u16(), 200);
    let forced = rest.get("/api/v3/ping").await;
    assert_eq!(
        (forced.status, forced.header("retry-after").as_deref()),
        (429, Some("7"))
    );
    assert_eq!(rest.get("/api/v3/ping").await.status, 418);
    let stats: Value = http
        .get(format!("{}/sim/stats", rest.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (stats["count_429"].as_u64(), stats["count_418"].as_u64()),
        (Some(1), Some(1))
    );
    let bad = http
        .post(format!("{}/sim/faults", rest.base))
        .body("{\"nope\":1}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn forced_ban_lasts_its_seconds() {
    let sim = start(still_market()).await;
    let rest = Rest::new(&sim);
    sim.faults().force_418(1);
    let banned = rest.get("/api/v3/ping").await;
    assert_eq!(
        (banned.status, banned.header("retry-after").as_deref()),
        (418, Some("1"))
    );
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    assert_eq!(rest.get("/api/v3/ping").await.status, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn serve_runs_on_a_given_listener_until_shutdown() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(runner::sim::serve(still_market(), listener, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let ping = http.get(format!("http://{addr}/api/v3/ping")).send().await.unwrap();
    assert_eq!(ping.status().as_u16(), 200);
    stop.send(()).unwrap();
    let result = tokio::time::timeout(DEADLINE, server)
        .await
        .expect("stops in time")
        .unwrap();
    assert!(result.is_ok());
}
