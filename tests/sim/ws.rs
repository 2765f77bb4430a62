//! The simulator's WebSocket side over real sockets on loopback: market streams and their
//! limits, building a local book by the documented procedure, and the WebSocket API with
//! user-data events.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::sim_support::*;
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use runner::sim::SimConfig;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn dec(v: &Value) -> Decimal {
    v.as_str().expect("decimal string").parse().expect("decimal")
}

#[tokio::test]
async fn combined_streams_and_subscription_requests() {
    let sim = start(SimConfig::default()).await;
    let url = format!("{}/stream?streams=btcusdt@bookTicker/ethusdt@trade", sim.ws_url());
    let mut ws = ws_connect(&url).await;
    let frame = next_matching(&mut ws, |v| v["stream"] == "btcusdt@bookTicker").await;
    let data = &frame["data"];
    assert_eq!(data["s"], "BTCUSDT");
    assert!(dec(&data["b"]) < dec(&data["a"]));
    let trade = next_matching(&mut ws, |v| v["stream"] == "ethusdt@trade").await;
    assert_eq!(
        (trade["data"]["e"].as_str(), trade["data"]["s"].as_str()),
        (Some("trade"), Some("ETHUSDT"))
    );

    send_json(
        &mut ws,
        json!({"method": "SUBSCRIBE", "params": ["bnbusdt@depth5@100ms", "btcusdt@kline_1m"], "id": 1}),
    )
    .await;
    assert_eq!(
        next_matching(&mut ws, |v| v.get("id").is_some()).await,
        json!({"result": null, "id": 1})
    );
    let partial = next_matching(&mut ws, |v| v["stream"] == "bnbusdt@depth5@100ms").await;
    assert_eq!(partial["data"]["bids"].as_array().unwrap().len(), 5);
    let kline = next_matching(&mut ws, |v| v["stream"] == "btcusdt@kline_1m").await;
    assert_eq!(
        (kline["data"]["e"].as_str(), kline["data"]["k"]["i"].as_str()),
        (Some("kline"), Some("1m"))
    );
    // Stay under 5 messages per second from here on.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    send_json(
        &mut ws,
        json!({"method": "UNSUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": 2}),
    )
    .await;
    assert_eq!(next_matching(&mut ws, |v| v.get("id").is_some()).await["id"], 2);
    send_json(&mut ws, json!({"method": "LIST_SUBSCRIPTIONS", "id": 3})).await;
    let list = next_matching(&mut ws, |v| v.get("id").is_some()).await;
    let mut names: Vec<&str> = list["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["bnbusdt@depth5@100ms", "btcusdt@bookTicker", "ethusdt@trade"]
    );
    ws.send(Message::Text("{not json".into())).await.unwrap();
    let err = next_matching(&mut ws, |v| v.get("error").is_some()).await;
    assert_eq!(err["error"]["code"], 3);
    send_json(
        &mut ws,
        json!({"method": "SUBSCRIBE", "params": ["nope@trade"], "id": 4}),
    )
    .await;
    assert_eq!(
        next_matching(&mut ws, |v| v.get("error").is_some()).await["error"]["code"],
        2
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn more_than_five_messages_a_second_disconnects() {
    let sim = start(still_market()).await;
    let mut ws = ws_connect(&format!("{}/ws", sim.ws_url())).await;
    for id in 0..8 {
        if ws
            .send(Message::Text(
                json!({"method": "LIST_SUBSCRIPTIONS", "id": id}).to_string().into(),
            ))
            .await
            .is_err()
        {
            break;
        }
    }
    let mut replies = 0;
    while next_json(&mut ws).await.is_some() {
        replies += 1;
    }
    assert_eq!(replies, 5, "five answered, then the connection was closed");
    assert_eq!(sim.stats().ws_message_limit_closes, 1, "the close is on record");
    sim.shutdown().await;
}

#[tokio::test]
async fn server_pings_and_dropped_sockets() {
    let config = SimConfig {
        ws_ping_interval: Duration::from_millis(50),
        ..still_market()
    };
    let sim = start(config).await;
    let mut ws = ws_connect(&format!("{}/ws/btcusdt@trade", sim.ws_url())).await;
    let ping = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Some(Ok(Message::Ping(p))) = ws.next().await {
                return p;
            }
        }
    })
    .await
    .expect("a ping arrives");
    assert!(!ping.is_empty());
    sim.faults().drop_websockets();
    assert!(next_json(&mut ws).await.is_none(), "socket closed by the fault knob");
    let log = sim.request_log();
    assert!(log
        .iter()
        .any(|r| r.transport == "WS" && r.path == "/ws" && r.status == 101));
    sim.shutdown().await;
}

/// A local book kept by the documented procedure.
#[derive(Default)]
struct LocalBook {
    last: u64,
    bids: BTreeMap<Decimal, Decimal>,
    asks: BTreeMap<Decimal, Decimal>,
}

impl LocalBook {
    fn apply_levels(side: &mut BTreeMap<Decimal, Decimal>, levels: &Value) {
        for level in levels.as_array().unwrap() {
            let (p, q) = (dec(&level[0]), dec(&level[1]));
            if q.is_zero() {
                side.remove(&p);
            } else {
                side.insert(p, q);
            }
        }
    }

    /// Applies one diff; `false` on a sequence gap.
    fn apply(&mut self, event: &Value) -> bool {
        let (first, last) = (event["U"].as_u64().unwrap(), event["u"].as_u64().unwrap());
        if last <= self.last {
            return true;
        }
        if first > self.last + 1 {
            return false;
        }
        Self::apply_levels(&mut self.bids, &event["b"]);
        Self::apply_levels(&mut self.asks, &event["a"]);
        self.last = last;
        true
    }
}

#[tokio::test]
async fn a_client_following_the_documented_procedure_ends_with_the_sims_book() {
    let sim = start(still_market()).await;
    let rest = Rest::new(&sim);
    let mut ws = ws_connect(&format!("{}/ws/btcusdt@depth@100ms", sim.ws_url())).await;
    // 1. Buffer diffs (the market steps until the subscription is live).
    let mut buffered = Vec::new();
    while buffered.is_empty() {
        sim.step_market();
        if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::from_millis(50), ws.next()).await {
            buffered.push(serde_json::from_str::<Value>(&t).unwrap());
        }
    }
    // 2. Snapshot; it must not be older than the first buffered event.
    let snap = rest.get("/api/v3/depth?symbol=BTCUSDT&limit=5000").await.body;
    let mut book = LocalBook {
        last: snap["lastUpdateId"].as_u64().unwrap(),
        ..LocalBook::default()
    };
    assert!(book.last >= buffered[0]["U"].as_u64().unwrap() - 1);
    LocalBook::apply_levels(&mut book.bids, &snap["bids"]);
    LocalBook::apply_levels(&mut book.asks, &snap["asks"]);

    // More changes, including a user's order, which shows in the depth stream.
    let bid = sim.book("BTCUSDT", 1).unwrap().bids[0][0] - Decimal::from(3);
    let placed = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            &format!("symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.002&price={bid}"),
        )
        .await;
    assert_eq!(placed.status, 200);
    for _ in 0..5 {
        sim.step_market();
    }
    let target = sim.book("BTCUSDT", 5000).unwrap();
    // 3. Drop what the snapshot covers; the first kept event straddles it; then no gaps.
    let mut first_kept = true;
    for event in &buffered {
        assert!(book.apply(event));
    }
    while book.last < target.last_update_id {
        let event = next_json(&mut ws).await.unwrap();
        let (first, last) = (event["U"].as_u64().unwrap(), event["u"].as_u64().unwrap());
        if last > book.last && first_kept {
            assert!((first..=last).contains(&(book.last + 1)));
            first_kept = false;
        }
        assert!(book.apply(&event), "no gap in the sequence");
    }
    let to_map = |levels: &[[Decimal; 2]]| levels.iter().map(|[p, q]| (*p, *q)).collect::<BTreeMap<_, _>>();
    assert_eq!(book.bids, to_map(&target.bids));
    assert_eq!(book.asks, to_map(&target.asks));
    assert!(book.bids.contains_key(&bid));

    // A gap injected by the fault knob is visible to the client.
    sim.faults().skip_depth(7);
    sim.step_market();
    let gapped = next_json(&mut ws).await.unwrap();
    assert!(!book.apply(&gapped), "the client sees the gap");
    assert_eq!(gapped["U"].as_u64().unwrap(), book.last + 1 + 7);
    sim.shutdown().await;
}

#[tokio::test]
async fn websocket_api_pushes_user_data_and_reports_limits() {
    let sim = start(still_market()).await;
    let rest = Rest::new(&sim);
    let mut ws = ws_connect(&sim.ws_api_url()).await;
    send_json(&mut ws, json!({"id": "p", "method": "ping"})).await;
    let pong = next_json(&mut ws).await.unwrap();
    assert_eq!((pong["id"].as_str(), pong["status"].as_u64()), (Some("p"), Some(200)));
    let weight = pong["rateLimits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["rateLimitType"] == "REQUEST_WEIGHT")
        .unwrap();
    assert_eq!(weight["count"], 3, "connection (2) + ping (1)");

    send_json(
        &mut ws,
        json!({"id": 1, "method": "userDataStream.subscribe.signature", "params": ws_signed_map(&[])}),
    )
    .await;
    let sub = next_json(&mut ws).await.unwrap();
    assert_eq!(sub["status"], 200, "{sub}");
    let sub_id = sub["result"]["subscriptionId"].as_u64().unwrap();

    // An order placed over REST is pushed as execution reports and a balance update.
    let placed = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            "symbol=ETHUSDT&side=BUY&type=MARKET&quantity=0.1&newClientOrderId=ud-1",
        )
        .await;
    assert_eq!(placed.body["status"], "FILLED");
    let mut seen = Vec::new();
    while !seen.contains(&"FILLED".to_string()) {
        let frame = next_json(&mut ws).await.unwrap();
        assert_eq!(frame["subscriptionId"].as_u64(), Some(sub_id));
        let parsed: runner::exchange::binance::wire::UserDataFrame = serde_json::from_value(frame.clone()).unwrap();
        if let runner::exchange::binance::wire::UserDataEvent::ExecutionReport(r) = parsed.event {
            assert_eq!(r.c, "ud-1");
            seen.push(r.status);
        }
    }
    assert_eq!(seen.first().map(String::as_str), Some("NEW"));
    let position = next_json(&mut ws).await.unwrap();
    assert_eq!(position["event"]["e"], "outboundAccountPosition");
    let assets: Vec<&str> = position["event"]["B"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["a"].as_str().unwrap())
        .collect();
    assert!(assets.contains(&"ETH") && assets.contains(&"USDT"));

    // order.place over the WebSocket API answers with the order counts.
    let bid = sim.book("ETHUSDT", 1).unwrap().bids[0][0] - Decimal::from(100);
    let params = ws_signed_map(&[
        ("symbol", json!("ETHUSDT")),
        ("side", json!("BUY")),
        ("type", json!("LIMIT")),
        ("timeInForce", json!("GTC")),
        ("quantity", json!("0.5")),
        ("price", json!(bid.to_string())),
        ("newClientOrderId", json!("ws-1")),
    ]);
    send_json(&mut ws, json!({"id": 2, "method": "order.place", "params": params})).await;
    let answer = next_matching(&mut ws, |v| v["id"] == 2).await;
    assert_eq!(
        (answer["status"].as_u64(), answer["result"]["status"].as_str()),
        (Some(200), Some("NEW")),
        "{answer}"
    );
    assert!(answer["rateLimits"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["rateLimitType"] == "ORDERS" && l["count"] == 1));
    assert_eq!(sim.orders_by_client_id("ws-1").len(), 1);

    let mut bad = ws_signed_map(&[]);
    bad.insert("signature".into(), json!("00"));
    send_json(
        &mut ws,
        json!({"id": 3, "method": "userDataStream.subscribe.signature", "params": bad}),
    )
    .await;
    let refused = next_matching(&mut ws, |v| v["id"] == 3).await;
    assert_eq!(refused["error"]["code"], -1022);
    send_json(&mut ws, json!({"id": 4, "method": "no.such"})).await;
    assert_eq!(next_matching(&mut ws, |v| v["id"] == 4).await["status"], 400);
    ws.send(Message::Text("nope".into())).await.unwrap();
    assert_eq!(
        next_matching(&mut ws, |v| v.get("error").is_some() && v["id"].is_null()).await["error"]["code"],
        -1135
    );

    // 429 carries retryAfter as epoch ms; the next request is a ban and closes the socket.
    sim.faults().force_429(5);
    send_json(&mut ws, json!({"id": 5, "method": "time"})).await;
    let limited = next_matching(&mut ws, |v| v["id"] == 5).await;
    assert_eq!(
        (limited["status"].as_u64(), limited["error"]["code"].as_i64()),
        (Some(429), Some(-1003))
    );
    let retry_after = limited["error"]["data"]["retryAfter"].as_i64().unwrap();
    assert!(
        (retry_after - (now_ms() + 5_000)).abs() < 1_500,
        "epoch ms, not seconds"
    );
    send_json(&mut ws, json!({"id": 6, "method": "time"})).await;
    let banned = next_matching(&mut ws, |v| v["id"] == 6).await;
    assert_eq!(banned["status"], 418);
    assert!(next_json(&mut ws).await.is_none(), "a ban closes the socket");
    let log = sim.request_log();
    assert!(log
        .iter()
        .any(|r| r.transport == "WS_API" && r.method == "CONNECT" && r.weight == 2));
    sim.shutdown().await;
}

#[tokio::test]
async fn connection_attempts_are_limited_per_window() {
    use runner::ledger::limits::{IntervalUnit, PoolKind, RateLimit};
    let config = SimConfig {
        limits: vec![RateLimit::new(PoolKind::Connections, IntervalUnit::Minute, 1, 2)],
        ..still_market()
    };
    let sim = start(config).await;
    let url = format!("{}/ws/btcusdt@trade", sim.ws_url());
    let _first = ws_connect(&url).await;
    let _second = ws_connect(&sim.ws_api_url()).await;
    let third = tokio_tungstenite::connect_async(&url).await;
    match third {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 429),
        other => panic!("expected a 429 handshake, got {:?}", other.map(|_| ())),
    }
    assert_eq!(sim.stats().count_429, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_ban_for_an_order_sent_during_the_order_wait_closes_the_websocket_api_socket() {
    use runner::ledger::limits::{IntervalUnit, PoolKind, RateLimit};
    let config = SimConfig {
        limits: vec![
            RateLimit::new(PoolKind::RequestWeight, IntervalUnit::Minute, 1, 6000),
            RateLimit::new(PoolKind::Orders, IntervalUnit::Day, 1, 1),
        ],
        ..still_market()
    };
    let sim = start(config).await;
    let mut ws = ws_connect(&sim.ws_api_url()).await;
    let bid = sim.book("ETHUSDT", 1).unwrap().bids[0][0] - Decimal::from(100);
    let place = |id: u64| {
        let params = ws_signed_map(&[
            ("symbol", json!("ETHUSDT")),
            ("side", json!("BUY")),
            ("type", json!("LIMIT")),
            ("timeInForce", json!("GTC")),
            ("quantity", json!("0.1")),
            ("price", json!(bid.to_string())),
        ]);
        json!({"id": id, "method": "order.place", "params": params})
    };
    for (id, status, code) in [(1, 200, None), (2, 429, Some(-1015)), (3, 418, Some(-1003))] {
        send_json(&mut ws, place(id)).await;
        let answer = next_matching(&mut ws, |v| v["id"] == id).await;
        assert_eq!(
            (answer["status"].as_u64(), answer["error"]["code"].as_i64()),
            (Some(status), code),
            "{answer}"
        );
    }
    assert!(next_json(&mut ws).await.is_none(), "a ban closes the socket");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_cancel_report_carries_the_cancel_id_in_c_and_the_order_id_in_big_c() {
    let sim = start(still_market()).await;
    let rest = Rest::new(&sim);
    let mut ws = ws_connect(&sim.ws_api_url()).await;
    send_json(
        &mut ws,
        json!({"id": 1, "method": "userDataStream.subscribe.signature", "params": ws_signed_map(&[])}),
    )
    .await;
    assert_eq!(next_matching(&mut ws, |v| v["id"] == 1).await["status"], 200);
    let bid = sim.book("ETHUSDT", 1).unwrap().bids[0][0] - Decimal::from(100);
    let placed = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            &format!(
                "symbol=ETHUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.1&price={bid}&newClientOrderId=keep-1"
            ),
        )
        .await;
    assert_eq!(placed.body["status"], "NEW", "{}", placed.body);
    let canceled = rest
        .signed(
            Method::DELETE,
            "/api/v3/order",
            "symbol=ETHUSDT&origClientOrderId=keep-1&newClientOrderId=cancel-1",
        )
        .await;
    assert_eq!(
        (
            canceled.body["clientOrderId"].as_str(),
            canceled.body["origClientOrderId"].as_str()
        ),
        (Some("cancel-1"), Some("keep-1"))
    );
    let report = next_matching(&mut ws, |v| {
        v["event"]["e"] == "executionReport" && v["event"]["X"] == "CANCELED"
    })
    .await;
    assert_eq!(
        (report["event"]["c"].as_str(), report["event"]["C"].as_str()),
        (Some("cancel-1"), Some("keep-1")),
        "{report}"
    );
    sim.shutdown().await;
}

/// A longer interval's candle is printed closed (`x: true`) when its last minute closes, as on the
/// exchange; strategies on 5m or 1h candles see them close in paper mode too.
#[tokio::test]
async fn a_three_minute_kline_closes_on_its_stream() {
    let sim = start(still_market()).await;
    let mut ws = ws_connect(&format!("{}/ws/btcusdt@kline_3m", sim.ws_url())).await;
    // Four minutes pass at once: at least one 3m boundary is crossed.
    sim.faults().set_clock_skew_ms(4 * 60_000);
    sim.step_market();
    let closed = tokio::time::timeout(DEADLINE, async {
        loop {
            let frame = next_json(&mut ws).await.expect("the stream stays open");
            if frame["k"]["x"] == json!(true) {
                return frame;
            }
        }
    })
    .await
    .expect("a closed 3m candle arrives");
    let k = &closed["k"];
    assert_eq!(k["i"], "3m");
    let (open, close) = (k["t"].as_i64().unwrap(), k["T"].as_i64().unwrap());
    assert_eq!(open % (3 * 60_000), 0, "aligned to the interval: {k}");
    assert_eq!(close - open, 3 * 60_000 - 1, "{k}");
    sim.shutdown().await;
}
