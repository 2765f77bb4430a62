//! Helpers shared by the simulator's integration tests: a started simulator, signed
//! requests over real HTTP, WebSocket connections, and polling with a deadline.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use runner::exchange::binance::transport::sign::{ws_api_signature, Signer};
use runner::sim::{self, hmac_hex, SimConfig, SimHandle, PAPER_API_KEY, PAPER_API_SECRET};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub const DEADLINE: Duration = Duration::from_secs(10);

pub async fn start(config: SimConfig) -> SimHandle {
    sim::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts")
}

/// A simulator whose market only moves when the test steps it.
pub fn still_market() -> SimConfig {
    SimConfig {
        market_tick: Duration::ZERO,
        ..SimConfig::default()
    }
}

pub struct Rest {
    pub base: String,
    pub http: reqwest::Client,
}

/// Status, headers and JSON body of one answer.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }

    /// The request weight used this minute, as the `x-mbx-used-weight-1m` header reports it.
    pub fn used_weight(&self) -> Option<u64> {
        self.header("x-mbx-used-weight-1m").and_then(|w| w.parse().ok())
    }

    pub fn code(&self) -> i64 {
        self.body["code"].as_i64().unwrap_or(0)
    }

    pub fn msg(&self) -> &str {
        self.body["msg"].as_str().unwrap_or("")
    }
}

impl Rest {
    pub fn new(handle: &SimHandle) -> Self {
        Rest {
            base: handle.rest_url(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        key: Option<&str>,
        body: Option<String>,
    ) -> Answer {
        let mut req = self.http.request(method, format!("{}{}", self.base, path_and_query));
        if let Some(k) = key {
            req = req.header("X-MBX-APIKEY", k);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/x-www-form-urlencoded").body(b);
        }
        let resp = tokio::time::timeout(DEADLINE, req.send())
            .await
            .expect("answer in time")
            .expect("http ok");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        Answer {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }

    pub async fn get(&self, path_and_query: &str) -> Answer {
        self.send(reqwest::Method::GET, path_and_query, None, None).await
    }

    /// A signed request with the paper key: `timestamp` and `signature` appended to the query.
    pub async fn signed(&self, method: reqwest::Method, path: &str, params: &str) -> Answer {
        let query = signed_query(params, now_ms());
        self.send(method, &format!("{path}?{query}"), Some(PAPER_API_KEY), None)
            .await
    }
}

pub use runner::ledger::clock::system_ms as now_ms;

pub fn signed_query(params: &str, timestamp: i64) -> String {
    let payload = if params.is_empty() {
        format!("timestamp={timestamp}")
    } else {
        format!("{params}&timestamp={timestamp}")
    };
    let sig = hmac_hex(PAPER_API_SECRET, &payload);
    format!("{payload}&signature={sig}")
}

/// Polls `check` until it returns `Some`, failing the test after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn ws_connect(url: &str) -> Ws {
    let (ws, _) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("websocket connects");
    ws
}

/// The next text frame as JSON (pings are skipped), or `None` when the socket closed.
pub async fn next_json(ws: &mut Ws) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("frame in time")?;
        match msg.ok()? {
            Message::Text(t) => return Some(serde_json::from_str(&t).expect("frames are JSON")),
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}

/// Next text frame satisfying `pred`.
pub async fn next_matching(ws: &mut Ws, pred: impl Fn(&Value) -> bool) -> Value {
    loop {
        let v = next_json(ws).await.expect("socket stays open");
        if pred(&v) {
            return v;
        }
    }
}

pub async fn send_json(ws: &mut Ws, value: Value) {
    ws.send(Message::Text(value.to_string().into())).await.expect("send");
}

/// WebSocket API parameters signed with the paper account's HMAC key (`apiKey`, `timestamp` and
/// `signature` added).
pub fn ws_signed_map(params: &[(&str, Value)]) -> serde_json::Map<String, Value> {
    let mut map: serde_json::Map<String, Value> = params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    map.insert("apiKey".into(), json!(PAPER_API_KEY));
    map.insert("timestamp".into(), json!(now_ms()));
    let signature = ws_api_signature(&Signer::Hmac(PAPER_API_SECRET.into()), &map);
    map.insert("signature".into(), json!(signature));
    map
}

/// [`ws_signed_map`] as a JSON value.
pub fn ws_signed(params: &[(&str, Value)]) -> Value {
    Value::Object(ws_signed_map(params))
}

/// A WebSocket API connection subscribed to the paper account's user data.
pub async fn ws_api_with_user_data(sim: &SimHandle) -> Ws {
    let mut ws = ws_connect(&sim.ws_api_url()).await;
    send_json(
        &mut ws,
        json!({"id": "sub", "method": "userDataStream.subscribe.signature", "params": ws_signed(&[])}),
    )
    .await;
    next_matching(&mut ws, |v| v["id"] == "sub").await;
    ws
}
