//! The gateway: the only holder of the HTTP client and the WebSocket connect
//! function. Every byte sent to the exchange passes here, and the only way to send
//! is: cost from the weight table (unknown → refused) → reserve in the ledger →
//! sign → send → reconcile the answer with the ledger.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::{DeserializeOwned, IgnoredAny};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::exchange::breaker::{BreakerConfig, Breakers, Caller, EndpointClass, Outcome, Refused, Ticket};
use crate::exchange::latency::Trigger;
use crate::exchange::stage_timing::Stage;
use crate::exchange::types::{ApiError, ErrorCode};
use crate::ledger::{Cost, Lane, Ledger, Observation, Permit, PoolKind, ServerUsage, Verdict};

use super::egress::Egress;
use super::http::{header_usage, HttpTransport};
use super::per_thread::PerThread;
use super::sign::Signing;
use super::ws_api::{request_frame, OrderTransport, WsApiClient};
use crate::exchange::binance::account::profile::{Credentials, Profile};
use crate::exchange::binance::errors::{GatewayError, Rejection, SendError};
use crate::exchange::binance::limits::endpoints::{self, Endpoint, HttpMethod};
use crate::exchange::binance::limits::{pools, usage};
use crate::exchange::binance::transport::{Answer, Body, Request, Transport};
use crate::exchange::binance::wire;

pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The name under which the client's own requests (start-up, resyncs, lookups) are charged.
pub const CLIENT_STRATEGY: &str = "_client";

/// An exchange's answer, already reconciled with the ledger.
#[derive(Debug)]
pub struct Reply<T> {
    pub status: u16,
    pub body: Body<T>,
    pub verdict: Verdict,
    /// Exchange time (ms) at which the request left, after any wait for budget.
    pub sent_at_ms: i64,
}

impl<T> Reply<T> {
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
    /// The egress IP groups and which strategy sends from which.
    pub egress: Egress,
    /// The account this gateway's key is (its order draws and counts are that account's pools).
    pub account: u16,
}

pub struct Gateway {
    /// One HTTP transport per egress IP group, bound to the group's address.
    http: Vec<HttpTransport>,
    egress: Egress,
    /// The account the credentials are: orders draw on `Scope::Account(account)`.
    account: u16,
    ledger: Ledger,
    credentials: Credentials,
    ws_base: String,
    /// Market data (public REST reads, market streams) comes from a separate server, charged to
    /// its own pools ([`pools::SOURCE_IP`]): paper trading on a real market.
    market_source: bool,
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
    order_sessions: Option<PerThread<Arc<WsApiClient>>>,
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
        let http = config
            .egress
            .groups()
            .iter()
            .map(|group| {
                HttpTransport::new(
                    profile.credentials.api_key(),
                    &profile.rest_url,
                    profile.market_rest_url.as_deref(),
                    config.request_timeout,
                    group.source,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Gateway {
            http,
            egress: config.egress,
            account: config.account,
            ledger,
            credentials: profile.credentials.clone(),
            ws_base: profile.ws_url.clone(),
            market_source: profile.market_rest_url.is_some(),
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

    /// Whether market data comes from a separate server with its own pools (see [`pools::SOURCE_IP`]).
    pub fn has_market_source(&self) -> bool {
        self.market_source
    }

    pub fn egress(&self) -> &Egress {
        &self.egress
    }

    /// The account whose key this gateway signs with.
    pub fn account(&self) -> u16 {
        self.account
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
    async fn new_order_hold(&self, request: &Request, wait: Duration) -> Result<(), SendError> {
        if request.lane != Lane::Order || !request.endpoint.row().adds_orders() {
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

    /// When a -1015 hold on this account's new orders ends (exchange ms), while one is in force.
    pub fn new_orders_held_until_ms(&self) -> Option<i64> {
        let until = self.new_orders_held_until_ms.load(Ordering::Relaxed);
        (until > self.ledger.now_ms()).then_some(until)
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

    /// Sends one request (no retries: that is the caller's policy) and reads its answer as `T`.
    /// Order entry goes over the strategy thread's WebSocket API connection when orders are
    /// configured to; everything else over HTTP.
    pub async fn send<T: DeserializeOwned>(
        &self,
        strategy: &str,
        wait: Duration,
        request: &Request,
    ) -> Result<Reply<T>, SendError> {
        let session = self.order_session(request);
        let transport = match (&session, request.endpoint.row().ws_api) {
            (Some(client), Some(method)) => Transport::WsApi { client, method },
            _ => http_route(request)?,
        };
        let class = Some(endpoint_class(request));
        self.send_in(class, strategy, wait, request, transport).await
    }

    /// Sends one request on `client`'s WebSocket API connection (opened, and charged, if needed).
    /// No breaker is asked: the connection was admitted as a stream when it was opened.
    pub async fn send_ws_api<T: DeserializeOwned>(
        &self,
        client: &WsApiClient,
        strategy: &str,
        wait: Duration,
        request: &Request,
    ) -> Result<Reply<T>, SendError> {
        let Some(method) = request.endpoint.row().ws_api else {
            return Err(SendError::NoRoute(format!(
                "{} has no WebSocket API form; nothing was sent",
                request.endpoint.name()
            )));
        };
        let transport = Transport::WsApi { client, method };
        self.send_in(None, strategy, wait, request, transport).await
    }

    /// One `GET /api/v3/ping` (weight 1, charged as the client's) counted by `class`'s breaker:
    /// the cheap request that probes a half-open breaker.
    pub async fn probe(&self, class: EndpointClass) {
        let request = Request::new(Endpoint::Ping, Lane::MarketData);
        let sent = match http_route(&request) {
            Ok(transport) => {
                self.send_in::<IgnoredAny>(Some(class), CLIENT_STRATEGY, Duration::ZERO, &request, transport)
                    .await
            }
            Err(error) => Err(error),
        };
        if let Err(e) = sent {
            tracing::debug!(class = class.as_str(), "circuit breaker probe: {e}");
        }
    }

    async fn send_in<T: DeserializeOwned>(
        &self,
        class: Option<EndpointClass>,
        strategy: &str,
        wait: Duration,
        request: &Request,
        transport: Transport<'_>,
    ) -> Result<Reply<T>, SendError> {
        // Drawn from the pools of the server the request goes to, as counted for the address it
        // leaves from: a separate market-data source has pools of its own.
        let group = self.egress.group_of(strategy);
        let pool_group = match &transport {
            Transport::Http { method, .. } if self.http[usize::from(group)].goes_to_source(*method, request) => {
                pools::SOURCE_GROUP
            }
            _ => group,
        };
        let cost = pools::for_account(
            pools::in_group(request.endpoint.cost(&request.param_pairs()), pool_group),
            self.account,
        );
        let asked_at = std::time::Instant::now();
        // Before the ledger: a call the breaker refuses is neither sent nor charged.
        let ticket = match class {
            Some(class) => Some(self.admit(class, strategy, request.lane)?),
            None => None,
        };
        self.new_order_hold(request, wait).await?;
        let permit = self.reserve(strategy, request.lane, cost, wait).await?;
        if let Some(trigger) = &request.trigger {
            trigger.reached(Stage::Reserved);
        }
        let ledger_wait = asked_at.elapsed();
        // Counted once the exchange has answered (or the send was cut short): building the
        // labels allocates, and nothing of it is needed before the request is on the wire.
        let count_sent = || {
            let labels = [
                ("strategy", strategy.to_string()),
                ("endpoint", request.endpoint.name()),
            ];
            metrics::histogram!("runner_ledger_wait_seconds", &labels).record(ledger_wait);
            metrics::counter!("runner_requests_total", &labels).increment(1);
            metrics::counter!("runner_request_weight_total", &labels).increment(cost.units_of(PoolKind::RequestWeight));
            labels
        };
        let sent_at = std::time::Instant::now();
        let sent_at_ms = self.ledger.now_ms();
        let started = tokio::time::Instant::now();
        let exchange = async {
            match transport {
                // Boxed, for the size of its future (see `over_ws_api`).
                Transport::WsApi { client, method } => {
                    Box::pin(self.over_ws_api::<T>(client, method, request, wait, group)).await
                }
                Transport::Http { method, path } => {
                    let signing = request.signed.then(|| self.signing());
                    self.http[usize::from(group)]
                        .send(method, path, request, signing, || self.ledger.now_ms())
                        .await
                }
            }
        };
        let answer = tokio::select! {
            answer = exchange => answer,
            // The request may already have reached the exchange: its outcome is unknown, not "not sent".
            _ = self.shutdown.wait() => {
                count_sent();
                return Err(SendError::Transport("shut down before the exchange answered".into()))
            }
        };
        let duration = sent_at.elapsed();
        let labels = count_sent();
        metrics::histogram!("runner_request_duration_seconds", &labels).record(duration);
        let failing = match &answer {
            Ok(answer) => {
                matches!(&answer.body, Body::Refused(rejection) if rejection.exchange_failing())
                    || started.elapsed() > self.slow_call
            }
            Err(error) => !matches!(
                error,
                SendError::Ledger(_) | SendError::Stopped | SendError::Unavailable(_)
            ),
        };
        if let Some(ticket) = ticket {
            ticket.finish(if failing { Outcome::Failure } else { Outcome::Success });
        }
        let answer = answer?;
        self.observe(&permit, pool_group, answer.usage, answer.verdict.clone());
        if let Some(hold) = answer.new_order_wait {
            self.hold_new_orders(hold);
        }
        let reply = Reply {
            status: answer.status,
            body: answer.body,
            verdict: answer.verdict,
            sent_at_ms,
        };
        if request.credit_on_success && reply.is_success() {
            self.ledger.credit(&permit, PoolKind::RequestWeight, u32::MAX);
            metrics::counter!("runner_request_weight_credited_total", &labels)
                .increment(cost.units_of(PoolKind::RequestWeight));
        }
        Ok(reply)
    }

    /// This thread's order connection, when `request` is order entry made from a strategy's thread,
    /// orders go over the WebSocket API, and the endpoint has a WebSocket API form.
    fn order_session(&self, request: &Request) -> Option<Arc<WsApiClient>> {
        // Order entry only: reads (an order's status) stay on REST.
        let row = request.endpoint.row();
        let read = matches!(row.rest, Some((HttpMethod::Get, _)));
        if !matches!(request.lane, Lane::Order | Lane::Cancel) || read || row.ws_api.is_none() {
            return None;
        }
        self.order_sessions.as_ref()?.get(|| Some(Arc::default()))
    }

    /// What signs this gateway's requests, as of now.
    fn signing(&self) -> Signing<'_> {
        Signing {
            api_key: self.credentials.api_key(),
            signer: self.credentials.signer(),
            recv_window_ms: self.recv_window_ms,
            timestamp_ms: self.ledger.now_ms(),
        }
    }

    /// One request over a WebSocket API connection (opened, and charged, if needed).
    async fn over_ws_api<T: DeserializeOwned>(
        &self,
        client: &WsApiClient,
        method: &'static str,
        request: &Request,
        wait: Duration,
        group: u16,
    ) -> Result<Answer<T>, SendError> {
        let connect = || async {
            // Boxed: a connection attempt's state (the handshake's, kilobytes) would otherwise sit
            // inside every request's future, REST ones too, and be copied each time one is moved.
            let stream = Box::pin(self.connect_ws(&self.ws_api_url, endpoints::WS_API_CONNECT, wait, group)).await?;
            tracing::debug!("WebSocket API connection opened");
            Ok(stream)
        };
        let frame = |id: u64| {
            let signing = request.signed.then(|| self.signing());
            request_frame(id, method, &request.param_pairs(), signing.as_ref())
        };
        let written = || request.trigger.as_ref().map_or((), Trigger::order_written);
        let response = client
            .exchange(
                connect,
                &self.ledger,
                pools::backoff_scope(group),
                frame,
                written,
                self.request_timeout,
            )
            .await?;
        // The WebSocket API is always the trading venue's: its counts are the venue's own pools'.
        Ok(Answer::from_ws_api(response, self.ledger.now_ms()))
    }

    /// Reconciles an answer from the server of `pool_group` (an egress group, or the market source).
    fn observe(&self, permit: &Permit, pool_group: u16, usage: Vec<ServerUsage>, verdict: Verdict) {
        let observation = Observation {
            usage: pools::usage_for_account(pools::usage_in_group(usage, pool_group), self.account),
            verdict,
            scope: pools::backoff_scope(pool_group),
        };
        self.ledger.observe(permit, &observation);
    }

    /// Fetches the server time and hands the offset to the ledger. Charged (weight 1).
    pub async fn sync_time(&self, wait: Duration) -> Result<i64, SendError> {
        let request = Request::new(Endpoint::Time, Lane::MarketData);
        let reply: Reply<wire::ServerTime> = self.send(CLIENT_STRATEGY, wait, &request).await?;
        let after = self.ledger.now_ms();
        // The round trip starts when the request left, not when it began to wait for budget
        // (a wait through a ban or a full window would otherwise skew the offset by half of it).
        let before = reply.sent_at_ms;
        let server = match reply.body {
            Body::Read(server) => server,
            Body::Unreadable(reason) => {
                return Err(SendError::Transport(format!(
                    "unreadable server time (HTTP {}): {reason}",
                    reply.status
                )))
            }
            Body::Refused(rejection) => {
                return Err(SendError::Transport(format!(
                    "no server time (HTTP {}): {}",
                    reply.status, rejection.message
                )))
            }
        };
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
    /// With a separate market-data source the streams are the source's, and so is the connection's budget.
    pub async fn connect_market(&self, streams: &[String], wait: Duration) -> Result<WsStream, SendError> {
        let url = format!("{}/stream?streams={}", self.ws_base, streams.join("/"));
        let group = if self.market_source { pools::SOURCE_GROUP } else { 0 };
        self.connect_ws(&url, endpoints::STREAM_CONNECT, wait, group).await
    }

    /// Opens a WebSocket charged to `group`'s pools, from that egress group's address (a market
    /// source's connections leave from the default one).
    async fn connect_ws(&self, url: &str, cost: Cost, wait: Duration, group: u16) -> Result<WsStream, SendError> {
        let ticket = self.admit(EndpointClass::Streams, CLIENT_STRATEGY, Lane::MarketData)?;
        let permit = self
            .reserve(CLIENT_STRATEGY, Lane::MarketData, pools::in_group(cost, group), wait)
            .await?;
        let started = tokio::time::Instant::now();
        let (connected, failing) = self.connect_ws_reserved(url, &permit, group).await;
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
    async fn connect_ws_reserved(&self, url: &str, permit: &Permit, group: u16) -> (Result<WsStream, SendError>, bool) {
        let source = self.egress.source(group);
        let attempt = tokio::time::timeout(self.request_timeout, open_ws(url, source));
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
                self.observe(permit, group, header_usage(response.headers()), Verdict::Ok);
                (Ok(stream), false)
            }
            Ok(Err(tungstenite::Error::Http(response))) => {
                let status = response.status().as_u16();
                let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok());
                let body = response.body().as_deref().unwrap_or_default();
                let verdict = usage::classify(status, retry_after, body, self.ledger.now_ms());
                self.observe(permit, group, Vec::new(), verdict);
                let failing = Rejection::from_http(status, body).exchange_failing();
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
}

/// Connects a WebSocket to `url`, from `source` when given (an egress group's address: the
/// socket is bound to it before connecting). No Nagle: an order frame written while an earlier
/// frame is unacknowledged must not wait for the ACK.
async fn open_ws(
    url: &str,
    source: Option<IpAddr>,
) -> Result<(WsStream, tungstenite::handshake::client::Response), tungstenite::Error> {
    let Some(source) = source else {
        return tokio_tungstenite::connect_async_with_config(url, None, true).await;
    };
    let parsed = url::Url::parse(url)
        .map_err(|e| tungstenite::Error::Url(tungstenite::error::UrlError::UnableToConnect(e.to_string())))?;
    let host = parsed
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = parsed.port_or_known_default().unwrap_or(443);
    let peer = tokio::net::lookup_host((host, port))
        .await?
        .find(|addr| addr.is_ipv4() == source.is_ipv4())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::AddrNotAvailable,
                format!("{host} has no address of the family of the egress address {source}"),
            )
        })?;
    let socket = match source {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(peer).await?;
    stream.set_nodelay(true)?;
    tokio_tungstenite::client_async_tls_with_config(url, stream, None, None).await
}

/// Which breaker guards a request.
fn endpoint_class(request: &Request) -> EndpointClass {
    use Endpoint::{Account, MyTrades, OrderRateLimits, UserDataSubscribe, UserDataSubscribeSignature};
    match (request.lane, request.endpoint) {
        (Lane::Order | Lane::Cancel, _) => EndpointClass::Orders,
        (Lane::MarketData, Account | MyTrades | OrderRateLimits | UserDataSubscribe | UserDataSubscribeSignature) => {
            EndpointClass::Account
        }
        (Lane::MarketData, _) => EndpointClass::MarketData,
    }
}

/// The HTTP route of `request`, when its endpoint has a REST form.
fn http_route(request: &Request) -> Result<Transport<'static>, SendError> {
    match request.endpoint.row().rest {
        Some((method, path)) => Ok(Transport::Http { method, path }),
        None => Err(SendError::NoRoute(format!(
            "{} has no REST form; nothing was sent",
            request.endpoint.name()
        ))),
    }
}

/// A breaker's refusal as the strategy API's `unavailable`.
fn unavailable(refused: Refused) -> SendError {
    let retry_after_ms = u64::try_from(refused.retry_after.as_millis()).unwrap_or(u64::MAX);
    SendError::Unavailable(ApiError::new(ErrorCode::Unavailable, refused.to_string()).with_retry_after(retry_after_ms))
}

/// A gateway to nowhere (port 1), for code that parses and routes exchange input but never
/// sends (unit tests, the parsers' fuzz test).
pub fn unconnected_gateway(api_key: &str) -> Result<Gateway, GatewayError> {
    use crate::ledger::{LedgerConfig, TokioClock};
    let ledger = Ledger::new(
        crate::exchange::binance::limits::pools::spot_defaults(),
        LedgerConfig::default(),
        Arc::new(TokioClock::new()),
    );
    let profile = Profile::custom(
        "http://127.0.0.1:1",
        "ws://127.0.0.1:1",
        "ws://127.0.0.1:1/x",
        crate::exchange::binance::account::profile::Credentials::new(api_key, "s"),
    );
    let config = GatewayConfig {
        recv_window_ms: 5000,
        request_timeout: Duration::from_secs(1),
        order_transport: OrderTransport::Rest,
        breaker: BreakerConfig::default(),
        egress: Egress::default(),
        account: 0,
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
        assert!(accepted.http[0].api_key_header().is_sensitive());
    }

    #[tokio::test]
    async fn websocket_connections_send_without_nagle_delay() {
        use crate::ledger::{LedgerConfig, TokioClock};
        let sim = crate::sim::start(crate::sim::SimConfig::default(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let ledger = super::Ledger::new(
            crate::exchange::binance::limits::pools::spot_defaults(),
            LedgerConfig::default(),
            std::sync::Arc::new(TokioClock::new()),
        );
        let profile = crate::exchange::binance::Profile::paper(
            &sim.rest_url(),
            &sim.ws_url(),
            &sim.ws_api_url(),
            crate::exchange::binance::Credentials::new(crate::sim::PAPER_API_KEY, crate::sim::PAPER_API_SECRET),
        );
        let config = super::GatewayConfig {
            recv_window_ms: 5000,
            request_timeout: std::time::Duration::from_secs(5),
            order_transport: super::OrderTransport::WsApi,
            breaker: Default::default(),
            egress: Default::default(),
            account: 0,
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
