//! The paper exchange's configured commission rates (fills, account answers) and order latency
//! (every order and cancel, over REST and the WebSocket API; nothing else waits).

use std::time::{Duration, Instant};

use crate::sim_support::*;
use runner::sim::{Fees, SimConfig};
use serde_json::{json, Value};

const LATENCY: Duration = Duration::from_millis(150);

fn configured() -> SimConfig {
    SimConfig {
        fees: Fees::parse("maker=0.0002,taker=0.0005").unwrap(),
        order_latency: LATENCY,
        ..still_market()
    }
}

fn number(v: &Value) -> f64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a number: {v}"))
}

#[tokio::test]
async fn fills_pay_the_configured_rates_and_the_account_shows_them() {
    let sim = start(configured()).await;
    let rest = Rest::new(&sim);
    let bought = rest
        .signed(
            reqwest::Method::POST,
            "/api/v3/order",
            "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01",
        )
        .await;
    assert_eq!(bought.status, 200, "{}", bought.body);
    let fills = bought.body["fills"].as_array().unwrap();
    let commission: f64 = fills.iter().map(|f| number(&f["commission"])).sum();
    assert!(
        (commission - 0.01 * 0.0005).abs() < 1e-8 * fills.len() as f64,
        "{}",
        bought.body
    );
    assert!(fills.iter().all(|f| f["commissionAsset"] == "BTC"), "{}", bought.body);

    let account = rest.signed(reqwest::Method::GET, "/api/v3/account", "").await;
    assert_eq!(account.body["makerCommission"], 2, "basis points: {}", account.body);
    assert_eq!(account.body["takerCommission"], 5);
    assert_eq!(account.body["commissionRates"]["maker"], "0.00020000");
    assert_eq!(account.body["commissionRates"]["taker"], "0.00050000");
    let rates = rest
        .signed(reqwest::Method::GET, "/api/v3/account/commission", "symbol=BTCUSDT")
        .await;
    assert_eq!(
        rates.body["standardCommission"]["maker"], "0.00020000",
        "{}",
        rates.body
    );
    assert_eq!(rates.body["standardCommission"]["taker"], "0.00050000");
    sim.shutdown().await;
}

#[tokio::test]
async fn orders_and_cancels_wait_the_latency_both_ways_and_other_requests_do_not() {
    let sim = start(configured()).await;
    let rest = Rest::new(&sim);
    let at = Instant::now();
    let read = rest.get("/api/v3/depth?symbol=BTCUSDT&limit=5").await;
    assert_eq!(read.status, 200);
    assert!(
        at.elapsed() < LATENCY,
        "a market-data read does not wait: {:?}",
        at.elapsed()
    );

    let bid = sim.book("BTCUSDT", 1).unwrap().bids[0][0] - rust_decimal::Decimal::from(1_000);
    let at = Instant::now();
    let placed = rest
        .signed(
            reqwest::Method::POST,
            "/api/v3/order",
            &format!(
                "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price={bid}&newClientOrderId=slow"
            ),
        )
        .await;
    assert_eq!(placed.status, 200, "{}", placed.body);
    assert!(at.elapsed() >= 2 * LATENCY, "REST order: {:?}", at.elapsed());
    // The engine saw it one latency after it arrived.
    let sent = now_ms() - at.elapsed().as_millis() as i64;
    let engine_time = placed.body["transactTime"].as_i64().unwrap();
    assert!(
        engine_time >= sent + LATENCY.as_millis() as i64 - 5,
        "{engine_time} vs sent {sent}"
    );

    let at = Instant::now();
    let cancelled = rest
        .signed(
            reqwest::Method::DELETE,
            "/api/v3/order",
            "symbol=BTCUSDT&origClientOrderId=slow",
        )
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert!(at.elapsed() >= 2 * LATENCY, "REST cancel: {:?}", at.elapsed());

    let mut ws = ws_connect(&sim.ws_api_url()).await;
    let at = Instant::now();
    send_json(&mut ws, json!({"id": "p", "method": "ping"})).await;
    next_matching(&mut ws, |v| v["id"] == "p").await;
    assert!(at.elapsed() < LATENCY, "a ping does not wait: {:?}", at.elapsed());
    let params = ws_signed(&[
        ("symbol", json!("BTCUSDT")),
        ("side", json!("BUY")),
        ("type", json!("LIMIT")),
        ("timeInForce", json!("GTC")),
        ("quantity", json!("0.01")),
        ("price", json!(bid.to_string())),
    ]);
    let at = Instant::now();
    send_json(&mut ws, json!({"id": "o", "method": "order.place", "params": params})).await;
    let answer = next_matching(&mut ws, |v| v["id"] == "o").await;
    assert_eq!(answer["status"], 200, "{answer}");
    assert!(at.elapsed() >= 2 * LATENCY, "WebSocket API order: {:?}", at.elapsed());
    sim.shutdown().await;
}
