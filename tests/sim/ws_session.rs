//! The simulator's WebSocket API and market streams as Binance documents them: session logon
//! (Ed25519 keys only), `returnRateLimits`, the `v3/` method prefix, subscription errors; stream
//! connections to `/ws/<id>`, the ticker and average-price streams, properties and the close echo.

use std::sync::Arc;

use crate::sim_support::*;
use ed25519_dalek::SigningKey;
use futures_util::{SinkExt, StreamExt};
use runner::exchange::binance::transport::sign::{ws_api_signature, Signer};
use runner::sim::{Ed25519ApiKey, SimConfig, PAPER_API_KEY, PAPER_API_SECRET};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const ED_KEY: &str = "ed25519-session-key";

fn ed_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn with_ed25519_key() -> SimConfig {
    SimConfig {
        ed25519_keys: vec![Ed25519ApiKey {
            api_key: ED_KEY.into(),
            public_key: ed_key().verifying_key(),
            account: 0,
        }],
        ..still_market()
    }
}

fn signed(signer: &Signer, key: &str, params: &[(&str, Value)]) -> Value {
    let mut map: serde_json::Map<String, Value> = params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    map.insert("apiKey".into(), json!(key));
    map.insert("timestamp".into(), json!(now_ms()));
    let signature = ws_api_signature(signer, &map);
    map.insert("signature".into(), json!(signature));
    Value::Object(map)
}

async fn call(ws: &mut Ws, id: &str, method: &str, params: Value) -> Value {
    send_json(ws, json!({"id": id, "method": method, "params": params})).await;
    next_matching(ws, |v| v["id"] == id).await
}

#[tokio::test]
async fn session_logon_takes_ed25519_keys_only_and_signs_later_requests() {
    let sim = start(with_ed25519_key()).await;
    let mut ws = ws_connect(&sim.ws_api_url()).await;
    let ed = Signer::Ed25519(Arc::new(ed_key()));
    let hmac = Signer::Hmac(PAPER_API_SECRET.into());

    let status = call(&mut ws, "s0", "session.status", json!({})).await;
    assert_eq!(status["result"]["apiKey"], Value::Null);
    assert_eq!(status["result"]["userDataStream"], false);
    // Unauthenticated, a signed method without apiKey is refused.
    let refused = call(&mut ws, "a0", "account.status", json!({"timestamp": now_ms()})).await;
    assert_eq!(refused["error"]["code"], -2014);

    let by_hmac = call(&mut ws, "l0", "session.logon", signed(&hmac, PAPER_API_KEY, &[])).await;
    assert_eq!(
        (by_hmac["status"].as_u64(), by_hmac["error"]["code"].as_i64()),
        (Some(400), Some(-4056))
    );
    let bad_sig = call(&mut ws, "l1", "session.logon", signed(&hmac, ED_KEY, &[])).await;
    assert_eq!(bad_sig["error"]["code"], -1022);
    let logon = call(&mut ws, "l2", "session.logon", signed(&ed, ED_KEY, &[])).await;
    assert_eq!(logon["status"], 200, "{logon}");
    assert_eq!(logon["result"]["apiKey"], ED_KEY);
    assert!(logon["result"]["authorizedSince"].as_i64().unwrap() > 0);

    // Logged on: a signed request needs only its timestamp; the v3/ prefix is accepted.
    let account = call(&mut ws, "a1", "v3/account.status", json!({"timestamp": now_ms()})).await;
    assert_eq!(account["status"], 200, "{account}");
    assert!(account["result"]["balances"].is_array());
    let sub = call(&mut ws, "u1", "userDataStream.subscribe", json!({})).await;
    let sub_id = sub["result"]["subscriptionId"].as_u64().expect("subscription id");
    let again = call(&mut ws, "u2", "userDataStream.subscribe", json!({})).await;
    assert_eq!(again["error"]["code"], -2035);
    let status = call(&mut ws, "s1", "session.status", json!({})).await;
    assert_eq!(
        (
            status["result"]["apiKey"].as_str(),
            status["result"]["userDataStream"].as_bool()
        ),
        (Some(ED_KEY), Some(true))
    );
    let unknown = call(
        &mut ws,
        "u3",
        "userDataStream.unsubscribe",
        json!({"subscriptionId": sub_id + 1000}),
    )
    .await;
    assert_eq!(
        (unknown["error"]["code"].as_i64(), unknown["error"]["msg"].as_str()),
        (Some(-2036), Some("User Data Stream subscription not active."))
    );

    // Logout forgets the key and closes the logon's subscription.
    let logout = call(&mut ws, "o1", "session.logout", json!({})).await;
    assert_eq!(
        (
            logout["result"]["apiKey"].clone(),
            logout["result"]["userDataStream"].as_bool()
        ),
        (Value::Null, Some(false))
    );
    let after = call(&mut ws, "a2", "account.status", json!({"timestamp": now_ms()})).await;
    assert_eq!(after["error"]["code"], -2014);
    sim.shutdown().await;
}

#[tokio::test]
async fn return_rate_limits_by_request_and_by_url() {
    let sim = start(still_market()).await;
    let mut ws = ws_connect(&sim.ws_api_url()).await;
    let shown = call(&mut ws, "1", "time", json!({})).await;
    assert!(shown["rateLimits"].is_array());
    let hidden = call(&mut ws, "2", "time", json!({"returnRateLimits": false})).await;
    assert_eq!(hidden["status"], 200);
    assert!(hidden.get("rateLimits").is_none(), "{hidden}");
    let bad = call(&mut ws, "3", "time", json!({"returnRateLimits": "maybe"})).await;
    assert_eq!(bad["error"]["code"], -1100);

    let mut quiet = ws_connect(&format!("{}?returnRateLimits=false", sim.ws_api_url())).await;
    let hidden = call(&mut quiet, "4", "ping", json!({})).await;
    assert!(hidden.get("rateLimits").is_none(), "{hidden}");
    let asked = call(&mut quiet, "5", "ping", json!({"returnRateLimits": true})).await;
    assert!(asked["rateLimits"].is_array());

    // exchangeInfo over the WebSocket API announces CONNECTIONS, not RAW_REQUESTS.
    let info = call(&mut ws, "6", "exchangeInfo", json!({"symbol": "BTCUSDT"})).await;
    let kinds: Vec<&str> = info["result"]["rateLimits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["rateLimitType"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"CONNECTIONS") && kinds.contains(&"ORDERS"), "{kinds:?}");
    assert!(!kinds.contains(&"RAW_REQUESTS"), "{kinds:?}");
    // timeUnit=MICROSECOND on the URL.
    let mut micro = ws_connect(&format!("{}?timeUnit=MICROSECOND", sim.ws_api_url())).await;
    let t = call(&mut micro, "7", "time", json!({})).await;
    let server = t["result"]["serverTime"].as_i64().unwrap();
    assert!((server / 1000 - now_ms()).abs() < 5_000, "{server} is in µs");
    sim.shutdown().await;
}

#[tokio::test]
async fn streams_accept_any_ws_path_and_serve_tickers_and_properties() {
    let sim = start(SimConfig::default()).await;
    // CCXT connects to /ws/<its own id>, then subscribes.
    let mut ws = ws_connect(&format!("{}/ws/3fa85f64", sim.ws_url())).await;
    send_json(
        &mut ws,
        json!({"method": "SUBSCRIBE", "params": ["btcusdt@miniTicker", "btcusdt@ticker", "btcusdt@avgPrice"], "id": 1}),
    )
    .await;
    assert_eq!(next_matching(&mut ws, |v| v["id"] == 1).await["result"], Value::Null);
    let mini = next_matching(&mut ws, |v| v["e"] == "24hrMiniTicker").await;
    assert_eq!(mini["s"], "BTCUSDT");
    let full = next_matching(&mut ws, |v| v["e"] == "24hrTicker").await;
    let (first, last, count) = (
        full["F"].as_i64().unwrap(),
        full["L"].as_i64().unwrap(),
        full["n"].as_i64().unwrap(),
    );
    assert_eq!(last - first + 1, count, "{full}");
    let avg = next_matching(&mut ws, |v| v["e"] == "avgPrice").await;
    assert_eq!(avg["i"], "5m");

    // SET_PROPERTY combined switches the payload shape; unknown properties are errors.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    send_json(
        &mut ws,
        json!({"method": "SET_PROPERTY", "params": ["combined", true], "id": 2}),
    )
    .await;
    assert_eq!(next_matching(&mut ws, |v| v["id"] == 2).await["result"], Value::Null);
    let wrapped = next_matching(&mut ws, |v| v.get("stream").is_some()).await;
    assert!(wrapped["data"].is_object());
    send_json(
        &mut ws,
        json!({"method": "GET_PROPERTY", "params": ["combined"], "id": 3}),
    )
    .await;
    assert_eq!(next_matching(&mut ws, |v| v["id"] == 3).await["result"], true);
    send_json(
        &mut ws,
        json!({"method": "GET_PROPERTY", "params": ["colour"], "id": 4}),
    )
    .await;
    assert_eq!(
        next_matching(&mut ws, |v| v["id"] == 4).await["error"],
        json!({"code": 0, "msg": "Unknown property"})
    );
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    send_json(
        &mut ws,
        json!({"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 5}),
    )
    .await;
    assert_eq!(next_matching(&mut ws, |v| v["id"] == 5).await["error"]["code"], 1);

    // The client's close frame is echoed.
    ws.send(Message::Close(None)).await.expect("close sent");
    let echoed = tokio::time::timeout(DEADLINE, async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Close(_)) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
        false
    })
    .await
    .expect("closed in time");
    assert!(echoed, "a close frame answers the client's");

    // Rolling-window and all-market arrays.
    let url = format!(
        "{}/stream?streams=ethusdt@ticker_1h/!miniTicker@arr/!ticker_4h@arr",
        sim.ws_url()
    );
    let mut ws = ws_connect(&url).await;
    let window = next_matching(&mut ws, |v| v["stream"] == "ethusdt@ticker_1h").await;
    assert_eq!(window["data"]["e"], "1hTicker");
    assert_eq!(window["data"]["O"].as_i64().unwrap() % 60_000, 0, "opens on a minute");
    let all = next_matching(&mut ws, |v| v["stream"] == "!miniTicker@arr").await;
    assert!(!all["data"].as_array().unwrap().is_empty());
    let all4h = next_matching(&mut ws, |v| v["stream"] == "!ticker_4h@arr").await;
    assert_eq!(all4h["data"][0]["e"], "4hTicker");
    sim.shutdown().await;
}
