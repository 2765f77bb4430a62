//! One request to the exchange and its answer, whichever transport carries it: HTTP
//! ([`http::HttpTransport`]) or the WebSocket API ([`ws_api::WsApiClient`]). The
//! gateway prices, admits and reserves a [`Request`], picks its [`Transport`], and gets back an
//! [`Answer`] read once into the type the caller expects.
//!
//! - [`gateway`]: the only code that sends bytes to the exchange (price → admit → reserve → sign → send → observe).
//! - [`http`] and [`ws_api`]: the two transports; [`per_thread`]: each strategy thread's own HTTP client and order connection.
//! - [`egress`]: the egress IP groups (local source addresses) and which strategy sends from which.
//! - [`sign`]: request signing (HMAC-SHA256 or Ed25519) for both transports.
//! - [`api_calls`]: typed calls over the gateway and the retry policy.

pub(crate) mod api_calls;
pub mod egress;
pub mod gateway;
pub(crate) mod http;
pub(crate) mod per_thread;
pub mod sign;
pub mod ws_api;

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::exchange::latency::Trigger;
use crate::ledger::{Lane, ServerUsage, Verdict};

use super::errors::Rejection;
use super::limits::endpoints::{Endpoint, HttpMethod};
use super::limits::usage;
use super::wire::WsApiResponse;
use ws_api::WsApiClient;

/// One request, before signing.
#[derive(Debug, Clone)]
pub struct Request {
    pub endpoint: Endpoint,
    pub params: Vec<(&'static str, String)>,
    pub signed: bool,
    pub lane: Lane,
    /// Successful order place/cancel costs no weight: charge up front, give it back on success.
    pub credit_on_success: bool,
    /// The market event an order is placed for: told when the order is written.
    pub trigger: Option<Trigger>,
}

impl Request {
    pub fn new(endpoint: Endpoint, lane: Lane) -> Self {
        Request {
            endpoint,
            params: Vec::new(),
            signed: false,
            lane,
            credit_on_success: false,
            trigger: None,
        }
    }

    pub fn param(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.params.push((name, value.into()));
        self
    }

    pub fn signed(mut self) -> Self {
        self.signed = true;
        self
    }

    pub fn free_on_success(mut self) -> Self {
        self.credit_on_success = true;
        self
    }

    pub fn for_event(mut self, trigger: Option<Trigger>) -> Self {
        self.trigger = trigger;
        self
    }

    /// The parameters as borrowed name/value pairs (what pricing and framing read).
    pub fn param_pairs(&self) -> Vec<(&str, &str)> {
        self.params.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }
}

/// How one request travels.
pub enum Transport<'a> {
    /// An HTTP request on the calling thread's client, to the endpoint's REST method and path.
    Http { method: HttpMethod, path: &'static str },
    /// A frame on a WebSocket API connection, as `method`.
    WsApi {
        client: &'a WsApiClient,
        method: &'static str,
    },
}

/// What an answer carried.
#[derive(Debug)]
pub enum Body<T> {
    /// A success, read as the caller expects.
    Read(T),
    /// A success that could not be read as the caller expects; why.
    Unreadable(String),
    /// A refusal or failure (any status outside 2xx).
    Refused(Rejection),
}

/// The exchange's answer to one request, whichever way it went.
pub struct Answer<T> {
    pub status: u16,
    pub body: Body<T>,
    /// What the answer says about the exchange's counters (usage headers or `rateLimits`).
    pub usage: Vec<ServerUsage>,
    pub verdict: Verdict,
    /// A -1015: how long new orders must wait.
    pub new_order_wait: Option<Duration>,
}

fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

impl<T: DeserializeOwned> Answer<T> {
    /// An HTTP answer: `usage` from its headers; the body is read once, as `T` or as the refusal.
    pub fn from_http(
        status: u16,
        retry_after: Option<&str>,
        body: &[u8],
        usage: Vec<ServerUsage>,
        now_ms: i64,
    ) -> Self {
        let verdict = usage::classify(status, retry_after, body, now_ms);
        let (body, new_order_wait) = if is_success(status) {
            let read = serde_json::from_slice(body).map_or_else(|e| Body::Unreadable(e.to_string()), Body::Read);
            (read, None)
        } else {
            let wait = usage::http_order_limit_wait(retry_after, body);
            (Body::Refused(Rejection::from_http(status, body)), wait)
        };
        Answer {
            status,
            body,
            usage,
            verdict,
            new_order_wait,
        }
    }

    /// A WebSocket API answer: usage from its `rateLimits`; its `result` goes straight to `T`.
    pub fn from_ws_api(response: WsApiResponse, now_ms: i64) -> Self {
        let (usage, verdict) = usage::ws_api_observation(&response, now_ms);
        let new_order_wait = usage::ws_order_limit_wait(&response, now_ms);
        let status = response.status;
        let body = if is_success(status) {
            // An answer without a result reads as `{}`: the caller's type decides whether that is enough.
            let result = response
                .result
                .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
            serde_json::from_value(result).map_or_else(|e| Body::Unreadable(e.to_string()), Body::Read)
        } else {
            Body::Refused(Rejection::from_ws_api(status, response.error.as_ref()))
        };
        Answer {
            status,
            body,
            usage,
            verdict,
            new_order_wait,
        }
    }
}
