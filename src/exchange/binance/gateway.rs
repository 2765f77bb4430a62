//! The gateway: the only holder of the HTTP client and the WebSocket connect
//! function. Every byte sent to the exchange passes here, and the only way to send
//! is: cost from the weight table (unknown → refused) → reserve in the ledger →
//! sign → send → reconcile the answer with the ledger.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use reqwest::header::{HeaderName, HeaderValue};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use url::form_urlencoded;

use crate::exchange::breaker::{BreakerConfig, Breakers, Caller, EndpointClass, Outcome, Refused, Ticket};
use crate::exchange::latency::Trigger;
use crate::exchange::types::{ApiError, ErrorCode};
use crate::ledger::{Cost, Lane, Ledger, Observation, Permit, PoolKind, ServerUsage, Verdict};

use super::errors::{exchange_failing, GatewayError, SendError};
use super::http::HttpClients;
use super::per_thread::PerThread;
use super::profile::{Credentials, Profile};
use super::wire::{WsApiRequest, WsApiResponse};
use super::ws_orders::{request_frame, OrderTransport, Session, Signing};
use super::{sign, usage, weights};

pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

const API_KEY_HEADER: HeaderName = HeaderName::from_static("x-mbx-apikey");

/// The name under which the client's own requests (start-up, resyncs, lookups) are charged.
pub const CLIENT_STRATEGY: &str = "_client";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
    Delete,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Delete => "DELETE",
        }
    }
}

/// One REST request, before signing.
#[derive(Debug, Clone)]
pub struct RestCall {
    pub method: HttpMethod,
    pub path: &'static str,
    pub params: Vec<(&'static str, String)>,
    pub signed: bool,
    pub lane: Lane,
    /// Successful order place/cancel costs no weight: charge up front, give it back on success.
    pub credit_on_success: bool,
    /// The market event an order is placed for: told when the order is written.
    pub trigger: Option<Trigger>,
}

impl RestCall {
    pub fn new(method: HttpMethod, path: &'static str, lane: Lane) -> Self {
        RestCall {
            method,
            path,
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
}

/// An HTTP answer, already reconciled with the ledger.
#[derive(Debug, Clone)]
pub struct RestReply {
    pub status: u16,
    pub body: Vec<u8>,
    pub verdict: Verdict,
    /// Exchange time (ms) at which the request left, after any wait for budget.
    pub sent_at_ms: i64,
}

impl RestReply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Lets in-flight calls end with `stopped` when the client shuts down.
#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            tx: Arc::new(watch::channel(false).0),
        }
    }
}

impl Shutdown {
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once shutdown has been triggered.
    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        // An error means the sender is gone, which only happens when everything is.
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}

pub struct GatewayConfig {
    pub recv_window_ms: u64,
    pub request_timeout: Duration,
    pub order_transport: OrderTransport,
    pub breaker: BreakerConfig,
}

pub struct Gateway {
    http: HttpClients,
    /// `X-MBX-APIKEY`, checked once and marked sensitive (kept out of debug output).
    api_key_header: HeaderValue,
    ledger: Ledger,
    credentials: Credentials,
    rest_base: String,
    /// Where public market data is read, when not from `rest_base` (see `Profile::market_rest_url`).
    market_rest_base: Option<String>,
    ws_base: String,
    ws_api_url: String,
    recv_window_ms: u64,
    request_timeout: Duration,
    /// The server-time offset this gateway last handed the ledger.
    offset_ms: AtomicI64,
    /// After a -1015 (too many new orders): exchange time (ms) until which new orders are held.
    /// Only new orders: cancels and reads go on (the limit is the account's order count).
    new_orders_held_until_ms: AtomicI64,
    shutdown: Shutdown,
    /// With `--order-transport ws-api`: each strategy thread's order connection.
    order_sessions: Option<PerThread<Arc<Session>>>,
    /// Where the client's background work runs (streams, lookups, resyncs): the runtime the gateway
    /// was created on, never the thread of the strategy whose call happened to start the work.
    background: tokio::runtime::Handle,
    /// One circuit breaker per endpoint class, checked before anything is reserved or sent.
    breakers: Breakers,
    slow_call: Duration,
}

impl Gateway {
    /// Must be called within the tokio runtime that is to run the client's background work.
    pub fn new(
        profile: &Profile,
        ledger: Ledger,
        config: GatewayConfig,
        shutdown: Shutdown,
    ) -> Result<Self, GatewayError> {
        let background = tokio::runtime::Handle::try_current().map_err(GatewayError::NoRuntime)?;
        let http = HttpClients::new(config.request_timeout).map_err(GatewayError::Http)?;
        let mut api_key_header =
            HeaderValue::from_str(profile.credentials.api_key()).map_err(|_| GatewayError::ApiKeyHeader)?;
        api_key_header.set_sensitive(true);
        Ok(Gateway {
            http,
            api_key_header,
            ledger,
            credentials: profile.credentials.clone(),
            rest_base: profile.rest_url.clone(),
            market_rest_base: profile.market_rest_url.clone(),
            ws_base: profile.ws_url.clone(),
            ws_api_url: profile.ws_api_url.clone(),
            recv_window_ms: config.recv_window_ms,
            request_timeout: config.request_timeout,
            offset_ms: AtomicI64::new(0),
            new_orders_held_until_ms: AtomicI64::new(i64::MIN),
            shutdown,
            background,
            order_sessions: (config.order_transport == OrderTransport::WsApi).then(PerThread::new),
            breakers: Breakers::new(&config.breaker),
            slow_call: config.breaker.slow_call,
        })
    }

    /// Runs `task` as the client's background work (see [`Gateway::new`]).
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.background.spawn(task)
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    pub fn now_ms(&self) -> i64 {
        self.ledger.now_ms()
    }

    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    async fn reserve(&self, strategy: &str, lane: Lane, cost: Cost, wait: Duration) -> Result<Permit, SendError> {
        if self.shutdown.is_triggered() {
            return Err(SendError::Stopped);
        }
        tokio::select! {
            permit = self.ledger.reserve(strategy, lane, cost, wait) => {
                permit.map_err(|e| SendError::Ledger(crate::exchange::types::ApiError::from_ledger(&e, self.ledger.now_ms())))
            }
            _ = self.shutdown.wait() => Err(SendError::Stopped),
        }
    }

    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }

    /// Asks `class`'s breaker to let one request through; cancels always go out.
    fn admit(&self, class: EndpointClass, strategy: &str, lane: Lane) -> Result<Ticket<'_>, SendError> {
        let breaker = self.breakers.get(class);
        if lane == Lane::Cancel {
            // A cancel reduces risk: it is attempted whatever the breaker says, and a failure is reported.
            return Ok(breaker.bypass());
        }
        let caller = if strategy == CLIENT_STRATEGY {
            Caller::Own
        } else {
            Caller::Strategy
        };
        breaker.admit(caller).map_err(unavailable)
    }

    /// Waits out a -1015 hold on new orders (within `wait`), or refuses: nothing is sent.
    async fn new_order_hold(&self, call: &RestCall, wait: Duration) -> Result<(), SendError> {
        if call.lane != Lane::Order || call.method != HttpMethod::Post {
            return Ok(());
        }
        let until = self.new_orders_held_until_ms.load(Ordering::Relaxed);
        let left_ms = until.saturating_sub(self.ledger.now_ms());
        if left_ms <= 0 {
            return Ok(());
        }
        let left = Duration::from_millis(left_ms as u64);
        if left > wait {
            return Err(SendError::Ledger(
                crate::exchange::types::ApiError::new(
                    crate::exchange::types::ErrorCode::Backoff,
                    format!("the exchange's new-order limit was hit (-1015): new orders wait {left_ms} ms more; cancels go on"),
                )
                .with_retry_after(left_ms as u64),
            ));
        }
        tokio::select! {
            _ = tokio::time::sleep(left) => Ok(()),
            _ = self.shutdown.wait() => Err(SendError::Stopped),
        }
    }

    fn hold_new_orders(&self, wait: Duration) {
        let until = self
            .ledger
            .now_ms()
            .saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
        let before = self.new_orders_held_until_ms.fetch_max(until, Ordering::Relaxed);
        if until > before {
            tracing::warn!(
                hold_ms = wait.as_millis() as u64,
                "too many new orders (-1015): new orders are held; cancels and reads go on"
            );
        }
    }

    /// Sends one REST request (no retries: that is the caller's policy).
    pub async fn rest(&self, strategy: &str, wait: Duration, call: &RestCall) -> Result<RestReply, SendError> {
        self.rest_in(endpoint_class(call), strategy, wait, call).await
    }

    /// One `GET /api/v3/ping` (weight 1, charged as the client's) counted by `class`'s breaker:
    /// the cheap request that probes a half-open breaker.
    pub async fn probe(&self, class: EndpointClass) {
        let call = RestCall::new(HttpMethod::Get, "/api/v3/ping", Lane::MarketData);
        if let Err(e) = self.rest_in(class, CLIENT_STRATEGY, Duration::ZERO, &call).await {
            tracing::debug!(class = class.as_str(), "circuit breaker probe: {e}");
        }
    }

    async fn rest_in(
        &self,
        class: EndpointClass,
        strategy: &str,
        wait: Duration,
        call: &RestCall,
    ) -> Result<RestReply, SendError> {
        let borrowed: Vec<(&str, &str)> = call.params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let cost = weights::rest_cost(call.method.as_str(), call.path, &borrowed)
            .map_err(|e| SendError::UnknownEndpoint(e.to_string()))?;
        let asked_at = std::time::Instant::now();
        // Before the ledger: a call the breaker refuses is neither sent nor charged.
        let ticket = self.admit(class, strategy, call.lane)?;
        self.new_order_hold(call, wait).await?;
        let permit = self.reserve(strategy, call.lane, cost, wait).await?;
        let endpoint = format!("{} {}", call.method.as_str(), call.path);
        let labels = [("strategy", strategy.to_string()), ("endpoint", endpoint)];
        metrics::histogram!("runner_ledger_wait_seconds", &labels).record(asked_at.elapsed());
        metrics::counter!("runner_requests_total", &labels).increment(1);
        metrics::counter!("runner_request_weight_total", &labels).increment(cost.units_of(PoolKind::RequestWeight));
        let sent_at = std::time::Instant::now();
        let sent_at_ms = self.ledger.now_ms();
        let started = tokio::time::Instant::now();
        let exchange = async {
            match self.order_session(call) {
                Some((session, method)) => self.over_ws_api(&session, method, call, wait).await,
                None => self.over_http(call).await,
            }
        };
        let answer = tokio::select! {
            answer = exchange => answer,
            // The request may already have reached the exchange: its outcome is unknown, not "not sent".
            _ = self.shutdown.wait() => {
                return Err(SendError::Transport("shut down before the exchange answered".into()))
            }
        };
        metrics::histogram!("runner_request_duration_seconds", &labels).record(sent_at.elapsed());
        let failing = match &answer {
            Ok(answer) => exchange_failing(answer.status, &answer.body) || started.elapsed() > self.slow_call,
            Err(error) => !matches!(
                error,
                SendError::Ledger(_) | SendError::Stopped | SendError::Unavailable(_)
            ),
        };
        ticket.finish(if failing { Outcome::Failure } else { Outcome::Success });
        let answer = answer?;
        self.observe(&permit, answer.usage, answer.verdict.clone());
        if let Some(hold) = answer.new_order_wait {
            self.hold_new_orders(hold);
        }
        let reply = RestReply {
            status: answer.status,
            body: answer.body,
            verdict: answer.verdict,
            sent_at_ms,
        };
        if call.credit_on_success && reply.is_success() {
            self.ledger.credit(&permit, PoolKind::RequestWeight, u32::MAX);
            metrics::counter!("runner_request_weight_credited_total", &labels)
                .increment(cost.units_of(PoolKind::RequestWeight));
        }
        Ok(reply)
    }

    /// This thread's order connection and the method name, when `call` is order entry made from a
    /// strategy's thread and orders go over the WebSocket API.
    fn order_session(&self, call: &RestCall) -> Option<(Arc<Session>, &'static str)> {
        // Order entry only: reads (an order's status) stay on REST.
        if !matches!(call.lane, Lane::Order | Lane::Cancel) || call.method == HttpMethod::Get {
            return None;
        }
        let method = weights::ws_api_method(call.method.as_str(), call.path)?;
        let session = self.order_sessions.as_ref()?.get(|| Some(Arc::default()))?;
        Some((session, method))
    }

    /// One request over a strategy thread's WebSocket API connection (opened, and charged, if needed).
    async fn over_ws_api(
        &self,
        session: &Session,
        method: &'static str,
        call: &RestCall,
        wait: Duration,
    ) -> Result<Answer, SendError> {
        let connect = || async {
            let stream = self.connect_ws(&self.ws_api_url, weights::WS_API_CONNECT, wait).await?;
            tracing::debug!("order connection to the WebSocket API opened");
            Ok(stream)
        };
        let frame = |id: u64| {
            let params: Vec<(&str, &str)> = call.params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let signing = call.signed.then(|| Signing {
                api_key: self.credentials.api_key(),
                signer: self.credentials.signer(),
                recv_window_ms: self.recv_window_ms,
                timestamp_ms: self.ledger.now_ms(),
            });
            request_frame(id, method, &params, signing.as_ref())
        };
        let written = || call.trigger.as_ref().map_or((), Trigger::order_written);
        let response = session
            .exchange(connect, &self.ledger, frame, written, self.request_timeout)
            .await?;
        let (usage, verdict) = usage::ws_api_observation(&response, self.ledger.now_ms());
        let usage = self.source_usage(usage, false);
        let new_order_wait = usage::ws_order_limit_wait(&response, self.ledger.now_ms());
        // The same body REST would carry: the result, or the `{code, msg}` error.
        let body = match (&response.result, &response.error) {
            (_, Some(error)) => serde_json::to_vec(error),
            (Some(result), None) => serde_json::to_vec(result),
            (None, None) => Ok(b"{}".to_vec()),
        }
        .map_err(|e| SendError::Transport(e.to_string()))?;
        Ok(Answer {
            status: response.status,
            usage,
            verdict,
            new_order_wait,
            body,
        })
    }

    /// One request over HTTP.
    async fn over_http(&self, call: &RestCall) -> Result<Answer, SendError> {
        let query = self.query_string(call);
        // Public market data may come from elsewhere; the server time stays the trading venue's.
        let market_base = self
            .market_rest_base
            .as_deref()
            .filter(|_| !call.signed && call.method == HttpMethod::Get && call.path != "/api/v3/time");
        let base = market_base.unwrap_or(&self.rest_base);
        let mut url = String::with_capacity(base.len() + call.path.len() + query.len() + 1);
        url.push_str(base);
        url.push_str(call.path);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query);
        }
        let method = match call.method {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Delete => reqwest::Method::DELETE,
        };
        let mut request = self.http.current().request(method, &url).timeout(self.request_timeout);
        if market_base.is_none() {
            request = request.header(API_KEY_HEADER, self.api_key_header.clone());
        }

        // The HTTP client writes the request inside `send`, which tells nobody when: this is the
        // last moment before it (the WebSocket API transport records the write itself).
        if let Some(trigger) = &call.trigger {
            trigger.order_written();
        }
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status().as_u16();
        let usage = self.source_usage(header_usage(response.headers()), market_base.is_some());
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.bytes().await.map_err(|e| self.transport_error(&e))?;
        let verdict = usage::classify(status, retry_after.as_deref(), &body, self.ledger.now_ms());
        let new_order_wait = match (200..300).contains(&status) {
            true => None,
            false => usage::http_order_limit_wait(retry_after.as_deref(), &body),
        };
        Ok(Answer {
            status,
            usage,
            verdict,
            new_order_wait,
            body: body.to_vec(),
        })
    }

    /// The URL-encoded parameters, with recvWindow, timestamp and signature when signed.
    fn query_string(&self, call: &RestCall) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &call.params {
            query.append_pair(k, v);
        }
        if call.signed {
            query.append_pair("recvWindow", &self.recv_window_ms.to_string());
            query.append_pair("timestamp", &self.ledger.now_ms().to_string());
        }
        let mut query = query.finish();
        if call.signed {
            let signature = sign::rest_signature(self.credentials.signer(), &query, "");
            query.push_str("&signature=");
            // Hex passes unchanged; base64 (Ed25519) has `+`, `/` and `=` to encode.
            query.extend(form_urlencoded::byte_serialize(signature.as_bytes()));
        }
        query
    }

    /// With a separate market-data source (paper trading on a real market) the ledger's pools are
    /// the source's IP pools: what the local paper exchange counts is another server's, and is not
    /// reconciled with them (its 429/418 verdicts still apply).
    fn source_usage(&self, usage: Vec<ServerUsage>, from_source: bool) -> Vec<ServerUsage> {
        match self.market_rest_base.is_some() && !from_source {
            true => Vec::new(),
            false => usage,
        }
    }

    fn observe(&self, permit: &Permit, usage: Vec<ServerUsage>, verdict: Verdict) {
        self.ledger.observe(permit, &Observation { usage, verdict });
    }

    fn transport_error(&self, error: &reqwest::Error) -> SendError {
        // reqwest's Display can include the URL (and with it the signed query); keep only the host.
        let host = error
            .url()
            .and_then(|u| {
                u.host_str()
                    .map(|h| format!("{h}:{}", u.port_or_known_default().unwrap_or(0)))
            })
            .unwrap_or_else(|| "the exchange".into());
        if error.is_timeout() {
            SendError::Timeout(self.request_timeout.as_millis() as u64)
        } else if error.is_connect() {
            SendError::Connect {
                host,
                reason: root_cause(error),
            }
        } else {
            SendError::Transport(format!("{host}: {}", root_cause(error)))
        }
    }

    /// Fetches the server time and hands the offset to the ledger. Charged (weight 1).
    pub async fn sync_time(&self, wait: Duration) -> Result<i64, SendError> {
        let call = RestCall::new(HttpMethod::Get, "/api/v3/time", Lane::MarketData);
        let reply = self.rest(CLIENT_STRATEGY, wait, &call).await?;
        let after = self.ledger.now_ms();
        // The round trip starts when the request left, not when it began to wait for budget
        // (a wait through a ban or a full window would otherwise skew the offset by half of it).
        let before = reply.sent_at_ms;
        let server: super::wire::ServerTime = serde_json::from_slice(&reply.body)
            .map_err(|e| SendError::Transport(format!("unreadable server time (HTTP {}): {e}", reply.status)))?;
        // now_ms already includes the previous offset; correct it by the remaining error
        // against the midpoint of the round trip.
        let midpoint = before + (after - before) / 2;
        let offset = self.offset_ms.load(Ordering::Relaxed) + (server.server_time - midpoint);
        self.offset_ms.store(offset, Ordering::Relaxed);
        tracing::debug!(offset_ms = offset, round_trip_ms = after - before, "server time offset");
        self.ledger.set_server_offset_ms(offset);
        Ok(offset)
    }

    /// Opens a market-stream connection carrying `streams` (combined form).
    /// Each attempt reserves one connection from the ledger.
    pub async fn connect_market(&self, streams: &[String], wait: Duration) -> Result<WsStream, SendError> {
        let url = format!("{}/stream?streams={}", self.ws_base, streams.join("/"));
        self.connect_ws(&url, weights::STREAM_CONNECT, wait).await
    }

    async fn connect_ws(&self, url: &str, cost: Cost, wait: Duration) -> Result<WsStream, SendError> {
        let ticket = self.admit(EndpointClass::Streams, CLIENT_STRATEGY, Lane::MarketData)?;
        let permit = self.reserve(CLIENT_STRATEGY, Lane::MarketData, cost, wait).await?;
        let started = tokio::time::Instant::now();
        let (connected, failing) = self.connect_ws_reserved(url, &permit).await;
        ticket.finish(
            if failing || (connected.is_ok() && started.elapsed() > self.slow_call) {
                Outcome::Failure
            } else {
                Outcome::Success
            },
        );
        connected
    }

    /// The connection attempt, and whether it says the exchange is failing.
    async fn connect_ws_reserved(&self, url: &str, permit: &Permit) -> (Result<WsStream, SendError>, bool) {
        // No Nagle: an order frame written while an earlier frame is unacknowledged must not wait for the ACK.
        let connect = tokio_tungstenite::connect_async_with_config(url, None, true);
        let attempt = tokio::time::timeout(self.request_timeout, connect);
        let result = tokio::select! {
            result = attempt => result,
            _ = self.shutdown.wait() => return (Err(SendError::Stopped), false),
        };
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        match result {
            Err(_) => (Err(SendError::Timeout(self.request_timeout.as_millis() as u64)), true),
            Ok(Ok((stream, response))) => {
                let usage = header_usage(response.headers());
                self.observe(permit, usage, Verdict::Ok);
                (Ok(stream), false)
            }
            Ok(Err(tungstenite::Error::Http(response))) => {
                let status = response.status().as_u16();
                let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok());
                let body = response.body().as_deref().unwrap_or_default();
                let verdict = usage::classify(status, retry_after, body, self.ledger.now_ms());
                self.observe(permit, Vec::new(), verdict);
                let failing = exchange_failing(status, body);
                let error = SendError::Connect {
                    host,
                    reason: format!("HTTP {status} on the WebSocket upgrade"),
                };
                (Err(error), failing)
            }
            Ok(Err(error)) => (
                Err(SendError::Connect {
                    host,
                    reason: error.to_string(),
                }),
                true,
            ),
        }
    }

    /// Opens a WebSocket API connection (charged as the weight table says).
    pub async fn connect_ws_api(
        self: &Arc<Self>,
        wait: Duration,
    ) -> Result<(WsApiSender, SplitStream<WsStream>), SendError> {
        let stream = self.connect_ws(&self.ws_api_url, weights::WS_API_CONNECT, wait).await?;
        let (sink, stream) = stream.split();
        Ok((
            WsApiSender {
                gateway: Arc::clone(self),
                sink,
                next_id: 1,
                in_flight: Vec::new(),
            },
            stream,
        ))
    }
}

/// Which breaker guards a REST call.
fn endpoint_class(call: &RestCall) -> EndpointClass {
    const ACCOUNT: [&str; 4] = [
        "/api/v3/account",
        "/api/v3/myTrades",
        "/api/v3/rateLimit/order",
        "/api/v3/userDataStream",
    ];
    match call.lane {
        Lane::Order | Lane::Cancel => EndpointClass::Orders,
        Lane::MarketData if ACCOUNT.contains(&call.path) => EndpointClass::Account,
        Lane::MarketData => EndpointClass::MarketData,
    }
}

/// A breaker's refusal as the strategy API's `unavailable`.
fn unavailable(refused: Refused) -> SendError {
    let retry_after_ms = u64::try_from(refused.retry_after.as_millis()).unwrap_or(u64::MAX);
    SendError::Unavailable(ApiError::new(ErrorCode::Unavailable, refused.to_string()).with_retry_after(retry_after_ms))
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// An exchange's answer to one request, whichever way it went.
struct Answer {
    status: u16,
    usage: Vec<ServerUsage>,
    verdict: Verdict,
    /// A -1015: how long new orders must wait.
    new_order_wait: Option<Duration>,
    body: Vec<u8>,
}

/// The write half of a WebSocket API connection. Every request reserves its cost
/// first; answers are reconciled through [`WsApiSender::on_response`].
pub struct WsApiSender {
    gateway: Arc<Gateway>,
    sink: SplitSink<WsStream, Message>,
    next_id: u64,
    in_flight: Vec<(u64, Permit)>,
}

impl WsApiSender {
    /// Sends `method` with `params`; `signed` adds apiKey, timestamp and signature.
    /// Returns the request id.
    pub async fn request(
        &mut self,
        method: &str,
        mut params: serde_json::Map<String, serde_json::Value>,
        signed: bool,
        wait: Duration,
    ) -> Result<u64, SendError> {
        // The cost is judged on the caller's parameters, before credentials are added.
        let cost = weights::ws_api_cost(method, &serde_json::Value::Object(params.clone()))
            .map_err(|e| SendError::UnknownEndpoint(e.to_string()))?;
        let permit = self.gateway.reserve(CLIENT_STRATEGY, Lane::Order, cost, wait).await?;
        if signed {
            let creds = &self.gateway.credentials;
            params.insert("apiKey".into(), creds.api_key().into());
            params.insert("timestamp".into(), self.gateway.ledger.now_ms().into());
            let signature = sign::ws_api_signature(creds.signer(), &params);
            params.insert("signature".into(), signature.into());
        }
        let id = self.next_id;
        self.next_id += 1;
        let request = WsApiRequest {
            id: id.into(),
            method: method.to_string(),
            params,
        };
        let text = serde_json::to_string(&request).map_err(|e| SendError::Transport(e.to_string()))?;
        self.sink
            .send(Message::text(text))
            .await
            .map_err(|e| SendError::Transport(e.to_string()))?;
        self.in_flight.push((id, permit));
        Ok(id)
    }

    /// Reconciles an answer with the ledger (usage from `rateLimits`, 429/418 from the error).
    pub fn on_response(&mut self, response: &WsApiResponse) {
        let (usage, verdict) = usage::ws_api_observation(response, self.gateway.ledger.now_ms());
        let usage = self.gateway.source_usage(usage, false);
        let id = response.id.as_u64();
        match self.in_flight.iter().position(|(pending, _)| Some(*pending) == id) {
            Some(index) => {
                let (_, permit) = self.in_flight.swap_remove(index);
                self.gateway.observe(&permit, usage, verdict);
            }
            // An unmatched error still matters: a ban must stop everything.
            None if verdict != Verdict::Ok => self.gateway.ledger.enter_backoff(&verdict),
            None => {}
        }
    }

    pub async fn close(&mut self) {
        if let Err(e) = self.sink.close().await {
            tracing::debug!(error = %e, "closing the WebSocket API connection failed");
        }
    }
}

/// The usage headers of an HTTP response (REST or WebSocket upgrade); values that are not text are skipped.
fn header_usage(headers: &reqwest::header::HeaderMap) -> Vec<ServerUsage> {
    usage::parse_usage_headers(
        headers
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?))),
    )
}

/// A gateway to nowhere (port 1), for tests that need one but never send.
#[cfg(test)]
pub(crate) fn unconnected_gateway(api_key: &str) -> Result<Gateway, GatewayError> {
    use crate::ledger::{LedgerConfig, TokioClock};
    let ledger = Ledger::new(
        super::rate_limits::spot_defaults(),
        LedgerConfig::default(),
        Arc::new(TokioClock::new()),
    );
    let profile = Profile::custom(
        "http://127.0.0.1:1",
        "ws://127.0.0.1:1",
        "ws://127.0.0.1:1/x",
        super::profile::Credentials::new(api_key, "s"),
    );
    let config = GatewayConfig {
        recv_window_ms: 5000,
        request_timeout: Duration::from_secs(1),
        order_transport: OrderTransport::Rest,
        breaker: BreakerConfig::default(),
    };
    Gateway::new(&profile, ledger, config, Shutdown::default())
}

#[cfg(test)]
mod tests {
    use super::unconnected_gateway as gateway;

    #[tokio::test]
    async fn an_api_key_a_header_cannot_carry_is_refused_up_front() {
        let error = crate::error_chain::chain(&gateway("key\nwith a line break").err().expect("refused"));
        assert!(error.contains("API key"), "{error}");
        assert!(
            !error.contains("line break"),
            "the key itself stays out of the message: {error}"
        );
        let accepted = gateway("vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A").unwrap();
        assert!(accepted.api_key_header.is_sensitive());
    }

    #[tokio::test]
    async fn websocket_connections_send_without_nagle_delay() {
        use crate::ledger::{LedgerConfig, TokioClock};
        let sim = crate::sim::start(crate::sim::SimConfig::default(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let ledger = super::Ledger::new(
            crate::exchange::binance::rate_limits::spot_defaults(),
            LedgerConfig::default(),
            std::sync::Arc::new(TokioClock::new()),
        );
        let profile = super::Profile::paper(
            &sim.rest_url(),
            &sim.ws_url(),
            &sim.ws_api_url(),
            super::Credentials::new(crate::sim::PAPER_API_KEY, crate::sim::PAPER_API_SECRET),
        );
        let config = super::GatewayConfig {
            recv_window_ms: 5000,
            request_timeout: std::time::Duration::from_secs(5),
            order_transport: super::OrderTransport::WsApi,
            breaker: Default::default(),
        };
        let gateway = std::sync::Arc::new(super::Gateway::new(&profile, ledger, config, Default::default()).unwrap());
        let wait = std::time::Duration::from_secs(5);
        let market = gateway
            .connect_market(&["btcusdt@bookTicker".into()], wait)
            .await
            .unwrap();
        let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = market.get_ref() else {
            panic!("a plain TCP connection on loopback")
        };
        assert!(tcp.nodelay().unwrap());
        sim.shutdown().await;
    }

    #[test]
    fn the_client_must_be_created_within_a_runtime() {
        let error = gateway("k").err().expect("refused").to_string();
        assert!(error.contains("tokio runtime"), "{error}");
    }
}
