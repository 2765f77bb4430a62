//! Market streams: `/ws/<stream>`, `/ws` and `/stream?streams=a/b`, with SUBSCRIBE /
//! UNSUBSCRIBE / LIST_SUBSCRIPTIONS, server pings, the 5 incoming messages per second limit
//! (over → disconnected) and 1024 streams per connection.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::ws::{Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::candles::interval_ms;
use super::error::ApiErr;
use super::feed;
use super::hub::{Subscriber, CONNECTION_QUEUE};
use super::run_state::Sim;
use super::symbol_state::TICKER_WINDOWS;
use super::ws_conn::{self, Attempt, Session};

pub const MAX_STREAMS: usize = 1024;
const MAX_INCOMING_PER_SECOND: u32 = 5;

/// `/ws/<stream>[/<stream>…]`. A path that names no stream opens an empty connection that
/// subscribes later (clients such as CCXT connect to `/ws/<their own id>` and then SUBSCRIBE);
/// any stream names in the path must all be valid.
pub async fn raw_path(
    State(sim): State<Arc<Sim>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(streams): Path<String>,
    ws: WebSocketUpgrade,
) -> Response {
    let names: Vec<&str> = streams.split('/').filter(|s| !s.is_empty()).collect();
    let looks_like_streams = names.iter().any(|n| n.contains('@'));
    let names = if looks_like_streams { names } else { Vec::new() };
    open(sim, peer.ip(), ws, &names, false, "/ws")
}

pub async fn raw_empty(
    State(sim): State<Arc<Sim>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    open(sim, peer.ip(), ws, &[], false, "/ws")
}

pub async fn combined(
    State(sim): State<Arc<Sim>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let streams = query.get("streams").cloned().unwrap_or_default();
    let names: Vec<&str> = streams.split('/').filter(|s| !s.is_empty()).collect();
    open(sim, peer.ip(), ws, &names, true, "/stream")
}

/// Counts the connection attempt, checks the stream names, then upgrades.
fn open(sim: Arc<Sim>, ip: IpAddr, ws: WebSocketUpgrade, names: &[&str], combined: bool, path: &str) -> Response {
    let attempt = Attempt {
        transport: "WS",
        method: "GET",
        path,
        weight: 0,
        forced_429: None,
        ip,
    };
    ws_conn::upgrade(
        sim,
        ws,
        attempt,
        |sim| canonical_names(sim, names),
        move |sim, socket, streams| serve(sim, socket, streams, combined),
    )
}

/// Checks each name and returns the canonical names events are published under.
fn canonical_names(sim: &Sim, names: &[&str]) -> Result<Vec<String>, ApiErr> {
    if names.len() > MAX_STREAMS {
        return Err(ApiErr::bad(
            -1100,
            format!("Too many streams; at most {MAX_STREAMS} per connection."),
        ));
    }
    names
        .iter()
        .map(|n| canonical(sim, n).ok_or_else(|| ApiErr::bad(-1100, format!("Invalid stream name: {n}"))))
        .collect()
}

/// `btcusdt@depth@1000ms` → `btcusdt@depth`; unknown symbols or kinds → `None`.
pub fn canonical(sim: &Sim, name: &str) -> Option<String> {
    if sim.faults.refuses_stream(name) {
        return None;
    }
    if name == feed::ALL_MINI_TICKERS || TICKER_WINDOWS.iter().any(|(w, _)| name == feed::all_window_tickers(w)) {
        return Some(name.to_string());
    }
    let (symbol, kind) = name.split_once('@')?;
    let known = sim
        .config
        .symbols
        .iter()
        .any(|s| s.symbol.to_ascii_lowercase() == symbol);
    if !known {
        return None;
    }
    let kind = kind.strip_suffix("@1000ms").unwrap_or(kind);
    let ok = match kind {
        "trade" | "aggTrade" | "bookTicker" | "depth" | "depth@100ms" | "miniTicker" | "ticker" | "avgPrice" => true,
        _ if kind.starts_with("ticker_") => TICKER_WINDOWS.iter().any(|(w, _)| *w == &kind[7..]),
        _ if kind.starts_with("kline_") => interval_ms(&kind[6..]).is_some(),
        _ => {
            let levels = kind
                .strip_prefix("depth")
                .map(|r| r.strip_suffix("@100ms").unwrap_or(r));
            matches!(levels, Some("5" | "10" | "20"))
        }
    };
    ok.then(|| format!("{symbol}@{kind}"))
}

struct Conn {
    id: u64,
    combined: bool,
    tx: mpsc::Sender<Utf8Bytes>,
    overflow: Arc<Notify>,
    streams: BTreeSet<String>,
    /// Start of the current one-second window of incoming frames, and their count in it.
    window: Instant,
    incoming: u32,
}

impl Conn {
    fn subscribe(&mut self, sim: &Sim, name: String) {
        sim.hub.subscribe(
            &name,
            Subscriber {
                conn: self.id,
                combined: self.combined,
                tx: self.tx.clone(),
                overflow: self.overflow.clone(),
            },
        );
        self.streams.insert(name);
    }

    /// Switches between raw and combined (`{"stream":..,"data":..}`) payloads for every stream.
    fn set_combined(&mut self, sim: &Sim, combined: bool) {
        self.combined = combined;
        for name in self.streams.clone() {
            sim.hub.unsubscribe(&name, self.id);
            self.subscribe(sim, name);
        }
    }

    fn unsubscribe(&mut self, sim: &Sim, name: &str) {
        sim.hub.unsubscribe(name, self.id);
        self.streams.remove(name);
    }
}

async fn serve(sim: Arc<Sim>, socket: WebSocket, initial: Vec<String>, combined: bool) {
    let (tx, rx) = mpsc::channel(CONNECTION_QUEUE);
    let mut conn = Conn {
        id: sim.next_id(),
        combined,
        tx,
        overflow: Arc::new(Notify::new()),
        streams: BTreeSet::new(),
        window: Instant::now(),
        incoming: 0,
    };
    for name in initial {
        conn.subscribe(&sim, name);
    }
    let overflow = conn.overflow.clone();
    ws_conn::run(&sim, socket, rx, overflow, &mut conn).await;
}

impl Session for Conn {
    /// Every incoming frame (pings and pongs too) counts against 5 per second.
    fn allow_frame(&mut self) -> bool {
        if self.window.elapsed().as_secs_f64() >= 1.0 {
            self.window = Instant::now();
            self.incoming = 0;
        }
        self.incoming += 1;
        self.incoming <= MAX_INCOMING_PER_SECOND
    }

    async fn answer(&mut self, sim: &Sim, text: &str) -> (Option<String>, bool) {
        (request(sim, self, text).map(|reply| reply.to_string()), false)
    }

    fn close(&mut self, sim: &Sim) {
        for name in std::mem::take(&mut self.streams) {
            sim.hub.unsubscribe(&name, self.id);
        }
    }
}

/// Answers one SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS request.
fn request(sim: &Sim, conn: &mut Conn, text: &str) -> Option<Value> {
    let req: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return Some(json!({"error": {"code": 3, "msg": format!("Invalid JSON: {e}")}, "id": null})),
    };
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let fail = |msg: &str| Some(json!({"error": {"code": 2, "msg": format!("Invalid request: {msg}")}, "id": id}));
    if !(id.is_u64() || id.is_string() || id.is_null()) {
        return fail("request ID must be an unsigned integer");
    }
    let Some(method) = req.get("method").and_then(Value::as_str) else {
        return fail("missing field `method`");
    };
    let property_request = matches!(method, "SET_PROPERTY" | "GET_PROPERTY");
    let params: Vec<String> = match req.get("params") {
        _ if property_request => Vec::new(),
        None => Vec::new(),
        Some(Value::Array(items)) => {
            let names: Option<Vec<String>> = items.iter().map(|v| v.as_str().map(str::to_string)).collect();
            match names {
                Some(n) => n,
                None => return fail("params must be strings"),
            }
        }
        Some(_) => return fail("params must be an array"),
    };
    match method {
        "SUBSCRIBE" => {
            let mut canonical_names = Vec::with_capacity(params.len());
            for name in &params {
                match canonical(sim, name) {
                    Some(c) => canonical_names.push(c),
                    None => return fail(&format!("invalid stream name {name}")),
                }
            }
            let added = canonical_names.iter().filter(|n| !conn.streams.contains(*n)).count();
            if conn.streams.len() + added > MAX_STREAMS {
                return fail("too many streams");
            }
            for name in canonical_names {
                conn.subscribe(sim, name);
            }
            Some(json!({"result": null, "id": id}))
        }
        "UNSUBSCRIBE" => {
            for name in &params {
                let name = canonical(sim, name).unwrap_or_else(|| name.clone());
                conn.unsubscribe(sim, &name);
            }
            Some(json!({"result": null, "id": id}))
        }
        "LIST_SUBSCRIPTIONS" => Some(json!({"result": conn.streams.iter().collect::<Vec<_>>(), "id": id})),
        "SET_PROPERTY" => {
            let property = req["params"].get(0);
            match (property.and_then(Value::as_str), req["params"].get(1)) {
                (None, _) => fail("property name must be a string"),
                (Some("combined"), Some(Value::Bool(on))) => {
                    conn.set_combined(sim, *on);
                    Some(json!({"result": null, "id": id}))
                }
                (Some("combined"), _) => {
                    Some(json!({"error": {"code": 1, "msg": "Invalid value type: expected Boolean"}, "id": id}))
                }
                (Some(_), _) => Some(json!({"error": {"code": 0, "msg": "Unknown property"}, "id": id})),
            }
        }
        "GET_PROPERTY" => match req["params"].get(0).and_then(Value::as_str) {
            None => fail("property name must be a string"),
            Some("combined") => Some(json!({"result": conn.combined, "id": id})),
            Some(_) => Some(json!({"error": {"code": 0, "msg": "Unknown property"}, "id": id})),
        },
        other => fail(&format!("unknown variant `{other}`")),
    }
}
