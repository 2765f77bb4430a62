//! The WebSocket API client: one connection, opened on its first request (charged by the
//! gateway) and again after it closes. A request is one frame written on the caller's own thread:
//! no HTTP request building, no connection pool, no hand-off to another task before the bytes
//! leave. A reader task routes each answer to its request by id, and pushed events (the user-data
//! stream) to whoever asked for them.
//!
//! Orders use one client per strategy thread (`--order-transport ws-api`, see
//! [`super::per_thread`]); the user-data stream uses one of its own. What a caller learns is what
//! REST would tell it: nothing written means not sent (the connection could not be opened, or the
//! ledger refused it); written but unanswered (timeout, connection lost) means the outcome is
//! unknown, and an order is looked up like an unanswered REST order.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::ledger::{Ledger, Scope, Verdict};

use super::gateway::WsStream;
use super::sign::Signing;
use crate::exchange::binance::errors::SendError;
use crate::exchange::binance::limits::usage;
use crate::exchange::binance::wire::WsApiResponse;

/// How orders reach the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrderTransport {
    /// `POST /api/v3/order` and friends (the default).
    #[default]
    Rest,
    /// The WebSocket API on a connection per strategy thread.
    WsApi,
}

impl OrderTransport {
    /// `rest` or `ws-api`.
    pub fn parse(text: &str) -> Result<OrderTransport, String> {
        match text {
            "rest" => Ok(OrderTransport::Rest),
            "ws-api" => Ok(OrderTransport::WsApi),
            other => Err(format!("order transport must be \"rest\" or \"ws-api\", got {other:?}")),
        }
    }
}

/// The request frame `{"id":..,"method":..,"params":{..}}`, written directly: strings stay strings,
/// and a signed request gets `apiKey`, `recvWindow`, `timestamp` and the signature of them all.
pub fn request_frame(id: u64, method: &str, params: &[(&str, &str)], signing: Option<&Signing>) -> String {
    let mut out = Vec::with_capacity(320);
    let _ = write!(out, r#"{{"id":{id},"method":"#);
    json_string(&mut out, method);
    out.extend_from_slice(br#","params":{"#);
    for (i, (name, value)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_string(&mut out, name);
        out.push(b':');
        json_string(&mut out, value);
    }
    if let Some(s) = signing {
        let signature = s.ws_api_signature(params);
        if !params.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(br#""apiKey":"#);
        json_string(&mut out, s.api_key);
        let _ = write!(
            out,
            r#","recvWindow":{},"timestamp":{},"signature":"{signature}""#,
            s.recv_window_ms, s.timestamp_ms
        );
    }
    out.extend_from_slice(b"}}");
    // Only UTF-8 went in: the parts are `str`s and serde_json's escapes.
    String::from_utf8(out).unwrap_or_default()
}

fn json_string(out: &mut Vec<u8>, text: &str) {
    // Writing a `str` to a `Vec` cannot fail.
    let _ = serde_json::to_writer(out, text);
}

/// What a connection pushes besides answers, to a client that asked for it.
#[derive(Debug)]
pub enum Pushed {
    /// A frame carrying `event` (the user-data stream).
    Event(serde_json::Value),
    /// The server announced it is about to close the connection.
    ServerShutdown,
    /// The connection ended: closed, or failed (why).
    Ended(Result<(), String>),
}

/// A WebSocket API connection (reopened as needed).
#[derive(Default)]
pub struct WsApiClient {
    /// The open connection's write half; `None` before the first request and after a failed write.
    writer: tokio::sync::Mutex<Option<Writer>>,
    next_id: AtomicU64,
    /// Where pushed events go; without it they are skipped.
    events: Option<mpsc::UnboundedSender<Pushed>>,
}

struct Writer {
    sink: SplitSink<WsStream, Message>,
    conn: Arc<Conn>,
}

/// What the write half and the reader task of one connection share.
#[derive(Default)]
struct Conn {
    /// Requests written and not yet answered. Closed (under the same lock) when the reader ends,
    /// so a request is either registered on a live connection or refused, never left waiting.
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    closed: bool,
    /// Each waiter gets its answer, or why its answer could not be read.
    waiting: HashMap<u64, oneshot::Sender<Result<WsApiResponse, String>>>,
}

impl WsApiClient {
    /// A client whose connections hand what they push (events, shutdown notices, their end) to `events`.
    pub fn with_events(events: mpsc::UnboundedSender<Pushed>) -> WsApiClient {
        WsApiClient {
            events: Some(events),
            ..WsApiClient::default()
        }
    }

    /// Closes the open connection, if any (the reader then ends when the server's close arrives).
    pub async fn close(&self) {
        if let Some(mut writer) = self.writer.lock().await.take() {
            if let Err(e) = writer.sink.close().await {
                tracing::debug!(error = %e, "closing the WebSocket API connection failed");
            }
        }
    }

    /// Writes the request `frame(id)`, calls `written` once it is on the socket, and waits up to
    /// `timeout` for its answer. `connect` opens a connection (charged by the caller) when there is none;
    /// a 429/418 nobody waits for any more stops `scope` (the address the connection leaves from).
    pub async fn exchange<C, F>(
        &self,
        connect: C,
        ledger: &Ledger,
        scope: Scope,
        frame: impl FnOnce(u64) -> String,
        written: impl FnOnce(),
        timeout: Duration,
    ) -> Result<WsApiResponse, SendError>
    where
        C: FnOnce() -> F,
        F: std::future::Future<Output = Result<WsStream, SendError>>,
    {
        let mut writer = self.writer.lock().await;
        let live = writer.as_ref().is_some_and(|w| !w.conn.pending.lock().closed);
        if !live {
            *writer = None;
            let (sink, stream) = connect().await?.split();
            let conn = Arc::new(Conn::default());
            tokio::spawn(read_answers(
                stream,
                Arc::clone(&conn),
                ledger.clone(),
                scope,
                self.events.clone(),
            ));
            *writer = Some(Writer { sink, conn });
        }
        let Some(conn) = writer.as_ref().map(|w| Arc::clone(&w.conn)) else {
            return Err(SendError::Transport("no WebSocket API connection".into()));
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let text = frame(id);
        let (answer_tx, answer) = oneshot::channel();
        {
            let mut pending = conn.pending.lock();
            if pending.closed {
                // Nothing was written: the connection ended between the check above and now.
                *writer = None;
                return Err(SendError::Connect {
                    host: "the WebSocket API".into(),
                    reason: "the connection closed before the request was written".into(),
                });
            }
            pending.waiting.insert(id, answer_tx);
        }
        let waiting = Waiting { conn, id };
        let sent = match writer.as_mut() {
            Some(open) => open.sink.send(Message::text(text)).await,
            None => Err(tungstenite::Error::AlreadyClosed),
        };
        if let Err(error) = sent {
            // Part of the frame may have left: the outcome is unknown, and the connection is done.
            *writer = None;
            return Err(SendError::Transport(format!("WebSocket API write failed: {error}")));
        }
        written();
        // Others may write while this request waits for its answer.
        drop(writer);
        let answered = tokio::time::timeout(timeout, answer).await;
        drop(waiting);
        match answered {
            Ok(Ok(Ok(response))) => Ok(response),
            // An answer arrived: the request reached the exchange, and may have acted.
            Ok(Ok(Err(reason))) => Err(SendError::Transport(format!(
                "the WebSocket API answer could not be read ({reason})"
            ))),
            Ok(Err(_)) => Err(SendError::Transport(
                "the WebSocket API connection closed before the answer".into(),
            )),
            Err(_) => Err(SendError::Timeout(timeout.as_millis() as u64)),
        }
    }
}

/// Forgets a request that is no longer waited for (answered, timed out, or its caller gone).
struct Waiting {
    conn: Arc<Conn>,
    id: u64,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.conn.pending.lock().waiting.remove(&self.id);
    }
}

/// Ends the connection's requests when the reader ends, however it ends (closed, failed, or dropped
/// with its runtime).
struct Closing(Arc<Conn>);

impl Drop for Closing {
    fn drop(&mut self) {
        let mut pending = self.0.pending.lock();
        pending.closed = true;
        // Dropping the senders tells every waiter the connection is gone.
        pending.waiting.clear();
    }
}

/// Routes answers to their requests, and pushed frames to `events`, until the connection ends.
/// Pings are answered by the WebSocket layer as frames are read.
async fn read_answers(
    mut stream: SplitStream<WsStream>,
    conn: Arc<Conn>,
    ledger: Ledger,
    scope: Scope,
    events: Option<mpsc::UnboundedSender<Pushed>>,
) {
    let closing = Closing(conn);
    let push = |pushed: Pushed| {
        if let Some(events) = &events {
            // A receiver that is gone no longer cares.
            let _ = events.send(pushed);
        }
    };
    let ended = loop {
        let text = match stream.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None => break Ok(()),
            Some(Err(e)) => break Err(e.to_string()),
            Some(Ok(_)) => continue,
        };
        let value: serde_json::Value = match serde_json::from_str(text.as_str()) {
            Ok(value) => value,
            Err(e) => {
                tracing::warn!("skipping unreadable WebSocket API frame: {e}");
                continue;
            }
        };
        if crate::exchange::binance::account::user_data::is_server_shutdown(&value) {
            // The server is about to go: new requests go on a new connection (this one is
            // marked closed when the reader ends); requests in flight keep their answers.
            tracing::info!("the WebSocket API announced a shutdown; the connection is replaced");
            closing.0.pending.lock().closed = true;
            push(Pushed::ServerShutdown);
            continue;
        }
        if events.is_some() && value.get("event").is_some() {
            push(Pushed::Event(value));
            continue;
        }
        let id = value.get("id").and_then(serde_json::Value::as_u64);
        let response = serde_json::from_value::<WsApiResponse>(value).map_err(|e| e.to_string());
        if let Err(reason) = &response {
            tracing::warn!(?id, reason, "unreadable WebSocket API answer");
        }
        let waiter = id.and_then(|id| closing.0.pending.lock().waiting.remove(&id));
        let response = match (waiter, response) {
            (Some(waiter), response) => {
                let _ = waiter.send(response);
                continue;
            }
            (None, Ok(response)) => response,
            (None, Err(_)) => continue,
        };
        // Nobody waits (timed out): its usage is lost, but a 429 or a ban must still stop everyone.
        let (_, verdict) = usage::ws_api_observation(&response, ledger.now_ms());
        if verdict != Verdict::Ok {
            ledger.enter_backoff(scope, &verdict);
        }
    };
    // Waiters are told before the end is pushed: a request is never left waiting on a closed connection.
    drop(closing);
    push(Pushed::Ended(ended));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::binance::transport::sign::{self, doc_example as doc, Signer};

    #[test]
    fn a_signed_frame_carries_the_documented_signature() {
        let params = doc::PARAMS;
        let signer = Signer::Hmac(doc::SECRET.into());
        let signing = Signing {
            api_key: doc::API_KEY,
            signer: &signer,
            recv_window_ms: doc::RECV_WINDOW,
            timestamp_ms: doc::TIMESTAMP,
        };
        let frame = request_frame(7, "order.place", &params, Some(&signing));
        let request: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(request["id"], 7);
        assert_eq!(request["method"], "order.place");
        assert_eq!(request["params"]["quantity"], "0.01000000");
        assert_eq!(request["params"]["recvWindow"], 100);
        assert_eq!(request["params"]["timestamp"], 1645423376532u64);
        assert_eq!(request["params"]["signature"], doc::SIGNATURE);
        // And it is the signature of the parameters as the exchange reads them back.
        let read_back: serde_json::Map<String, serde_json::Value> =
            serde_json::from_value(request["params"].clone()).unwrap();
        assert_eq!(
            sign::ws_api_signature(signing.signer, &read_back),
            request["params"]["signature"]
        );
    }

    #[test]
    fn values_are_escaped_and_unsigned_frames_carry_only_their_parameters() {
        let frame = request_frame(1, "ping", &[("note", "a\"b\\c")], None);
        let request: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(request["params"], serde_json::json!({ "note": "a\"b\\c" }));
        let empty: serde_json::Value = serde_json::from_str(&request_frame(2, "time", &[], None)).unwrap();
        assert_eq!(empty, serde_json::json!({ "id": 2, "method": "time", "params": {} }));
    }

    #[test]
    fn transports_parse_by_their_flag_names() {
        assert_eq!(OrderTransport::parse("rest"), Ok(OrderTransport::Rest));
        assert_eq!(OrderTransport::parse("ws-api"), Ok(OrderTransport::WsApi));
        assert!(OrderTransport::parse("websocket").unwrap_err().contains("ws-api"));
    }
}
