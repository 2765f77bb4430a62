//! REST under `/api/v3/`: limits first (every arrival is charged, as on the exchange),
//! then authentication, then the handler; usage headers on every answer.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::api::{self, Effect, Endpoint, REST_SIGNING_PARAMS};
use super::error::ApiErr;
use super::faults::FailKind;
use super::limiter::Draw;
use super::params::Params;
use super::record::RequestRecord;
use super::run_state::Sim;
use super::sign::{self, Credentials};
use crate::ledger::limits::PoolKind;

pub async fn handle(
    State(sim): State<Arc<Sim>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let latency = sim.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let now = sim.now();
    let query = query.unwrap_or_default();
    let record = |status: u16, weight: u64| RequestRecord {
        at_ms: now,
        transport: "REST",
        method: method.to_string(),
        path: format!("/api/v3/{path}"),
        status,
        weight,
        ip: peer.ip(),
    };
    sim.limiter.lock().stats_mut().rest_requests += 1;

    let Some(ep) = api::rest_endpoint(method.as_str(), &path) else {
        // Answered as JSON (every client parses the body), under the HTTP status it deserves.
        let status = if api::known_path(&path) { 405 } else { 404 };
        sim.log.push(record(status, 0));
        return error_only(ApiErr::new(status, -1020, "This operation is not supported."));
    };
    let failure = sim.faults.take_failure(sim.fault_roll());
    if let Some(kind @ (FailKind::BadGateway | FailKind::Unavailable | FailKind::Firewall403)) = failure {
        // The front end failed: the request never reached the exchange.
        let status = match kind {
            FailKind::BadGateway => 502,
            FailKind::Firewall403 => 403,
            _ => 503,
        };
        sim.log.push(record(status, 0));
        return plain(status);
    }

    let body = String::from_utf8_lossy(&body);
    let parsed = Params::from_encoded(&[&query, &body]);
    let weight = ep.weight_of(&sim, parsed.as_ref().unwrap_or(&Params::default()));
    let draw = Draw {
        weight,
        raw: true,
        connection: false,
        refundable: ep.effect != Effect::None,
    };
    let key = headers.get("X-MBX-APIKEY").and_then(|v| v.to_str().ok());
    // The account whose order counts apply (verified by the handler; an unknown key is refused there).
    let account = key
        .and_then(|key| Credentials::of(&sim.config).account_of(key))
        .unwrap_or(0);
    // The exchange counts weight per client IP: the peer address of the connection.
    let ip = peer.ip();
    let forced = sim.faults.take_forced_429(ip);
    let admitted = sim.limiter.lock().admit(now, ip, draw, forced);
    let charge = match admitted {
        Ok(c) => c,
        Err(e) => {
            let charged = if e.status == 429 { weight } else { 0 };
            sim.log.push(record(e.status, charged));
            return respond(&sim, now, (ip, account), ep, Err(e));
        }
    };
    if ep.effect == Effect::Place {
        if let Some(secs) = sim.faults.take_order_limit() {
            let refused = sim.limiter.lock().hit_order_limit(now, account, secs);
            sim.log.push(record(429, weight));
            return respond(&sim, now, (ip, account), ep, Err(refused));
        }
        // Bound first: the lock must be released before the block takes it again.
        let held = sim.limiter.lock().refuse_held_order(now, ip, account);
        if let Some(banned) = held {
            sim.limiter.lock().settle(charge, 0);
            sim.log.push(record(418, 0));
            return respond(&sim, now, (ip, account), ep, Err(banned));
        }
    }
    let time_unit = headers.get("X-MBX-TIME-UNIT").map(|v| v.to_str().unwrap_or("?"));
    let micros = api::micros_wanted(time_unit);
    let order_latency = match ep.effect {
        Effect::None => Duration::ZERO,
        Effect::Place | Effect::Cancel => sim.config.order_latency,
    };
    // The modelled trip to the matching engine: the market moves meanwhile.
    let engine_now = if order_latency.is_zero() {
        now
    } else {
        tokio::time::sleep(order_latency).await;
        sim.now()
    };
    let result = micros
        .clone()
        .and_then(|_| run(&sim, ep, parsed, &query, &body, key, engine_now));
    let kept = api::settle_weight(&sim, ep.effect, charge, &result);
    let result = match failure {
        // The backend did the work but the answer is lost: status unknown.
        Some(FailKind::Unknown1007) => Err(ApiErr::timeout_unknown()),
        Some(FailKind::Unknown1006) => Err(ApiErr::execution_unknown()),
        _ => mangled(&sim, ep.effect, result),
    };
    let result = result.map(|v| {
        let mut v = api::for_transport(ep.path, v, api::Transport::Rest);
        if micros == Ok(true) {
            api::to_microseconds(ep.path, &mut v);
        }
        v
    });
    let status = result.as_ref().map(|_| 200).unwrap_or_else(|e| e.status);
    // Logged before a delayed answer: a client that gives up first still sent the request.
    sim.log.push(record(status, kept));
    if !order_latency.is_zero() {
        tokio::time::sleep(order_latency).await;
    }
    if ep.effect == Effect::Place {
        let delay = sim.faults.order_answer_delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
    respond(&sim, now, (ip, account), ep, result)
}

/// An order answer as the order-answer fault knob shapes it (anything else as it is).
pub(crate) fn mangled(sim: &Sim, effect: Effect, result: Result<Value, ApiErr>) -> Result<Value, ApiErr> {
    match (effect, result) {
        (Effect::Place | Effect::Cancel, Ok(mut answer)) => {
            if let Some(mangle) = sim.faults.order_answer_mangle() {
                mangle.apply(&mut answer);
            }
            Ok(answer)
        }
        (_, result) => result,
    }
}

/// Authentication, parameter checks and the handler.
fn run(
    sim: &Sim,
    ep: &Endpoint,
    parsed: Result<Params, ApiErr>,
    query: &str,
    body: &str,
    key: Option<&str>,
    now: i64,
) -> Result<Value, ApiErr> {
    let verifier = match ep.signed {
        true => Some(Credentials::of(&sim.config).check_key(key)?),
        false => None,
    };
    let params = parsed?;
    params.only(|k| ep.params.contains(&k) || (ep.signed && REST_SIGNING_PARAMS.contains(&k)))?;
    let account = match verifier {
        Some((verifier, account)) => {
            verifier.check_signed(&params, &sign::rest_payload(query, body), now)?;
            account
        }
        None => 0,
    };
    (ep.run)(sim, &params.for_account(account), now)
}

fn respond(
    sim: &Sim,
    now: i64,
    (ip, account): (IpAddr, u16),
    ep: &Endpoint,
    result: Result<Value, ApiErr>,
) -> Response {
    let (status, body, retry) = match result {
        Ok(v) => (200, v, None),
        Err(e) => (e.status, e.body(), e.retry),
    };
    let mut response = Response::new(Body::from(serde_json::to_vec(&body).unwrap_or_default()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    let mut limiter = sim.limiter.lock();
    usage_headers(
        headers,
        "x-mbx-used-weight-",
        limiter.usage(now, ip, account, PoolKind::RequestWeight),
    );
    if ep.effect == Effect::Place && status == 200 {
        usage_headers(
            headers,
            "x-mbx-order-count-",
            limiter.usage(now, ip, account, PoolKind::Orders),
        );
    }
    drop(limiter);
    if let Some(retry) = retry {
        headers.insert("retry-after", HeaderValue::from(retry.secs));
    }
    response
}

fn usage_headers(headers: &mut HeaderMap, prefix: &str, usage: Vec<(String, u64)>) {
    for (suffix, count) in usage {
        let name = format!("{prefix}{}", suffix.to_ascii_lowercase());
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            headers.insert(name, HeaderValue::from(count));
        }
    }
}

fn plain(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = Response::new(Body::from(code.canonical_reason().unwrap_or("").to_string()));
    *response.status_mut() = code;
    response
}

/// A JSON error answer outside any endpoint (no usage headers: nothing was charged).
fn error_only(e: ApiErr) -> Response {
    let mut response = Response::new(Body::from(serde_json::to_vec(&e.body()).unwrap_or_default()));
    *response.status_mut() = StatusCode::from_u16(e.status).unwrap_or(StatusCode::NOT_FOUND);
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    response
}
