//! The WebSocket API (`/ws-api/v3`): the same endpoints as REST under their WebSocket names,
//! `userDataStream.subscribe.signature` with pushed `executionReport` / `outboundAccountPosition`
//! events, `rateLimits` usage on every answer, and `error.data.retryAfter` (epoch ms) on 429/418.
//! A ban closes the socket. `session.logon` (Ed25519 keys only, as documented) authenticates the
//! connection; `returnRateLimits` (request or URL parameter) hides the usage report; method names
//! may carry the `v3/` version prefix.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Utf8Bytes, WebSocket, WebSocketUpgrade};
use std::collections::HashMap;

use axum::extract::{ConnectInfo, Query, State};
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
use super::run_state::Sim;
use super::sign::{self, Credentials, Verifier};
use super::ws_conn::{self, Attempt, Session};
use crate::exchange::binance::transport::sign::ws_api_payload;
use crate::exchange::binance::wire::{WsApiError, WsApiRequest, WsApiResponse};
use crate::ledger::limits::PoolKind;

/// Weight of opening a connection and of the user-data subscription requests.
const CONNECT_WEIGHT: u64 = 2;
const SUBSCRIBE_WEIGHT: u64 = 2;
/// Weight of `session.logon`, `session.status` and `session.logout`.
const SESSION_WEIGHT: u64 = 2;

pub async fn handle(
    State(sim): State<Arc<Sim>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    // `?returnRateLimits=false` hides the usage report of every answer unless a request asks for it.
    let return_rate_limits = query.get("returnRateLimits").map(String::as_str) != Some("false");
    // `?timeUnit=MICROSECOND`: every answer's times in µs (an unknown unit counts as ms).
    let micros = api::micros_wanted(query.get("timeUnit").map(String::as_str)).unwrap_or(false);
    let attempt = Attempt {
        transport: "WS_API",
        method: "CONNECT",
        path: "/ws-api/v3",
        weight: CONNECT_WEIGHT,
        forced_429: sim.faults.take_forced_429(peer.ip()),
        ip: peer.ip(),
    };
    ws_conn::upgrade(
        sim,
        ws,
        attempt,
        |_| Ok(()),
        move |sim, socket, ()| serve(sim, socket, peer.ip(), return_rate_limits, micros),
    )
}

/// The API key a `session.logon` authenticated, and when.
struct Logon {
    api_key: String,
    account: u16,
    since: i64,
}

struct Conn {
    id: u64,
    /// The client's address: its requests draw on that IP's weight.
    peer: IpAddr,
    tx: mpsc::Sender<Utf8Bytes>,
    overflow: Arc<Notify>,
    connected_since: i64,
    /// The connection's default for `returnRateLimits`.
    return_rate_limits: bool,
    logon: Option<Logon>,
    /// Subscriptions opened by `userDataStream.subscribe` (closed by `session.logout`).
    logon_subscriptions: Vec<u64>,
    /// Times in answers in µs (`?timeUnit=MICROSECOND`).
    micros: bool,
}

async fn serve(sim: Arc<Sim>, socket: WebSocket, peer: IpAddr, return_rate_limits: bool, micros: bool) {
    let (tx, rx) = mpsc::channel(CONNECTION_QUEUE);
    let mut conn = Conn {
        id: sim.next_id(),
        peer,
        tx,
        overflow: Arc::new(Notify::new()),
        connected_since: sim.now(),
        return_rate_limits,
        logon: None,
        logon_subscriptions: Vec::new(),
        micros,
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
        // The modelled trip of an order or cancel to the matching engine, and of its answer back.
        let order_latency = match sim.config.order_latency {
            latency if !latency.is_zero() && changes_orders(text) => latency,
            _ => Duration::ZERO,
        };
        if !order_latency.is_zero() {
            tokio::time::sleep(order_latency).await;
        }
        let (reply, banned, placed) = request(sim, self, text);
        if !order_latency.is_zero() {
            tokio::time::sleep(order_latency).await;
        }
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
fn request(sim: &Sim, conn: &mut Conn, text: &str) -> (String, bool, bool) {
    let now = sim.now();
    sim.limiter.lock().stats_mut().ws_api_requests += 1;
    let mut req: WsApiRequest = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(_) => {
            let err = ApiErr::bad(-1135, "Invalid JSON request");
            sim.log.push(record(now, conn.peer, "?", 400, 0));
            return (
                answer(sim, conn.peer, now, Value::Null, Err(err), None, true),
                false,
                false,
            );
        }
    };
    // "Request method names may be prefixed with explicit version: e.g., `v3/order.place`."
    let method = req.method.strip_prefix("v3/").unwrap_or(&req.method).to_string();
    let method = method.as_str();
    let show_limits = match take_return_rate_limits(&mut req.params) {
        Ok(flag) => flag.unwrap_or(conn.return_rate_limits),
        Err(err) => {
            sim.log.push(record(now, conn.peer, method, 400, 0));
            return (answer(sim, conn.peer, now, req.id, Err(err), None, true), false, false);
        }
    };
    let (weight, effect) = match method {
        "userDataStream.subscribe.signature" | "userDataStream.subscribe" | "userDataStream.unsubscribe" => {
            (SUBSCRIBE_WEIGHT, Effect::None)
        }
        "session.subscriptions" => (SUBSCRIBE_WEIGHT, Effect::None),
        "session.logon" | "session.status" | "session.logout" => (SESSION_WEIGHT, Effect::None),
        _ => match api::ws_endpoint(method) {
            Some(ep) => {
                let params = Params::from_json(&req.params).unwrap_or_default();
                (ep.weight_of(sim, &params), ep.effect)
            }
            None => {
                sim.log.push(record(now, conn.peer, method, 400, 0));
                let err = ApiErr::bad(-1020, "Unsupported operation.");
                return (
                    answer(sim, conn.peer, now, req.id, Err(err), None, show_limits),
                    false,
                    false,
                );
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
        sim.log.push(record(now, conn.peer, method, status, 0));
        let err = ApiErr::new(
            status,
            -1001,
            "Internal error; unable to process your request. Please try again.",
        );
        return (
            answer(sim, conn.peer, now, req.id, Err(err), None, show_limits),
            false,
            false,
        );
    }
    let draw = Draw {
        weight,
        raw: false,
        connection: false,
        refundable: effect != Effect::None,
    };
    let forced = sim.faults.take_forced_429(conn.peer);
    let admitted = sim.limiter.lock().admit(now, conn.peer, draw, forced);
    let charge = match admitted {
        Ok(c) => c,
        Err(e) => {
            let banned = e.status == 418;
            sim.log.push(record(
                now,
                conn.peer,
                method,
                e.status,
                if banned { 0 } else { weight },
            ));
            return (
                answer(sim, conn.peer, now, req.id, Err(e), None, show_limits),
                banned,
                false,
            );
        }
    };
    // The account whose order counts apply (verified by the handler; an unknown key is refused there).
    let account = req
        .params
        .get("apiKey")
        .and_then(Value::as_str)
        .and_then(|key| Credentials::of(&sim.config).account_of(key))
        .or(conn.logon.as_ref().map(|l| l.account))
        .unwrap_or(0);
    if effect == Effect::Place {
        let held = sim.limiter.lock().refuse_held_order(now, conn.peer, account);
        if let Some(e) = held {
            sim.limiter.lock().settle(charge, 0);
            sim.log.push(record(now, conn.peer, method, e.status, 0));
            return (
                answer(sim, conn.peer, now, req.id, Err(e), None, show_limits),
                true,
                false,
            );
        }
    }
    let result = run(sim, conn, method, &req.params, now).map(|v| {
        let mut v = api::for_transport(method, v, api::Transport::WsApi);
        if conn.micros {
            api::to_microseconds(method, &mut v);
        }
        v
    });
    let kept = api::settle_weight(sim, effect, charge, &result);
    let result = match failure {
        // The backend did the work but the answer is lost: status unknown.
        Some(FailKind::Unknown1007) => Err(ApiErr::timeout_unknown()),
        Some(FailKind::Unknown1006) => Err(ApiErr::execution_unknown()),
        _ => super::rest::mangled(sim, effect, result),
    };
    let status = result.as_ref().map(|_| 200).unwrap_or_else(|e| e.status);
    sim.log.push(record(now, conn.peer, method, status, kept));
    // An order sent during a -1015 wait is banned by the handler, not at admission.
    let banned = status == 418;
    let placed = effect == Effect::Place;
    (
        answer(
            sim,
            conn.peer,
            now,
            req.id,
            result,
            placed.then_some(account),
            show_limits,
        ),
        banned,
        placed,
    )
}

/// Whether a request places or cancels orders (read from its method alone).
fn changes_orders(text: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Method<'a> {
        #[serde(borrow)]
        method: std::borrow::Cow<'a, str>,
    }
    serde_json::from_str::<Method>(text).is_ok_and(|m| {
        let method = m.method.strip_prefix("v3/").unwrap_or(&m.method);
        api::ws_endpoint(method).is_some_and(|ep| ep.effect != Effect::None)
    })
}

/// Removes the `returnRateLimits` request parameter (a boolean) and returns it.
fn take_return_rate_limits(params: &mut serde_json::Map<String, Value>) -> Result<Option<bool>, ApiErr> {
    match params.remove("returnRateLimits") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
        Some(_) => Err(ApiErr::illegal_chars("returnRateLimits", "true, false")),
    }
}

fn record(now: i64, ip: IpAddr, method: &str, status: u16, weight: u64) -> RequestRecord {
    RequestRecord {
        at_ms: now,
        transport: "WS_API",
        method: method.to_string(),
        path: "/ws-api/v3".to_string(),
        status,
        weight,
        ip,
    }
}

/// The verifier of a signed request: its own `apiKey`, else the key the session logged on with
/// (whose requests need no signature, only a valid timestamp). Answers the request's account.
fn authenticate(sim: &Sim, conn: &Conn, params: &Params, now: i64) -> Result<u16, ApiErr> {
    let creds = Credentials::of(&sim.config);
    match (params.get("apiKey"), &conn.logon) {
        (None, Some(logon)) if params.get("signature").is_none() => {
            sign::check_timestamp(params, now).map(|()| logon.account)
        }
        (key, _) => {
            let (verifier, account) = creds.check_key(key)?;
            verifier.check_signed(params, &ws_api_payload(params.iter()), now)?;
            Ok(account)
        }
    }
}

fn session_status(sim: &Sim, conn: &Conn, now: i64) -> Value {
    json!({
        "apiKey": conn.logon.as_ref().map(|l| l.api_key.clone()),
        "authorizedSince": conn.logon.as_ref().map(|l| l.since),
        "connectedSince": conn.connected_since,
        "returnRateLimits": conn.return_rate_limits,
        "serverTime": now,
        "userDataStream": !sim.users.subscriptions(conn.id).is_empty(),
    })
}

fn run(
    sim: &Sim,
    conn: &mut Conn,
    method: &str,
    raw: &serde_json::Map<String, Value>,
    now: i64,
) -> Result<Value, ApiErr> {
    let params = Params::from_json(raw)?;
    let creds = Credentials::of(&sim.config);
    match method {
        "session.logon" => {
            params.only(|k| WS_SIGNING_PARAMS.contains(&k))?;
            let (verifier, account) = creds.check_key(params.get("apiKey"))?;
            if matches!(verifier, Verifier::Hmac(_)) {
                // Only Ed25519 keys may log a session on.
                return Err(ApiErr::bad(-4056, "HMAC_SHA256 API key is not supported."));
            }
            verifier.check_signed(&params, &ws_api_payload(params.iter()), now)?;
            conn.logon = Some(Logon {
                api_key: params.require("apiKey")?.to_string(),
                account,
                since: now,
            });
            Ok(session_status(sim, conn, now))
        }
        "session.status" => {
            params.only(|_| false)?;
            Ok(session_status(sim, conn, now))
        }
        "session.logout" => {
            params.only(|_| false)?;
            conn.logon = None;
            for id in std::mem::take(&mut conn.logon_subscriptions) {
                sim.users.unsubscribe(conn.id, Some(id));
            }
            Ok(session_status(sim, conn, now))
        }
        "userDataStream.subscribe.signature" => {
            params.only(|k| WS_SIGNING_PARAMS.contains(&k))?;
            let (verifier, account) = creds.check_key(params.get("apiKey"))?;
            verifier.check_signed(&params, &ws_api_payload(params.iter()), now)?;
            Ok(json!({ "subscriptionId": subscribe_user(sim, conn, account) }))
        }
        "userDataStream.subscribe" => {
            params.only(|_| false)?;
            let Some(account) = conn.logon.as_ref().map(|l| l.account) else {
                return Err(ApiErr::bad_key());
            };
            if !conn.logon_subscriptions.is_empty() {
                return Err(ApiErr::bad(-2035, "User Data Stream subscription already active."));
            }
            let id = subscribe_user(sim, conn, account);
            conn.logon_subscriptions.push(id);
            Ok(json!({ "subscriptionId": id }))
        }
        "userDataStream.unsubscribe" => {
            params.only(|k| k == "subscriptionId")?;
            let id = params.uint("subscriptionId")?;
            if sim.users.unsubscribe(conn.id, id) == 0 && id.is_some() {
                return Err(ApiErr::bad(-2036, "User Data Stream subscription not active."));
            }
            conn.logon_subscriptions.retain(|s| id.is_some_and(|id| id != *s));
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
            params.only(|k| ep.params.contains(&k) || (ep.signed && WS_SIGNING_PARAMS.contains(&k)))?;
            let account = match ep.signed {
                true => authenticate(sim, conn, &params, now)?,
                false => 0,
            };
            (ep.run)(sim, &params.for_account(account), now)
        }
    }
}

fn subscribe_user(sim: &Sim, conn: &Conn, account: u16) -> u64 {
    let subscription_id = sim.next_id();
    sim.users.subscribe(UserSubscriber {
        account,
        conn: conn.id,
        subscription_id,
        tx: conn.tx.clone(),
        overflow: conn.overflow.clone(),
    });
    subscription_id
}

fn answer(
    sim: &Sim,
    ip: IpAddr,
    now: i64,
    id: Value,
    result: Result<Value, ApiErr>,
    order_account: Option<u16>,
    show_limits: bool,
) -> String {
    let rate_limits = if show_limits {
        let mut limiter = sim.limiter.lock();
        let mut usage = limiter.usage_entries(now, ip, 0, PoolKind::RequestWeight);
        if let Some(account) = order_account {
            usage.extend(limiter.usage_entries(now, ip, account, PoolKind::Orders));
        }
        drop(limiter);
        usage
            .into_iter()
            .map(|(l, count)| api::rate_limit_entry(&l, Some(count)))
            .collect()
    } else {
        Vec::new()
    };
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
                data: e
                    .retry
                    .map(|r| json!({ "serverTime": now, "retryAfter": r.until_ms }))
                    .or(e.data),
            }),
            rate_limits,
        },
    };
    serde_json::to_string(&response).unwrap_or_default()
}
