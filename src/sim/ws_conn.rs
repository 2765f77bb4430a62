//! What the two WebSocket transports (market streams and the WebSocket API) share: admitting a
//! connection against the connection limit, and the loop that writes queued pushes, answers the
//! client's frames and pings it.

use std::future::Future;
use std::sync::Arc;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use futures_util::SinkExt;
use tokio::sync::{mpsc, Notify};
use tokio::time::{interval_at, Instant, MissedTickBehavior};

use super::error::ApiErr;
use super::limiter::Draw;
use super::record::RequestRecord;
use super::run_state::Sim;

/// Frames written before one flush.
const WRITE_BATCH: usize = 256;

/// A connection attempt as the request log and the limiter see it.
pub struct Attempt<'a> {
    pub transport: &'static str,
    pub method: &'static str,
    pub path: &'a str,
    /// Request weight of opening the connection.
    pub weight: u64,
    pub forced_429: Option<u64>,
    /// The client's address: the exchange counts connection attempts and weight per IP.
    pub ip: std::net::IpAddr,
}

/// Charges and logs a connection attempt; `check` (run once admitted) may still refuse it.
/// A refusal is answered as JSON with its status (and Retry-After); otherwise the socket is
/// upgraded and handed to `serve` with what `check` returned.
pub fn upgrade<T, F, Fut>(
    sim: Arc<Sim>,
    ws: WebSocketUpgrade,
    attempt: Attempt,
    check: impl FnOnce(&Sim) -> Result<T, ApiErr>,
    serve: F,
) -> Response
where
    T: Send + 'static,
    F: FnOnce(Arc<Sim>, WebSocket, T) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let now = sim.now();
    let draw = Draw {
        weight: attempt.weight,
        raw: false,
        connection: true,
        refundable: false,
    };
    let admitted = sim.limiter.lock().admit(now, attempt.ip, draw, attempt.forced_429);
    let checked = admitted.and_then(|_| check(&sim));
    let status = checked.as_ref().map(|_| 101).unwrap_or_else(|e| e.status);
    sim.log.push(RequestRecord {
        at_ms: now,
        transport: attempt.transport,
        method: attempt.method.to_string(),
        path: attempt.path.to_string(),
        status,
        // An attempt refused by a ban is logged without weight.
        weight: if status == 418 { 0 } else { attempt.weight },
        ip: attempt.ip,
    });
    match checked {
        Ok(value) => {
            sim.limiter.lock().stats_mut().ws_connections += 1;
            ws.on_upgrade(move |socket| serve(sim, socket, value))
        }
        Err(e) => error_response(e),
    }
}

fn error_response(e: ApiErr) -> Response {
    let status = axum::http::StatusCode::from_u16(e.status).unwrap_or(axum::http::StatusCode::BAD_REQUEST);
    let mut response = (status, axum::Json(e.body())).into_response();
    if let Some(retry) = e.retry {
        response
            .headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from(retry.secs));
    }
    response
}

/// What one kind of connection does with the frames its client sends.
pub(super) trait Session {
    /// Whether the client may send this frame (every frame counts, pings and pongs too);
    /// `false` disconnects.
    fn allow_frame(&mut self) -> bool {
        true
    }

    /// The answer to a text frame, if any, and whether the socket closes after it.
    async fn answer(&mut self, sim: &Sim, text: &str) -> (Option<String>, bool);

    /// Releases what the connection holds (subscriptions) before the socket closes.
    fn close(&mut self, sim: &Sim);
}

/// Runs one connection until the client leaves, a pong is late, its push queue overflows
/// (`overflow` is notified) or the simulator drops every socket: writes the pushes queued on
/// `pushes`, answers the client's text frames through `session`, and pings every period.
pub(super) async fn run(
    sim: &Sim,
    mut socket: WebSocket,
    mut pushes: mpsc::Receiver<Utf8Bytes>,
    overflow: Arc<Notify>,
    session: &mut impl Session,
) {
    let mut kill = sim.drop_ws.subscribe();
    let period = sim.config.ws_ping_interval.max(std::time::Duration::from_millis(10));
    let mut pings = interval_at(Instant::now() + period, period);
    pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_pong = Instant::now();
    loop {
        tokio::select! {
            frame = pushes.recv() => {
                let Some(frame) = frame else { break };
                if socket.feed(Message::Text(frame)).await.is_err() {
                    break;
                }
                let mut sent = 1;
                while sent < WRITE_BATCH {
                    let Ok(next) = pushes.try_recv() else { break };
                    if socket.feed(Message::Text(next)).await.is_err() {
                        break;
                    }
                    sent += 1;
                }
                if socket.flush().await.is_err() {
                    break;
                }
            }
            msg = socket.recv() => {
                let Some(Ok(msg)) = msg else { break };
                if !session.allow_frame() {
                    sim.limiter.lock().stats_mut().ws_message_limit_closes += 1;
                    break;
                }
                match msg {
                    Message::Text(text) => {
                        // A drop order cuts an answer still being prepared (e.g. a delayed order answer).
                        let (reply, close) = tokio::select! {
                            answered = session.answer(sim, &text) => answered,
                            _ = kill.changed() => break,
                        };
                        if let Some(reply) = reply {
                            if socket.send(Message::Text(reply.into())).await.is_err() {
                                break;
                            }
                        }
                        if close {
                            break;
                        }
                    }
                    Message::Pong(_) => last_pong = Instant::now(),
                    Message::Close(_) => {
                        // The reply close frame (RFC 6455 §5.5.1) is queued by the protocol layer
                        // and goes out on the next flush.
                        let _ = socket.flush().await;
                        session.close(sim);
                        return;
                    }
                    Message::Ping(_) | Message::Binary(_) => {}
                }
            }
            _ = pings.tick() => {
                if last_pong.elapsed() > sim.config.ws_pong_timeout + period {
                    break;
                }
                if socket.send(Message::Ping(axum::body::Bytes::from_static(b"sim"))).await.is_err() {
                    break;
                }
            }
            _ = kill.changed() => break,
            _ = overflow.notified() => break,
        }
    }
    session.close(sim);
    let _ = socket.send(Message::Close(None)).await;
}
