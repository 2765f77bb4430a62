//! The limits each transport announces (REST: REQUEST_WEIGHT, ORDERS, RAW_REQUESTS; the
//! WebSocket API: REQUEST_WEIGHT, ORDERS, CONNECTIONS, as Binance's documents show them), and
//! the connection limit enforced on WebSocket connects as announced: over it a connect is
//! refused (429, -1034) while requests go on; another connect before Retry-After is a ban.

use crate::sim_support::*;
use runner::ledger::limits::{IntervalUnit, PoolKind, RateLimit};
use runner::sim::SimConfig;
use serde_json::{json, Value};

fn announced(limits: &Value) -> Vec<(String, String, u64, u64)> {
    let mut rows: Vec<(String, String, u64, u64)> = limits
        .as_array()
        .expect("rateLimits")
        .iter()
        .map(|l| {
            (
                l["rateLimitType"].as_str().unwrap_or_default().to_string(),
                l["interval"].as_str().unwrap_or_default().to_string(),
                l["intervalNum"].as_u64().unwrap_or_default(),
                l["limit"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn row(kind: &str, interval: &str, num: u64, limit: u64) -> (String, String, u64, u64) {
    (kind.to_string(), interval.to_string(), num, limit)
}

#[tokio::test]
async fn rest_and_the_websocket_api_announce_their_documented_limits() {
    let sim = start(still_market()).await;
    let rest = Rest::new(&sim).get("/api/v3/exchangeInfo?symbol=BTCUSDT").await;
    let mut documented = vec![
        row("ORDERS", "DAY", 1, 200_000),
        row("ORDERS", "SECOND", 10, 100),
        row("RAW_REQUESTS", "MINUTE", 5, 300_000),
        row("REQUEST_WEIGHT", "MINUTE", 1, 6000),
    ];
    documented.sort();
    assert_eq!(announced(&rest.body["rateLimits"]), documented);

    let mut ws = ws_connect(&sim.ws_api_url()).await;
    send_json(
        &mut ws,
        json!({"id": 1, "method": "exchangeInfo", "params": {"symbol": "BTCUSDT"}}),
    )
    .await;
    let info = next_matching(&mut ws, |v| v["id"] == 1).await;
    let mut documented = vec![
        row("CONNECTIONS", "MINUTE", 5, 300),
        row("ORDERS", "DAY", 1, 200_000),
        row("ORDERS", "SECOND", 10, 100),
        row("REQUEST_WEIGHT", "MINUTE", 1, 6000),
    ];
    documented.sort();
    assert_eq!(announced(&info["result"]["rateLimits"]), documented);
    sim.shutdown().await;
}

/// A handshake's refusal: status, body code and Retry-After.
async fn refused(url: &str) -> (u16, Option<i64>, Option<String>) {
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body: Option<Value> = resp.body().as_ref().and_then(|b| serde_json::from_slice(b).ok());
            let retry = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            (resp.status().as_u16(), body.and_then(|b| b["code"].as_i64()), retry)
        }
        other => panic!("expected a refused handshake, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn over_the_connection_limit_connects_are_refused_but_requests_go_on() {
    let config = SimConfig {
        limits: vec![
            RateLimit::new(PoolKind::RequestWeight, IntervalUnit::Minute, 1, 6000),
            RateLimit::new(PoolKind::Connections, IntervalUnit::Minute, 5, 2),
        ],
        ..still_market()
    };
    let sim = start(config).await;
    // A limit other than Binance's is announced on REST too, where clients read their limits.
    let rest = Rest::new(&sim);
    let info = rest.get("/api/v3/exchangeInfo?symbol=BTCUSDT").await;
    assert!(announced(&info.body["rateLimits"]).contains(&row("CONNECTIONS", "MINUTE", 5, 2)));

    let stream = format!("{}/ws/btcusdt@trade", sim.ws_url());
    let _market = ws_connect(&stream).await;
    let mut api = ws_connect(&sim.ws_api_url()).await;
    let (status, code, retry) = refused(&sim.ws_api_url()).await;
    assert_eq!((status, code), (429, Some(-1034)));
    let retry: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!((1..=300).contains(&retry), "until the 5-minute window ends: {retry}");

    // The full connection pool refuses connections only: REST and the open WebSocket API
    // connection are answered.
    assert_eq!(rest.get("/api/v3/time").await.status, 200);
    send_json(&mut api, json!({"id": "t", "method": "time"})).await;
    assert_eq!(next_matching(&mut api, |v| v["id"] == "t").await["status"], 200);

    // Connecting again before Retry-After is not backing off: the IP is banned.
    assert_eq!(refused(&stream).await.0, 418);
    assert_eq!(rest.get("/api/v3/time").await.status, 418);
    let stats = sim.stats();
    assert_eq!((stats.count_429, stats.ws_connections), (1, 2), "{stats:?}");
    sim.shutdown().await;
}
