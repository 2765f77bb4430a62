//! The simulator's REST side against Binance's documents: kline intervals, depth limits,
//! historical trades, rolling-window and trading-day tickers, commission, execution rules,
//! reference price, JSON errors for unknown paths, microsecond times and exchangeInfo's shape.

use crate::sim_support::*;
use reqwest::Method;
use runner::sim::{SimConfig, PAPER_API_KEY};
use serde_json::Value;

#[tokio::test]
async fn klines_of_every_documented_interval() {
    let sim = start(SimConfig::default()).await;
    let rest = Rest::new(&sim);
    for (interval, len) in [("1m", 60_000i64), ("3d", 259_200_000), ("1w", 604_800_000)] {
        let rows = rest
            .get(&format!("/api/v3/klines?symbol=BTCUSDT&interval={interval}&limit=3"))
            .await;
        assert_eq!(rows.status, 200, "{interval}: {}", rows.body);
        let last = rows.body.as_array().unwrap().last().unwrap().clone();
        let (open, close) = (last[0].as_i64().unwrap(), last[6].as_i64().unwrap());
        assert_eq!(close - open + 1, len, "{interval}");
    }
    // Weeks open on Mondays (1970-01-05 was one).
    let week = rest.get("/api/v3/klines?symbol=BTCUSDT&interval=1w&limit=1").await;
    assert_eq!((week.body[0][0].as_i64().unwrap() / 86_400_000 - 4) % 7, 0);
    let month = rest.get("/api/v3/klines?symbol=BTCUSDT&interval=1M&limit=1").await;
    assert_eq!(month.status, 200);
    let days = (month.body[0][6].as_i64().unwrap() + 1 - month.body[0][0].as_i64().unwrap()) / 86_400_000;
    assert!((28..=31).contains(&days), "{days}");
    // One-second klines from the recent trades: ids and counts agree.
    let secs = eventually("a traded second", || async {
        let rows = rest.get("/api/v3/klines?symbol=BTCUSDT&interval=1s&limit=1000").await;
        let traded = rows.body.as_array().unwrap().iter().any(|r| r[8].as_u64().unwrap() > 0);
        traded.then_some(rows)
    })
    .await;
    for row in secs.body.as_array().unwrap() {
        assert_eq!(row[6].as_i64().unwrap() - row[0].as_i64().unwrap(), 999);
    }
    let bad = rest.get("/api/v3/klines?symbol=BTCUSDT&interval=2w").await;
    assert_eq!((bad.status, bad.code()), (400, -1120));
    sim.shutdown().await;
}

#[tokio::test]
async fn market_data_endpoints_and_ticker_consistency() {
    let sim = start(SimConfig::default()).await;
    let rest = Rest::new(&sim);
    // A limit over 5000 is truncated, not refused; weight follows the limit.
    let deep = rest.get("/api/v3/depth?symbol=BTCUSDT&limit=6000").await;
    assert_eq!(deep.status, 200);
    let five = rest.get("/api/v3/depth?symbol=BTCUSDT&limit=5").await;
    assert_eq!(five.body["bids"].as_array().unwrap().len(), 5);

    let recent = eventually("trades", || async {
        let t = rest.get("/api/v3/trades?symbol=BTCUSDT&limit=5").await;
        (t.body.as_array().unwrap().len() == 5).then_some(t)
    })
    .await;
    let from = recent.body[0]["id"].as_u64().unwrap();
    let old = rest
        .get(&format!(
            "/api/v3/historicalTrades?symbol=BTCUSDT&fromId={from}&limit=3"
        ))
        .await;
    assert_eq!(old.status, 200, "{}", old.body);
    assert_eq!(old.body[0]["id"].as_u64(), Some(from));
    assert_eq!(old.body.as_array().unwrap().len(), 3);

    // 24hr ticker: firstId..lastId is count trades.
    let day = rest.get("/api/v3/ticker/24hr?symbol=BTCUSDT").await;
    let (first, last, count) = (
        day.body["firstId"].as_i64().unwrap(),
        day.body["lastId"].as_i64().unwrap(),
        day.body["count"].as_i64().unwrap(),
    );
    assert!(first >= 1 && count > 0);
    assert_eq!(last - first + 1, count, "{}", day.body);

    let window = rest.get("/api/v3/ticker?symbol=BTCUSDT&windowSize=2h").await;
    assert_eq!(window.status, 200, "{}", window.body);
    assert_eq!(window.body["openTime"].as_i64().unwrap() % 60_000, 0);
    assert!(window.body["count"].as_i64().unwrap() <= count);
    assert!(window.used_weight().is_some());
    let many = rest
        .get("/api/v3/ticker?symbols=%5B%22BTCUSDT%22,%22ETHUSDT%22%5D&type=MINI")
        .await;
    assert_eq!(many.body.as_array().unwrap().len(), 2);
    assert!(many.body[0].get("priceChange").is_none());
    let bad = rest.get("/api/v3/ticker?symbol=BTCUSDT&windowSize=8d").await;
    assert_eq!(bad.status, 400);
    let none = rest.get("/api/v3/ticker").await;
    assert_eq!(none.code(), -1102);

    let trading_day = rest.get("/api/v3/ticker/tradingDay?symbol=BTCUSDT&timeZone=8").await;
    assert_eq!(trading_day.status, 200, "{}", trading_day.body);
    let open = trading_day.body["openTime"].as_i64().unwrap();
    assert_eq!((open + 8 * 3_600_000) % 86_400_000, 0, "UTC+8 midnight");

    let rules = rest.get("/api/v3/executionRules?symbol=BTCUSDT").await;
    assert_eq!(rules.body["symbolRules"][0]["symbol"], "BTCUSDT");
    let reference = rest.get("/api/v3/referencePrice?symbol=BTCUSDT").await;
    assert_eq!((reference.status, reference.code()), (400, -2043));

    let commission = rest
        .signed(Method::GET, "/api/v3/account/commission", "symbol=BTCUSDT")
        .await;
    assert_eq!(commission.status, 200, "{}", commission.body);
    assert_eq!(commission.body["standardCommission"]["taker"], "0.00100000");
    sim.shutdown().await;
}

#[tokio::test]
async fn json_errors_microseconds_and_exchange_info_shape() {
    let sim = start(still_market()).await;
    let rest = Rest::new(&sim);
    let missing = rest.get("/api/v3/nope").await;
    assert_eq!((missing.status, missing.code()), (404, -1020));
    let wrong_method = rest.send(Method::PUT, "/api/v3/time", None, None).await;
    assert_eq!((wrong_method.status, wrong_method.code()), (405, -1020));

    let micros = rest
        .http
        .get(format!("{}/api/v3/time", rest.base))
        .header("X-MBX-TIME-UNIT", "microsecond")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let t = micros["serverTime"].as_i64().unwrap();
    assert!((t / 1000 - now_ms()).abs() < 5_000, "{t} in µs");
    let klines = rest
        .http
        .get(format!(
            "{}/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1",
            rest.base
        ))
        .header("X-MBX-TIME-UNIT", "MICROSECOND")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(klines[0][0].as_i64().unwrap() % 60_000_000, 0, "open time in µs");

    let info = rest.get("/api/v3/exchangeInfo?symbol=BTCUSDT").await;
    let kinds: Vec<&str> = info.body["rateLimits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["rateLimitType"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"RAW_REQUESTS") && kinds.contains(&"REQUEST_WEIGHT"));
    assert!(!kinds.contains(&"CONNECTIONS"), "{kinds:?}");
    let symbol = &info.body["symbols"][0];
    for field in [
        "permissionSets",
        "ocoAllowed",
        "otoAllowed",
        "opoAllowed",
        "cancelReplaceAllowed",
        "amendAllowed",
        "pegInstructionsAllowed",
        "allowTrailingStop",
        "icebergAllowed",
        "baseCommissionPrecision",
        "quoteCommissionPrecision",
        "defaultSelfTradePreventionMode",
        "allowedSelfTradePreventionModes",
    ] {
        assert!(symbol.get(field).is_some(), "{field} missing: {symbol}");
    }
    assert!(symbol["orderTypes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "STOP_LOSS_LIMIT"));
    let _ = PAPER_API_KEY;
    sim.shutdown().await;
}
