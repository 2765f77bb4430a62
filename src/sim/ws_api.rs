//! The WebSocket API (`/ws-api/v3`): the same endpoints as REST under their WebSocket names,
//! `userDataStream.subscribe.signature` with pushed `executionReport` / `outboundAccountPosition`
//! events, `rateLimits` usage on every answer, and `error.data.retryAfter` (epoch ms) on 429/418.
//! A ban closes the socket.

use std::sync::Arc;

use axum::extract::ws::{Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

use super::api::{self, Effect, WS_SIGNING_PARAMS};
use super::error::ApiErr;
use super::faults::FailKind;
use super::hub::{UserSubscriber, CONNECTION_QUEUE};
use super::limiter::Draw;
use super::params::Params;
use super::record::RequestRecord;
use super::sign::Credentials;
use super::state::Sim;
use super::ws_conn::{self, Attempt, Session};
use crate::exchange::binance::sign::ws_api_payload;
use crate::exchange::binance::wire::{WsApiError, WsApiRequest, WsApiResponse};
use crate::ledger::limits::PoolKind;

/// Weight of opening a connection and of the user-data subscription requests.
const CONNECT_WEIGHT: u64 = 2;
const SUBSCRIBE_WEIGHT: u64 = 2;

pub async fn handle(State(sim): State<Arc<Sim>>, ws: WebSocketUpgrade) -> Response {
    let attempt = Attempt {
        transport: "WS_API",
        method: "CONNECT",
        path: "/ws-api/v3",
        weight: CONNECT_WEIGHT,
        forced_429: sim.faults.take_forced_429(),
    };
    ws_conn::upgrade(sim, ws, attempt, |_| Ok(()), |sim, socket, ()| serve(sim, socket))
}

struct Conn {
    id: u64,
    tx: mpsc::Sender<Utf8Bytes>,
    overflow: Arc<Notify>,
}

async fn serve(sim: Arc<Sim>, socket: WebSocket) {
    let (tx, rx) = mpsc::channel(CONNECTION_QUEUE);
    let mut conn = Conn {
        id: sim.next_id(),
        tx,
        overflow: Arc::new(Notify::new()),
    };
    let overflow = conn.overflow.clone();
    ws_conn::run(&sim, socket, rx, overflow, &mut conn).await;
}

impl Session for Conn {
    /// Answers after the injected latency; an order's answer also waits the injected order delay.
    /// A ban closes the socket.
    async fn answer(&mut self, sim: &Sim, text: &str) -> (Option<String>, bool) {
        let latency = sim.faults.latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let (reply, banned, placed) = request(sim, self, text);
        let delay = sim.faults.order_answer_delay();
        if placed && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        (Some(reply), banned)
    }

    fn close(&mut self, sim: &Sim) {
        sim.users.unsubscribe(self.id, None);
    }
}

/// Answers one request. Flags: the IP is banned (the socket must close); the request placed an order.
fn request(sim: &Sim, conn: &Conn, text: &str) -> (String, bool, bool) {
    let now = sim.now();
    sim.limiter.lock().stats_mut().ws_api_requests += 1;
    let req: WsApiRequest = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(_) => {
            let err = ApiErr::bad(-1135, "Invalid JSON request");
            sim.log.push(record(now, "?", 400, 0));
            return (answer(sim, now, Value::Null, Err(err), false), false, false);
        }
    };
    let method = req.method.as_str();
    let (weight, effect) = match method {
        "userDataStream.subscribe.signature" | "userDataStream.subscribe" | "userDataStream.unsubscribe" => {
            (SUBSCRIBE_WEIGHT, Effect::None)
        }
        "session.subscriptions" => (SUBSCRIBE_WEIGHT, Effect::None),
        _ => match api::ws_endpoint(method) {
            Some(ep) => {
                let params = Params::from_json(&req.params).unwrap_or_default();
                ((ep.weight)(&params), ep.effect)
            }
            None => {
                sim.log.push(record(now, method, 400, 0));
                let err = ApiErr::bad(-1020, "Unsupported operation.");
                return (answer(sim, now, req.id, Err(err), false), false, false);
            }
        },
    };
    // Injected failures hit requests that change orders (as over REST, where they hit every request):
    // a user-data subscription failing by chance would only muddy a test about orders.
    let failure = if effect == Effect::None {
        None
    } else {
        sim.faults.take_failure(sim.fault_roll())
    };
    if let Some(kind @ (FailKind::BadGateway | FailKind::Unavailable | FailKind::Firewall403)) = failure {
        // The front end failed: the request never reached the exchange.
        let status = match kind {
            FailKind::BadGateway => 502,
            FailKind::Firewall403 => 403,
            _ => 503,
        };
        sim.log.push(record(now, method, status, 0));
        let err = ApiErr::new(
            status,
            -1001,
            "Internal error; unable to process your request. Please try again.",
        );
        return (answer(sim, now, req.id, Err(err), false), false, false);
    }
    let draw = Draw {
        weight,
        raw: false,
        connection: false,
        refundable: effect != Effect::None,
    };
    let forced = sim.faults.take_forced_429();
    let admitted = sim.limiter.lock().admit(now, draw, forced);
    let charge = match admitted {
        Ok(c) => c,
        Err(e) => {
            let banned = e.status == 418;
            sim.log
                .push(record(now, method, e.status, if banned { 0 } else { weight }));
            return (answer(sim, now, req.id, Err(e), false), banned, false);
        }
    };
    let result = run(sim, conn, method, &req.params, now);
    let kept = api::settle_weight(sim, effect, charge, &result);
    let result = match failure {
        // The backend did the work but the answer is lost: status unknown.
        Some(FailKind::Unknown1007) => Err(ApiErr::timeout_unknown()),
        Some(FailKind::Unknown1006) => Err(ApiErr::execution_unknown()),
        _ => super::rest::mangled(sim, effect, result),
    };
    let status = result.as_ref().map(|_| 200).unwrap_or_else(|e| e.status);
    sim.log.push(record(now, method, status, kept));
    // An order sent during a -1015 wait is banned by the handler, not at admission.
    let banned = status == 418;
    (
        answer(sim, now, req.id, result, effect == Effect::Place),
        banned,
        effect == Effect::Place,
    )
}

fn record(now: i64, method: &str, status: u16, weight: u64) -> RequestRecord {
    RequestRecord {
        at_ms: now,
        transport: "WS_API",
        method: method.to_string(),
        path: "/ws-api/v3".to_string(),
        status,
        weight,
    }
}

fn run(sim: &Sim, conn: &Conn, method: &str, raw: &serde_json::Map<String, Value>, now: i64) -> Result<Value, ApiErr> {
    let params = Params::from_json(raw)?;
    let creds = Credentials::of(&sim.config);
    match method {
        "userDataStream.subscribe.signature" => {
            params.only(|k| WS_SIGNING_PARAMS.contains(&k))?;
            let verifier = creds.check_key(params.get("apiKey"))?;
            verifier.check_signed(&params, &ws_api_payload(params.iter()), now)?;
            let subscription_id = sim.next_id();
            sim.users.subscribe(UserSubscriber {
                conn: conn.id,
                subscription_id,
                tx: conn.tx.clone(),
                overflow: conn.overflow.clone(),
            });
            Ok(json!({ "subscriptionId": subscription_id }))
        }
        "userDataStream.subscribe" => Err(ApiErr::new(
            401,
            -2015,
            "Invalid API-key, IP, or permissions for action.",
        )),
        "userDataStream.unsubscribe" => {
            params.only(|k| k == "subscriptionId")?;
            let id = params.uint("subscriptionId")?;
            if sim.users.unsubscribe(conn.id, id) == 0 && id.is_some() {
                return Err(ApiErr::bad(-2, "Invalid subscription ID."));
            }
            Ok(json!({}))
        }
        "session.subscriptions" => Ok(Value::Array(
            sim.users
                .subscriptions(conn.id)
                .into_iter()
                .map(|id| json!({ "subscriptionId": id }))
                .collect(),
        )),
        _ => {
            let ep = api::ws_endpoint(method).ok_or_else(|| ApiErr::bad(-1020, "Unsupported operation."))?;
            let verifier = match ep.signed {
                true => Some(creds.check_key(params.get("apiKey"))?),
                false => None,
            };
            params.only(|k| ep.params.contains(&k) || (ep.signed && WS_SIGNING_PARAMS.contains(&k)))?;
            if let Some(verifier) = verifier {
                verifier.check_signed(&params, &ws_api_payload(params.iter()), now)?;
            }
            (ep.run)(sim, &params, now)
        }
    }
}

fn answer(sim: &Sim, now: i64, id: Value, result: Result<Value, ApiErr>, order: bool) -> String {
    let mut limiter = sim.limiter.lock();
    let mut usage = limiter.usage_entries(now, PoolKind::RequestWeight);
    if order {
        usage.extend(limiter.usage_entries(now, PoolKind::Orders));
    }
    drop(limiter);
    let rate_limits = usage
        .into_iter()
        .map(|(l, count)| api::rate_limit_entry(&l, Some(count)))
        .collect();
    let response = match result {
        Ok(v) => WsApiResponse {
            id,
            status: 200,
            result: Some(v),
            error: None,
            rate_limits,
        },
        Err(e) => WsApiResponse {
            id,
            status: e.status,
            result: None,
            error: Some(WsApiError {
                code: e.code,
                msg: e.msg,
                data: e.retry.map(|r| json!({ "serverTime": now, "retryAfter": r.until_ms })),
            }),
            rate_limits,
        },
    };
    serde_json::to_string(&response).unwrap_or_default()
}
