//! Market-stream connections and subscriptions: streams reference-counted across
//! strategies, packed onto combined connections of at most 1024 streams, changes
//! sent as SUBSCRIBE/UNSUBSCRIBE paced well under 5 messages/s per connection,
//! reconnects with jittered exponential backoff (each attempt charged to the
//! ledger), and rotation before the exchange's 24 h connection lifetime.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::exchange::stage_timing::{self, Stage};
use crate::exchange::types::StrategyId;
use crate::exchange::{StreamKey, StreamKind};

use super::stream_router::Router;
use crate::exchange::binance::errors::SendError;
use crate::exchange::binance::transport::gateway::{Gateway, WsStream};
use crate::exchange::binance::wire::StreamRequest;

/// The exchange's cap on streams per connection.
pub const MAX_STREAMS_PER_CONNECTION: usize = 1024;
/// Spacing of our control messages: 3.3/s, leaving room under the 5/s limit for pongs.
const CONTROL_SPACING: Duration = Duration::from_millis(300);
/// Reconnect well before the exchange's 24 h cut-off.
const ROTATE_AFTER: Duration = Duration::from_secs(23 * 3600);
/// How long a connection attempt may wait for connection budget.
/// Streams named in the connection URL (the rest are subscribed by message): keeps the URL short.
const URL_STREAMS: usize = 200;
const CONNECT_WAIT: Duration = Duration::from_secs(60);
const RECONNECT_BASE: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// Frames already read that are handed on as one batch, at most: enough to wake a strategy once per
/// burst, few enough that the batch's first event waits only microseconds for the last.
const DRAIN_AT_MOST: usize = 32;

/// The exchange's name for a stream.
pub fn stream_name(key: &StreamKey) -> String {
    let symbol = key.symbol.to_ascii_lowercase();
    match &key.kind {
        StreamKind::Book => format!("{symbol}@bookTicker"),
        StreamKind::Depth => format!("{symbol}@depth@100ms"),
        StreamKind::Trade => format!("{symbol}@trade"),
        StreamKind::Kline(interval) => format!("{symbol}@kline_{interval}"),
    }
}

/// Jittered exponential backoff for reconnect number `failures` (1-based).
fn reconnect_delay(failures: u32) -> Duration {
    let exp = RECONNECT_BASE.saturating_mul(1 << failures.saturating_sub(1).min(10));
    exp.min(RECONNECT_MAX).mul_f64(rand::rng().random_range(0.5..1.5))
}

struct Connection {
    streams: BTreeSet<String>,
    desired: watch::Sender<BTreeSet<String>>,
}

#[derive(Default)]
struct Subscriptions {
    by_strategy: HashMap<StrategyId, BTreeSet<StreamKey>>,
    refcount: HashMap<StreamKey, usize>,
    connections: Vec<Connection>,
}

pub struct MarketStreams {
    gateway: Arc<Gateway>,
    router: Arc<Router>,
    per_connection: usize,
    state: Mutex<Subscriptions>,
}

impl MarketStreams {
    pub fn new(gateway: Arc<Gateway>, router: Arc<Router>, per_connection: usize) -> Self {
        MarketStreams {
            gateway,
            router,
            per_connection: per_connection.clamp(1, MAX_STREAMS_PER_CONNECTION),
            state: Mutex::new(Subscriptions::default()),
        }
    }

    /// Replaces `strategy`'s streams and (un)subscribes the difference across all strategies.
    pub fn set(&self, strategy: &StrategyId, streams: Vec<StreamKey>) {
        let wanted: BTreeSet<StreamKey> = streams.into_iter().collect();
        let mut state = self.state.lock();
        let previous = state.by_strategy.remove(strategy).unwrap_or_default();
        let mut touched = BTreeSet::new();
        for key in wanted.difference(&previous) {
            let count = state.refcount.entry(key.clone()).or_insert(0);
            *count += 1;
            if *count == 1 {
                match &key.kind {
                    StreamKind::Depth => self.router.track_book(&key.symbol),
                    StreamKind::Kline(interval) => self.router.track_klines(&key.symbol, interval),
                    _ => {}
                }
                touched.insert(self.assign(&mut state, stream_name(key)));
            }
        }
        for key in previous.difference(&wanted) {
            let Some(count) = state.refcount.get_mut(key) else {
                continue;
            };
            *count -= 1;
            if *count == 0 {
                state.refcount.remove(key);
                match &key.kind {
                    StreamKind::Depth => self.router.untrack_book(&key.symbol),
                    StreamKind::Kline(interval) => self.router.untrack_klines(&key.symbol, interval),
                    _ => {}
                }
                let name = stream_name(key);
                if let Some(index) = state.connections.iter().position(|c| c.streams.contains(&name)) {
                    state.connections[index].streams.remove(&name);
                    touched.insert(index);
                }
            }
        }
        if !wanted.is_empty() {
            state.by_strategy.insert(Arc::clone(strategy), wanted);
        }
        for index in touched {
            let connection = &state.connections[index];
            connection.desired.send_replace(connection.streams.clone());
        }
    }

    /// Puts `name` on a connection with room (opening one if needed); returns its index.
    fn assign(&self, state: &mut Subscriptions, name: String) -> usize {
        if let Some(index) = state
            .connections
            .iter()
            .position(|c| c.streams.len() < self.per_connection)
        {
            state.connections[index].streams.insert(name);
            return index;
        }
        let (desired, rx) = watch::channel(BTreeSet::new());
        let task = ConnectionTask {
            gateway: Arc::clone(&self.gateway),
            router: Arc::clone(&self.router),
            desired: rx,
            refused: BTreeSet::new(),
            subscribe_by_message: false,
        };
        self.gateway.spawn(task.run());
        state.connections.push(Connection {
            streams: BTreeSet::from([name]),
            desired,
        });
        state.connections.len() - 1
    }
}

enum SessionEnd {
    Shutdown,
    /// Time to rotate, or nothing is wanted any more.
    Closed,
    /// The exchange dropped us; `received` says whether any data came first.
    Dropped {
        received: bool,
    },
}

struct ConnectionTask {
    gateway: Arc<Gateway>,
    router: Arc<Router>,
    desired: watch::Receiver<BTreeSet<String>>,
    /// Streams the exchange refused: left out of this connection, so that one bad stream (one
    /// strategy's) never takes the others' streams down with it.
    refused: BTreeSet<String>,
    /// A connection URL was refused: streams are subscribed by message, where a refusal is
    /// narrowed down to the stream at fault.
    subscribe_by_message: bool,
}

/// A reply to a SUBSCRIBE / UNSUBSCRIBE (`{"result":null,"id":n}` or `{"error":{..},"id":n}`):
/// its id, and whether it is a refusal. Market data frames (`{"stream":..}`) are not replies.
fn control_reply(text: &str) -> Option<(u64, bool)> {
    if text.starts_with("{\"stream\"") {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let id = value.get("id")?.as_u64()?;
    Some((id, value.get("error").is_some_and(|e| !e.is_null())))
}

impl ConnectionTask {
    async fn run(mut self) {
        let shutdown = self.gateway.shutdown().clone();
        let mut failures = 0u32;
        loop {
            let mut wanted = self.desired.borrow_and_update().clone();
            wanted.retain(|name| !self.refused.contains(name));
            if wanted.is_empty() {
                tokio::select! {
                    changed = self.desired.changed() => if changed.is_err() { return },
                    _ = shutdown.wait() => return,
                }
                continue;
            }
            let url_streams = if self.subscribe_by_message { 0 } else { URL_STREAMS };
            let initial: BTreeSet<String> = wanted.iter().take(url_streams).cloned().collect();
            let names: Vec<String> = initial.iter().cloned().collect();
            let delay = match self.gateway.connect_market(&names, CONNECT_WAIT).await {
                Ok(ws) => {
                    self.router.on_connected(&wanted);
                    let end = self.session(ws, initial).await;
                    // Until the next connection is in sync, what this one fed is not current.
                    self.router
                        .on_disconnected(&wanted.union(&self.desired.borrow()).cloned().collect());
                    match end {
                        SessionEnd::Shutdown => return,
                        SessionEnd::Closed => {
                            failures = 0;
                            continue;
                        }
                        SessionEnd::Dropped { received } => {
                            failures = if received { 1 } else { failures + 1 };
                            tracing::info!(failures, "market stream connection dropped; reconnecting");
                            reconnect_delay(failures)
                        }
                    }
                }
                Err(SendError::Stopped) => return,
                Err(error) => {
                    failures += 1;
                    // The exchange may have refused one of the streams in the URL: next time, ask
                    // for each by message, where a refusal names the request (and so the stream).
                    if matches!(error, SendError::Connect { .. }) {
                        self.subscribe_by_message = true;
                    }
                    tracing::warn!(failures, "market stream connection failed: {error}");
                    let wait = match &error {
                        SendError::Ledger(api) | SendError::Unavailable(api) => {
                            api.retry_after_ms.map(Duration::from_millis)
                        }
                        _ => None,
                    };
                    wait.unwrap_or_default().max(reconnect_delay(failures))
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.wait() => return,
            }
        }
    }

    /// The exchange refused a SUBSCRIBE for `batch`: a single stream is left out for good; the
    /// streams of a larger batch are asked for one by one to find the one at fault.
    fn on_refused(
        &mut self,
        batch: Vec<String>,
        active: &mut BTreeSet<String>,
        wanted: &mut BTreeSet<String>,
        one_by_one: &mut BTreeSet<String>,
    ) {
        for name in &batch {
            active.remove(name);
        }
        if let [name] = batch.as_slice() {
            tracing::warn!(stream = %name, "the exchange refused this stream; the strategies that asked for it get no events from it, the others are not affected");
            self.refused.insert(name.clone());
            wanted.remove(name);
        } else {
            one_by_one.extend(batch);
        }
    }

    /// Reads one connection until it ends, sending paced subscription changes.
    async fn session(&mut self, ws: WsStream, mut active: BTreeSet<String>) -> SessionEnd {
        let shutdown = self.gateway.shutdown().clone();
        let (mut write, mut read) = ws.split();
        let rotate_at = Instant::now() + ROTATE_AFTER;
        let mut next_control = Instant::now();
        let mut request_id = 0u64;
        let mut received = false;
        let mut wanted = self.desired.borrow_and_update().clone();
        wanted.retain(|name| !self.refused.contains(name));
        // SUBSCRIBEs in flight, by request id; and streams of a refused batch, now asked for one by one.
        let mut subscribing: HashMap<u64, Vec<String>> = HashMap::new();
        let mut one_by_one: BTreeSet<String> = BTreeSet::new();
        let mut events = Vec::new();
        let end = loop {
            let pending = wanted != active;
            tokio::select! {
                frame = read.next() => {
                    let mut frame = frame;
                    let mut drained = 0;
                    // One clock reading for the frames read together.
                    let (read_at, read_ms) = (std::time::Instant::now(), self.gateway.now_ms());
                    // The first frame's event goes at once; frames already read behind it are handed on
                    // together (the strategies are woken once for them), up to `DRAIN_AT_MOST`.
                    let ended = loop {
                        match frame {
                            Some(Ok(Message::Text(text))) => {
                                received = true;
                                if crate::exchange::binance::account::user_data::is_server_shutdown_text(text.as_str()) {
                                    tracing::info!("a market stream server announced a shutdown; reconnecting now");
                                    break Some(SessionEnd::Closed);
                                }
                                let reply = control_reply(text.as_str());
                                let refused = reply.and_then(|(id, refused)| subscribing.remove(&id).filter(|_| refused));
                                if let Some(batch) = refused {
                                    self.on_refused(batch, &mut active, &mut wanted, &mut one_by_one);
                                }
                                self.router.on_frame_into(text.as_str(), read_at, read_ms, &mut events);
                                stage_timing::reached(Stage::Parsed, read_at);
                            }
                            // Pings are answered by the WebSocket layer on the next read.
                            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Binary(_) | Message::Frame(_))) => {}
                            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break Some(SessionEnd::Dropped { received }),
                        }
                        if drained == 0 || drained == DRAIN_AT_MOST {
                            self.router.deliver(&mut events);
                            stage_timing::reached(Stage::Routed, read_at);
                        }
                        if drained == DRAIN_AT_MOST {
                            break None;
                        }
                        drained += 1;
                        match read.next().now_or_never() {
                            Some(next) => frame = next,
                            None => break None,
                        }
                    };
                    self.router.deliver(&mut events);
                    match ended {
                        Some(SessionEnd::Dropped { received }) => return SessionEnd::Dropped { received },
                        Some(end) => break end,
                        None => {}
                    }
                },
                changed = self.desired.changed() => {
                    if changed.is_err() {
                        break SessionEnd::Shutdown;
                    }
                    wanted = self.desired.borrow_and_update().clone();
                    wanted.retain(|name| !self.refused.contains(name));
                    if wanted.is_empty() {
                        break SessionEnd::Closed;
                    }
                }
                _ = tokio::time::sleep_until(next_control), if pending => {
                    // One message per tick: unsubscribes first, then subscribes.
                    let removed: Vec<String> = active.difference(&wanted).cloned().collect();
                    let (method, params) = if removed.is_empty() {
                        let added: Vec<String> = wanted.difference(&active).cloned().collect();
                        // After a refused batch, its streams go one per request until the culprit is found.
                        let params = match added.iter().find(|name| one_by_one.contains(*name)) {
                            Some(single) => vec![single.clone()],
                            None => added,
                        };
                        ("SUBSCRIBE", params)
                    } else {
                        ("UNSUBSCRIBE", removed)
                    };
                    request_id += 1;
                    let request = StreamRequest { method: method.into(), params: params.clone(), id: request_id.into() };
                    let Ok(text) = serde_json::to_string(&request) else { continue };
                    if write.send(Message::text(text)).await.is_err() {
                        return SessionEnd::Dropped { received };
                    }
                    next_control = Instant::now() + CONTROL_SPACING;
                    if method == "SUBSCRIBE" {
                        subscribing.insert(request_id, params.clone());
                    }
                    for name in params {
                        if method == "SUBSCRIBE" {
                            active.insert(name);
                        } else {
                            active.remove(&name);
                        }
                    }
                }
                _ = tokio::time::sleep_until(rotate_at) => break SessionEnd::Closed,
                _ = shutdown.wait() => break SessionEnd::Shutdown,
            }
        };
        // The session is over either way; a failed close only means the peer went first.
        if let Err(e) = write.close().await {
            tracing::debug!("market stream close: {e}");
        }
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_follow_the_exchange() {
        let key = |kind| StreamKey {
            symbol: "BTCUSDT".into(),
            kind,
        };
        assert_eq!(stream_name(&key(StreamKind::Book)), "btcusdt@bookTicker");
        assert_eq!(stream_name(&key(StreamKind::Depth)), "btcusdt@depth@100ms");
        assert_eq!(stream_name(&key(StreamKind::Trade)), "btcusdt@trade");
        assert_eq!(stream_name(&key(StreamKind::Kline("1m".into()))), "btcusdt@kline_1m");
    }

    #[test]
    fn reconnect_delays_back_off_with_jitter() {
        for _ in 0..20 {
            let first = reconnect_delay(1);
            assert!(first >= RECONNECT_BASE / 2 && first <= RECONNECT_BASE * 3 / 2);
            assert!(reconnect_delay(50) <= RECONNECT_MAX * 3 / 2);
            assert!(reconnect_delay(4) >= RECONNECT_BASE * 4);
        }
    }
}
