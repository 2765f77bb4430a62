//! `BinanceVenue`: the [`Venue`] the strategy host talks to, wiring the gateway,
//! REST calls, market streams, local books, the user-data stream and the order
//! registry together.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use rust_decimal::prelude::FromPrimitive;
use rust_decimal::Decimal;

use crate::exchange::breaker::{BreakerConfig, BreakerStatus};
use crate::exchange::grid::to_f64;
use crate::exchange::market_cache::MarketCache;
use crate::exchange::risk::Approved;
use crate::exchange::stage_timing::Stage;
use crate::exchange::types::{
    ApiError, Balance, ClientOrderId, Depth, ErrorCode, Kline, ListRef, ListRequest, Order, OrderRef, OrderRequest,
    OrderStatus, PlacedList, Quote, ReplaceMode, StrategyId, SymbolInfo, Ticker, Trade,
};
use crate::exchange::{
    CallCtx, EventSink, Freshness, MarketAnswer, MarketData, MarketRequest, MarketSavings, Source, StreamKey, Venue,
};
use crate::ledger::{Ledger, LedgerStatus, PoolKind};

use super::account::profile::Profile;
use super::account::user_data::{self, UserDataHandler};
use super::errors::ClientError;
use super::limits;
use super::limits::endpoints::Endpoint;
use super::limits::{pools, usage};
use super::market_data::stream_router::Router;
use super::market_data::streams::{MarketStreams, MAX_STREAMS_PER_CONNECTION};
use super::orders::journal::{self, Journal};
use super::orders::journal_sync::JournalSync;
use super::orders::order_lists::{self, ValidList};
use super::orders::order_registry::OrderRegistry;
use super::orders::order_state::OrderUpdate;
use super::orders::symbols::{self, SymbolTable, ValidOrder};
use super::transport::api_calls::{Failure, Rest, RetryPolicy};
use super::transport::egress::Egress;
use super::transport::gateway::{Gateway, GatewayConfig, Shutdown, CLIENT_STRATEGY};
use super::transport::ws_api::OrderTransport;
use super::wire::{self, UserDataEvent};

/// How long the client's own lookups may wait for budget.
const LOOKUP_WAIT: Duration = Duration::from_secs(30);
const LOOKUP_FIRST_DELAY: Duration = Duration::from_millis(500);
const LOOKUP_MAX_DELAY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Where the order journal lives; `None` keeps orders in memory only.
    pub state_dir: Option<PathBuf>,
    pub recv_window_ms: u64,
    pub request_timeout: Duration,
    /// `limit` of the REST depth snapshot behind each local book (its weight follows the limit).
    pub depth_snapshot_limit: u32,
    /// Retries of idempotent reads.
    pub retry: RetryPolicy,
    /// After an unanswered placement, how long "no such order" answers are retried
    /// (the order may still arrive) before the order is declared REJECTED.
    pub unknown_order_grace: Duration,
    /// How long start-up calls may wait for budget.
    pub startup_wait: Duration,
    pub streams_per_connection: usize,
    /// Open the user-data stream on `start` (orders and balances pushed by the exchange).
    pub user_data: bool,
    /// When an order's journal record must be on the disk (see [`JournalSync`]).
    pub journal_sync: JournalSync,
    /// How strategies' orders and cancels reach the exchange (see [`OrderTransport`]).
    pub order_transport: OrderTransport,
    /// The circuit breakers' thresholds.
    pub breaker: BreakerConfig,
    /// The egress IP groups requests leave from, and which strategy uses which.
    pub egress: Egress,
    /// The account this venue's key is, of how many the process trades: its orders draw on
    /// `Scope::Account(account)`, and every account's order pools exist from the start.
    pub account: u16,
    pub accounts: u16,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            state_dir: None,
            recv_window_ms: 5000,
            request_timeout: Duration::from_secs(10),
            depth_snapshot_limit: 1000,
            retry: RetryPolicy::default(),
            unknown_order_grace: Duration::from_secs(30),
            startup_wait: Duration::from_secs(30),
            streams_per_connection: MAX_STREAMS_PER_CONNECTION,
            user_data: true,
            journal_sync: JournalSync::default(),
            order_transport: OrderTransport::default(),
            breaker: BreakerConfig::default(),
            egress: Egress::default(),
            account: 0,
            accounts: 1,
        }
    }
}

pub struct BinanceVenue {
    me: Weak<BinanceVenue>,
    name: String,
    options: ClientOptions,
    gateway: Arc<Gateway>,
    symbols: Arc<SymbolTable>,
    registry: OrderRegistry,
    balances: RwLock<BTreeMap<String, Balance>>,
    router: Arc<Router>,
    streams: MarketStreams,
    /// Market-data requests asked once: single flight, kept answers, savings per strategy.
    market: MarketCache,
    sink: RwLock<Option<Arc<dyn EventSink>>>,
    /// Order events learned before `start` gave us a sink (they must never be dropped).
    queued: Mutex<Vec<Order>>,
    user_stream_up: AtomicBool,
    /// Times the user stream has been subscribed; after the first, balances may have been missed.
    user_subscriptions: AtomicU64,
    /// Client ids with a lookup under way.
    resolving: Mutex<HashSet<String>>,
    started: AtomicBool,
    /// Found at start after an unclean end; reported, never touched.
    unknown_open_orders: Vec<wire::OrderAnswer>,
}

fn startup(what: &'static str) -> impl FnOnce(ApiError) -> ClientError {
    move |error| ClientError::Startup { what, error }
}

fn to_balances(list: &[wire::AccountBalance]) -> BTreeMap<String, Balance> {
    list.iter()
        .map(|b| {
            (
                b.asset.clone(),
                Balance {
                    free: to_f64(b.free),
                    locked: to_f64(b.locked),
                },
            )
        })
        .collect()
}

/// How long the start-up check for unknown open orders may wait for budget (it is skipped, with a
/// warning, rather than hold up the start).
const UNKNOWN_ORDERS_CHECK_WAIT: Duration = Duration::from_secs(5);

/// After a run that did not end cleanly, the records of its last orders may not have reached the disk
/// (the `background` journal policy syncs them just after the send; a power loss in between loses them).
/// Such an order may still be open on the exchange with no strategy knowing it: every open order the
/// journal does not know is reported, loudly, and left alone (it may also be another program's).
async fn open_orders_unknown_to(rest: &Rest<'_>, registry: &OrderRegistry) -> Vec<wire::OrderAnswer> {
    let open = match rest.open_orders(CLIENT_STRATEGY, UNKNOWN_ORDERS_CHECK_WAIT).await {
        Ok(open) => open,
        Err(error) => {
            tracing::warn!("the last run did not end cleanly, and checking the exchange for open orders the journal does not know failed: {error}");
            return Vec::new();
        }
    };
    let unknown: Vec<wire::OrderAnswer> = open
        .into_iter()
        .filter(|order| registry.get(&order.client_order_id).is_none())
        .collect();
    for order in &unknown {
        tracing::error!(
            client_id = %order.client_order_id,
            symbol = %order.symbol,
            side = order.side.as_deref().unwrap_or("?"),
            quantity = ?order.orig_qty,
            price = ?order.price,
            "an open order on the exchange is not in the order journal: the last run did not end cleanly and may \
             have lost its record, or another program placed it. No strategy owns it and the runner leaves it \
             alone: cancel it on the exchange if it is not wanted"
        );
    }
    unknown
}

/// The request weight of a market-data request, from the endpoint table.
fn market_weight(request: &MarketRequest) -> u32 {
    let limit;
    let (endpoint, params): (Endpoint, Vec<(&str, &str)>) = match request {
        MarketRequest::Ticker { symbol } => (Endpoint::TickerPrice, vec![("symbol", symbol)]),
        MarketRequest::BookTicker { symbol } => (Endpoint::TickerBook, vec![("symbol", symbol)]),
        MarketRequest::Depth { symbol, limit: l } => {
            limit = l.to_string();
            (Endpoint::Depth, vec![("symbol", symbol), ("limit", &limit)])
        }
        MarketRequest::Klines { symbol, limit: l, .. } => {
            limit = l.to_string();
            (Endpoint::Klines, vec![("symbol", symbol), ("limit", &limit)])
        }
        MarketRequest::Trades { symbol, limit: l } => {
            limit = l.to_string();
            (Endpoint::RecentTrades, vec![("symbol", symbol), ("limit", &limit)])
        }
    };
    let cost = endpoint.cost(&params);
    u32::try_from(cost.units_of(PoolKind::RequestWeight)).unwrap_or(u32::MAX)
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidOrder, message)
}

impl BinanceVenue {
    /// The transport every request of this venue goes through (budgeted by its ledger).
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Start-up: server time (offset into the ledger), exchangeInfo (limits into the
    /// ledger, filters into the symbol table), account (balances), all charged;
    /// then the order journal is replayed.
    pub async fn connect(profile: Profile, ledger: Ledger, options: ClientOptions) -> Result<Arc<Self>, ClientError> {
        profile.validate()?;
        let config = GatewayConfig {
            recv_window_ms: options.recv_window_ms,
            request_timeout: options.request_timeout,
            order_transport: options.order_transport,
            breaker: options.breaker.clone(),
            egress: options.egress.clone(),
            account: options.account,
        };
        // Every egress group's address has the same per-IP limits, counted apart; every account
        // the same order limits, counted apart.
        let groups = options.egress.count();
        let accounts = options.accounts.max(options.account.saturating_add(1));
        let pools_of = |limits| limits::pools::for_groups(limits::pools::for_accounts(limits, accounts), groups);
        ledger.set_limits(pools_of(ledger.limits()));
        let gateway = Arc::new(Gateway::new(&profile, ledger, config, Shutdown::default())?);
        let prober = Arc::clone(&gateway);
        gateway.spawn(async move {
            let stop = prober.shutdown().clone();
            let probe = |class| {
                let gateway = Arc::clone(&prober);
                async move { gateway.probe(class).await }
            };
            prober.breakers().probe_until(probe, stop.wait()).await;
        });
        let wait = options.startup_wait;
        let rest = Rest {
            gateway: &gateway,
            retry: options.retry,
        };
        rest.sync_time(wait).await.map_err(startup("GET /api/v3/time"))?;
        let info = rest
            .exchange_info(CLIENT_STRATEGY, wait)
            .await
            .map_err(startup("GET /api/v3/exchangeInfo"))?;
        let announced = usage::parse_rate_limits(&info.rate_limits);
        // With a separate market source, exchangeInfo came from it: its limits are its own pools';
        // the paper exchange's pools stay as configured.
        let announced = if gateway.has_market_source() {
            pools::limits_at_source(&announced)
        } else {
            announced
        };
        if !announced.is_empty() {
            // REST exchangeInfo announces request weight, orders and raw requests; the connection
            // limit is only in the WebSocket API's. Kinds not announced keep their documented pools.
            let mut limits = gateway.ledger().limits();
            limits.retain(|l| !announced.iter().any(|a| a.kind == l.kind && a.scope == l.scope));
            limits.extend(announced);
            gateway.ledger().set_limits(pools_of(limits));
        }
        let account = rest
            .account(CLIENT_STRATEGY, wait)
            .await
            .map_err(startup("GET /api/v3/account"))?;
        let journal = match &options.state_dir {
            Some(dir) => {
                let (journal, records) = Journal::open(dir).map_err(|e| ClientError::Journal(e.to_string()))?;
                Some((journal.with_sync(options.journal_sync), records))
            }
            None => None,
        };
        let ended_cleanly = journal
            .as_ref()
            .is_none_or(|(_, records)| journal::ended_cleanly(records));
        let registry = OrderRegistry::new(journal, gateway.now_ms());
        let unknown_open_orders = if ended_cleanly {
            Vec::new()
        } else {
            open_orders_unknown_to(&rest, &registry).await
        };
        let symbols = Arc::new(SymbolTable::from_entries(&info.symbols));
        let router = Arc::new(Router::new(
            Arc::clone(&gateway),
            Arc::clone(&symbols),
            options.depth_snapshot_limit,
        ));
        let streams = MarketStreams::new(
            Arc::clone(&gateway),
            Arc::clone(&router),
            options.streams_per_connection,
        );
        tracing::info!(
            venue = profile.venue_name(),
            symbols = info.symbols.len(),
            key = %profile.credentials.redacted_key(),
            "connected"
        );
        Ok(Arc::new_cyclic(|me| BinanceVenue {
            me: me.clone(),
            name: profile.venue_name(),
            options,
            gateway,
            symbols,
            registry,
            balances: RwLock::new(to_balances(&account.balances)),
            router,
            streams,
            market: MarketCache::new(),
            sink: RwLock::new(None),
            queued: Mutex::new(Vec::new()),
            user_stream_up: AtomicBool::new(false),
            user_subscriptions: AtomicU64::new(0),
            resolving: Mutex::new(HashSet::new()),
            started: AtomicBool::new(false),
            unknown_open_orders,
        }))
    }

    /// Open orders found at start that the order journal does not know (see [`open_orders_unknown_to`]).
    pub fn open_orders_unknown_to_the_journal(&self) -> &[wire::OrderAnswer] {
        &self.unknown_open_orders
    }

    fn rest(&self) -> Rest<'_> {
        Rest {
            gateway: &self.gateway,
            retry: self.options.retry,
        }
    }

    fn info(&self, symbol: &str) -> Result<&SymbolInfo, ApiError> {
        self.symbols
            .get(symbol)
            .ok_or_else(|| invalid(format!("unknown symbol {symbol:?}")))
    }

    fn emit_order(&self, order: Order) {
        match self.sink.read().as_ref() {
            Some(sink) => sink.order(order),
            None => self.queued.lock().push(order),
        }
    }

    /// Applies an update from any source; emits the order if it changed.
    fn apply(&self, update: &OrderUpdate) -> Option<Order> {
        let applied = self.registry.apply(update)?;
        if applied.first_fill {
            let account = crate::ledger::Scope::Account(self.options.account);
            self.gateway.ledger().order_filled(account, 1);
        }
        self.emit_order(applied.order.clone());
        Some(applied.order)
    }

    /// Applies an order answer (the REST layer only hands over answers that say how much filled).
    fn apply_answer(&self, answer: &wire::OrderAnswer) -> Option<Order> {
        self.apply(&OrderUpdate::from_answer(answer, self.gateway.now_ms())?)
    }

    /// Looks an order up by client id (charged, paced, respecting backoff) until its
    /// state is known; a PENDING order the exchange keeps not knowing is declared
    /// REJECTED after the grace period. Never re-sends it.
    fn spawn_lookup(&self, client_id: String) {
        let Some(venue) = self.me.upgrade() else { return };
        if !self.resolving.lock().insert(client_id.clone()) {
            return;
        }
        self.gateway.spawn(async move {
            venue.lookup(&client_id).await;
            venue.resolving.lock().remove(&client_id);
        });
    }

    async fn lookup(&self, client_id: &str) {
        let shutdown = self.gateway.shutdown().clone();
        let started = tokio::time::Instant::now();
        let mut delay = LOOKUP_FIRST_DELAY;
        // Set after waiting out an open circuit breaker: ask at once.
        let mut breaker_waited = false;
        loop {
            let Some(order) = self.registry.get(client_id) else {
                return;
            };
            let pending = order.status == OrderStatus::Pending;
            if pending && !std::mem::take(&mut breaker_waited) {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.wait() => return,
                }
                // The user stream may have told us meanwhile.
                if self
                    .registry
                    .get(client_id)
                    .is_none_or(|o| o.status != OrderStatus::Pending)
                {
                    return;
                }
            }
            let reference = OrderRef::ClientId(client_id.to_string());
            match self
                .rest()
                .query_order(CLIENT_STRATEGY, LOOKUP_WAIT, &order.symbol, &reference)
                .await
            {
                Ok(wire) => {
                    self.apply_answer(&wire);
                    return;
                }
                Err(e) if e.code == ErrorCode::Stopped => return,
                Err(e) if e.code == ErrorCode::Unavailable => {
                    // Nothing was sent: the lookup waits for the breaker (it is one of the runner's own
                    // requests, so it may go out as a probe once the cool-down is over).
                    let pause = Duration::from_millis(e.retry_after_ms.unwrap_or(100));
                    tracing::debug!(client_id, ?pause, "order lookup waits for the circuit breaker");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.wait() => return,
                    }
                    breaker_waited = true;
                    continue;
                }
                Err(e) if e.exchange_code == Some(-2013) && !pending => {
                    tracing::warn!(client_id, "order not found on the exchange during resync: {e}");
                    return;
                }
                Err(e) if e.exchange_code == Some(-2013) && started.elapsed() >= self.options.unknown_order_grace => {
                    let waited = started.elapsed().as_secs();
                    self.apply(&OrderUpdate::rejected(
                        client_id.to_string(),
                        format!(
                            "the placement went unanswered and the exchange still does not know the order after {waited} s"
                        ),
                        self.gateway.now_ms(),
                    ));
                    return;
                }
                Err(e) => {
                    let pause = e.retry_after_ms.map(Duration::from_millis).unwrap_or(delay);
                    tracing::debug!(client_id, ?pause, "order lookup failed: {e}");
                    if !pending {
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            _ = shutdown.wait() => return,
                        }
                    } else if pause > delay {
                        tokio::select! {
                            _ = tokio::time::sleep(pause - delay) => {}
                            _ = shutdown.wait() => return,
                        }
                    }
                }
            }
            delay = (delay * 2).min(LOOKUP_MAX_DELAY);
        }
    }

    /// Re-queries every order whose final state is not known (after a restart or a
    /// user-stream outage).
    fn resync_orders(&self) {
        for order in self.registry.unresolved() {
            self.spawn_lookup(order.client_id);
        }
    }

    /// Re-reads the account (charged) after a user-stream outage: balance pushes may have been missed.
    fn spawn_balance_resync(&self) {
        let Some(venue) = self.me.upgrade() else { return };
        self.gateway.spawn(async move {
            match venue.rest().account(CLIENT_STRATEGY, LOOKUP_WAIT).await {
                Ok(account) => {
                    *venue.balances.write() = to_balances(&account.balances);
                    if let Some(sink) = venue.sink.read().as_ref() {
                        sink.balances_changed();
                    }
                }
                Err(e) => tracing::warn!("balance resync after a user-stream outage failed: {e}"),
            }
        });
    }

    /// What a failed placement of the registered order `client_id` means for it: an unknown outcome
    /// is looked up; a request that never reached the exchange (or whose refusal is not the
    /// exchange's) leaves the order unsent; the exchange's refusal rejects it.
    fn unsent_or_rejected(&self, client_id: &ClientOrderId, error: &ApiError) {
        if error.code == ErrorCode::UnknownStatus {
            self.spawn_lookup(client_id.to_string());
        } else if matches!(
            error.code,
            ErrorCode::RateLimited
                | ErrorCode::Backoff
                | ErrorCode::Banned
                | ErrorCode::Stopped
                | ErrorCode::Network
                | ErrorCode::Unavailable
        ) || error.exchange_code.is_none()
        {
            self.registry.unsent(client_id.as_str(), error.code.as_str());
        } else {
            self.apply(&OrderUpdate::rejected(
                client_id.to_string(),
                error.message.clone(),
                self.gateway.now_ms(),
            ));
        }
    }

    /// Applies both steps of a cancel-replace as the exchange reported them; a summary of the two
    /// for the strategy's error message. A failed cancel is looked up (the order may have filled).
    fn apply_replace_outcome(
        &self,
        answer: &wire::CancelReplaceAnswer,
        old_client_id: &str,
        new_client_id: &ClientOrderId,
    ) -> String {
        let now = self.gateway.now_ms();
        let refusal = |value: &serde_json::Value| {
            serde_json::from_value::<wire::ErrorBody>(value.clone())
                .map(|e| format!("{} {}", e.code, e.msg))
                .unwrap_or_else(|_| value.to_string())
        };
        let cancel = match answer.cancel_result.as_str() {
            "SUCCESS" => {
                match serde_json::from_value::<wire::OrderAnswer>(answer.cancel_response.clone()) {
                    Ok(canceled) if self.apply_answer(&canceled).is_some() || canceled.fill().is_some() => {}
                    _ => self.spawn_lookup(old_client_id.to_string()),
                }
                format!("cancel of {old_client_id} SUCCESS")
            }
            other => {
                self.spawn_lookup(old_client_id.to_string());
                format!(
                    "cancel of {old_client_id} {other} ({})",
                    refusal(&answer.cancel_response)
                )
            }
        };
        let response = answer.new_order_response.as_ref();
        let placed = match answer.new_order_result.as_str() {
            "SUCCESS" => {
                match response.and_then(|v| serde_json::from_value::<wire::OrderAnswer>(v.clone()).ok()) {
                    Some(placed) if self.apply_answer(&placed).is_some() || placed.fill().is_some() => {}
                    _ => self.spawn_lookup(new_client_id.to_string()),
                }
                format!("new order {new_client_id} SUCCESS")
            }
            "FAILURE" => {
                let reason = response.map(refusal).unwrap_or_else(|| "no reason given".into());
                self.apply(&OrderUpdate::rejected(new_client_id.to_string(), reason.clone(), now));
                format!("new order {new_client_id} FAILURE ({reason})")
            }
            other => {
                let reason = format!("cancel-replace: new order {other} (the cancel failed)");
                self.apply(&OrderUpdate::rejected(new_client_id.to_string(), reason, now));
                format!("new order {new_client_id} {other}")
            }
        };
        format!("{cancel}; {placed}")
    }

    /// The streamed mid price of `symbol`, when there is one.
    fn mid_price(&self, symbol: &str) -> Option<Decimal> {
        self.router
            .quote(symbol)
            .and_then(|q| Decimal::from_f64((q.bid + q.ask) / 2.0))
    }

    /// Applies a list answer (placement or cancel): each order's report, and each order's list id. An
    /// order whose report does not say how much filled is looked up.
    fn apply_list_answer(&self, answer: &wire::ListAnswer) {
        for order in &answer.orders {
            self.apply_list_member(&order.client_order_id, order.order_id, answer.order_list_id);
        }
        for report in &answer.order_reports {
            if self.apply_answer(report).is_none() && report.fill().is_none() {
                let client_id = report.orig_client_order_id.as_ref().unwrap_or(&report.client_order_id);
                self.spawn_lookup(client_id.clone());
            }
        }
    }

    /// Tells a registered order its exchange id and its list's (from a list answer or `listStatus`).
    fn apply_list_member(&self, client_id: &str, order_id: u64, list_id: u64) {
        if self.registry.owns(client_id) {
            let update = OrderUpdate::list_member(client_id.to_string(), order_id, list_id, self.gateway.now_ms());
            self.apply(&update);
        }
    }

    fn owned(&self, strategy: &str, symbol: &str, order: &OrderRef) -> Result<Order, ApiError> {
        self.registry
            .find(order)
            .filter(|o| &*o.strategy == strategy && o.symbol == symbol)
            .ok_or_else(|| invalid(format!("no order {order:?} of this strategy on {symbol}")))
    }

    /// Sends a market-data request (charged to `strategy`, waiting at most `wait` for budget).
    async fn fetch_market(
        &self,
        strategy: &str,
        wait: Duration,
        request: &MarketRequest,
    ) -> Result<MarketData, ApiError> {
        let rest = self.rest();
        Ok(match request {
            MarketRequest::Ticker { symbol } => {
                MarketData::Ticker(Arc::new(rest.ticker(strategy, wait, symbol).await?))
            }
            MarketRequest::BookTicker { symbol } => {
                MarketData::Quote(Arc::new(rest.book_ticker(strategy, wait, symbol).await?))
            }
            MarketRequest::Depth { symbol, limit } => {
                let snapshot = rest.depth(strategy, wait, symbol, *limit).await?;
                let side = |levels: &[[Decimal; 2]]| levels.iter().map(|[p, q]| (to_f64(*p), to_f64(*q))).collect();
                MarketData::Depth(Arc::new(Depth {
                    symbol: symbol.clone(),
                    update_id: snapshot.last_update_id,
                    bids: side(&snapshot.bids),
                    asks: side(&snapshot.asks),
                }))
            }
            MarketRequest::Klines {
                symbol,
                interval,
                limit,
            } => {
                let rows = rest.klines(strategy, wait, symbol, interval, *limit).await?;
                // A fresh history: a kline stream of this symbol and interval continues from it.
                self.router.seed_klines(symbol, interval, &rows);
                MarketData::Klines(Arc::new(rows))
            }
            MarketRequest::Trades { symbol, limit } => {
                MarketData::Trades(Arc::new(rest.trades(strategy, wait, symbol, *limit).await?))
            }
        })
    }

    /// The answer the live streams hold: the synced local book for a depth within the snapshot's levels,
    /// the latest bookTicker of a connected stream, the candles a kline stream continued from a REST answer.
    /// Tickers and trades have none.
    fn stream_answer(&self, request: &MarketRequest) -> Option<MarketAnswer> {
        let data = match request {
            MarketRequest::Depth { symbol, limit } if *limit <= self.options.depth_snapshot_limit => {
                MarketData::Depth(Arc::new(self.router.book(symbol, *limit as usize)?))
            }
            MarketRequest::BookTicker { symbol } => MarketData::Quote(Arc::new(self.router.live_quote(symbol)?)),
            MarketRequest::Klines {
                symbol,
                interval,
                limit,
            } => MarketData::Klines(Arc::new(self.router.klines(symbol, interval, *limit as usize)?)),
            _ => return None,
        };
        Some(MarketAnswer {
            data,
            age_ms: 0,
            source: Source::Stream,
        })
    }

    /// The answer to `request` without sending it, if `freshness` allows one; not counted.
    fn local_answer(&self, request: &MarketRequest, freshness: Freshness) -> Option<MarketAnswer> {
        freshness
            .stream
            .then(|| self.stream_answer(request))
            .flatten()
            .or_else(|| self.market.fresh(request, freshness.max_age?))
    }

    /// One market-data call, by default freshness (shared in flight, never cached), unwrapped.
    async fn market_call<T>(
        &self,
        ctx: &CallCtx,
        request: MarketRequest,
        unwrap: impl FnOnce(MarketData) -> Option<T>,
    ) -> Result<T, ApiError> {
        let answer = self.market_data(ctx, request, Freshness::default()).await?;
        unwrap(answer.data).ok_or_else(|| ApiError::new(ErrorCode::Network, "market answer of another kind"))
    }

    /// The local book's exact top levels (for comparing with the exchange's).
    pub fn book_levels(&self, symbol: &str, levels: usize) -> Option<super::market_data::book::ExactLevels> {
        self.router.book_levels(symbol, levels)
    }

    /// Market frames skipped as malformed since start.
    pub fn malformed_frames(&self) -> u64 {
        self.router.malformed_frames()
    }

    /// Market frames decoded since start: one per frame, however many strategies get its event.
    pub fn market_frames_parsed(&self) -> u64 {
        self.router.frames_parsed()
    }

    /// True while the user-data stream is subscribed.
    pub fn user_stream_up(&self) -> bool {
        self.user_stream_up.load(Ordering::Relaxed)
    }
}

impl UserDataHandler for BinanceVenue {
    fn on_event(&self, event: UserDataEvent) {
        match event {
            UserDataEvent::ExecutionReport(report) => {
                let update = OrderUpdate::from_report(&report);
                if !self.registry.owns(&update.client_id) {
                    tracing::debug!(
                        client_id = update.client_id,
                        "update for an order this process does not own"
                    );
                    return;
                }
                self.apply(&update);
            }
            UserDataEvent::AccountPosition(position) => {
                {
                    let mut balances = self.balances.write();
                    for b in &position.balances {
                        balances.insert(
                            b.a.clone(),
                            Balance {
                                free: to_f64(b.f),
                                locked: to_f64(b.l),
                            },
                        );
                    }
                }
                if let Some(sink) = self.sink.read().as_ref() {
                    sink.balances_changed();
                }
            }
            UserDataEvent::BalanceUpdate(update) => {
                self.balances.write().entry(update.a.clone()).or_default().free += to_f64(update.d);
                if let Some(sink) = self.sink.read().as_ref() {
                    sink.balances_changed();
                }
            }
            UserDataEvent::ListStatus(status) => {
                for order in &status.orders {
                    self.apply_list_member(&order.c, order.i, status.g);
                }
            }
            UserDataEvent::StreamTerminated { .. } | UserDataEvent::Other => {}
        }
    }

    fn on_subscribed(&self) {
        self.user_stream_up.store(true, Ordering::Relaxed);
        self.resync_orders();
        if self.user_subscriptions.fetch_add(1, Ordering::Relaxed) > 0 {
            self.spawn_balance_resync();
        }
    }

    fn on_down(&self) {
        self.user_stream_up.store(false, Ordering::Relaxed);
    }
}

#[async_trait]
impl Venue for BinanceVenue {
    fn name(&self) -> &str {
        &self.name
    }

    fn now_ms(&self) -> i64 {
        self.gateway.now_ms()
    }

    fn symbol(&self, symbol: &str) -> Option<SymbolInfo> {
        self.symbols.get(symbol).cloned()
    }

    fn symbols(&self) -> Vec<String> {
        self.symbols.names()
    }

    async fn ticker(&self, ctx: &CallCtx, symbol: &str) -> Result<Ticker, ApiError> {
        let request = MarketRequest::Ticker { symbol: symbol.into() };
        self.market_call(ctx, request, |data| match data {
            MarketData::Ticker(t) => Some(Arc::unwrap_or_clone(t)),
            _ => None,
        })
        .await
    }

    async fn book_ticker(&self, ctx: &CallCtx, symbol: &str) -> Result<Quote, ApiError> {
        let request = MarketRequest::BookTicker { symbol: symbol.into() };
        self.market_call(ctx, request, |data| match data {
            MarketData::Quote(q) => Some(Arc::unwrap_or_clone(q)),
            _ => None,
        })
        .await
    }

    async fn depth(&self, ctx: &CallCtx, symbol: &str, limit: u32) -> Result<Depth, ApiError> {
        let request = MarketRequest::Depth {
            symbol: symbol.into(),
            limit,
        };
        self.market_call(ctx, request, |data| match data {
            MarketData::Depth(d) => Some(Arc::unwrap_or_clone(d)),
            _ => None,
        })
        .await
    }

    async fn klines(&self, ctx: &CallCtx, symbol: &str, interval: &str, limit: u32) -> Result<Vec<Kline>, ApiError> {
        let request = MarketRequest::Klines {
            symbol: symbol.into(),
            interval: interval.into(),
            limit,
        };
        self.market_call(ctx, request, |data| match data {
            MarketData::Klines(k) => Some(Arc::unwrap_or_clone(k)),
            _ => None,
        })
        .await
    }

    async fn trades(&self, ctx: &CallCtx, symbol: &str, limit: u32) -> Result<Vec<Trade>, ApiError> {
        let request = MarketRequest::Trades {
            symbol: symbol.into(),
            limit,
        };
        self.market_call(ctx, request, |data| match data {
            MarketData::Trades(t) => Some(Arc::unwrap_or_clone(t)),
            _ => None,
        })
        .await
    }

    fn market_local(
        &self,
        strategy: &StrategyId,
        request: &MarketRequest,
        freshness: Freshness,
    ) -> Option<MarketAnswer> {
        let answer = self.local_answer(request, freshness)?;
        self.market.record(strategy, answer.source, market_weight(request));
        Some(answer)
    }

    async fn market_data(
        &self,
        ctx: &CallCtx,
        request: MarketRequest,
        freshness: Freshness,
    ) -> Result<MarketAnswer, ApiError> {
        self.info(request.symbol())?;
        let weight = market_weight(&request);
        if let Some(answer) = freshness.stream.then(|| self.stream_answer(&request)).flatten() {
            self.market.record(&ctx.strategy, answer.source, weight);
            return Ok(answer);
        }
        self.market
            .get(&ctx.strategy, weight, &request, freshness.max_age, ctx.wait, |wait| {
                self.fetch_market(&ctx.strategy, wait, &request)
            })
            .await
    }

    fn market_savings(&self) -> Vec<(StrategyId, MarketSavings)> {
        self.market.savings()
    }

    fn validate(&self, request: &OrderRequest) -> Result<ValidOrder, ApiError> {
        let info = self.info(&request.symbol)?;
        symbols::validate(info, request, self.mid_price(&request.symbol))
    }

    /// With the streamed mid price, when there is one, as the market an OCO pair must stand around.
    fn validate_list(&self, request: &ListRequest) -> Result<ValidList, ApiError> {
        let info = self.info(&request.symbol)?;
        let reference = self.mid_price(&request.symbol);
        // Every order is on the list's symbol (checked before this runs).
        order_lists::validate_list(request, reference, |order| symbols::validate(info, order, reference))
    }

    async fn send_list(&self, ctx: &CallCtx, list: Approved<ValidList>) -> Result<PlacedList, ApiError> {
        let list = list.into_inner();
        let list_client_id = list
            .client_id()
            .cloned()
            .unwrap_or_else(|| self.registry.mint_client_id());
        let client_ids = list
            .client_ids()
            .try_map(|_, id| Ok::<_, ApiError>(id.clone().unwrap_or_else(|| self.registry.mint_client_id())))?;
        let named_ids = client_ids.named();
        let orders: Vec<(&ClientOrderId, &ValidOrder)> = named_ids
            .iter()
            .zip(list.orders().named())
            .map(|((_, id), (_, order))| (*id, order))
            .collect();
        // Held until the exchange has answered: the journal syncs the records after the send.
        let _registered =
            self.registry
                .register_list(&ctx.strategy, &list_client_id, &orders, self.gateway.now_ms())?;
        match self.rest().place_list(ctx, &list, &list_client_id, &client_ids).await {
            Ok(answer) => {
                self.apply_list_answer(&answer);
                let orders = client_ids.try_map(|_, id| {
                    self.registry
                        .get(id.as_str())
                        .ok_or_else(|| ApiError::new(ErrorCode::UnknownStatus, "order vanished from the registry"))
                })?;
                Ok(PlacedList {
                    list_id: Some(answer.order_list_id),
                    client_id: list_client_id.to_string(),
                    orders,
                })
            }
            Err(mut error) => {
                // Every order shares the list's fate: looked up, unsent or rejected together.
                for (_, client_id) in &named_ids {
                    self.unsent_or_rejected(client_id, &error);
                }
                if error.code == ErrorCode::UnknownStatus {
                    error.message = format!("order list {list_client_id} is PENDING: {}", error.message);
                }
                Err(error)
            }
        }
    }

    async fn cancel_list(&self, ctx: &CallCtx, symbol: &str, list: &ListRef) -> Result<Vec<Order>, ApiError> {
        let (list_client_id, orders) = self
            .registry
            .list_orders(&ctx.strategy, symbol, list)
            .ok_or_else(|| invalid(format!("no order list {list:?} of this strategy on {symbol}")))?;
        if orders.iter().all(|o| o.status.is_final()) {
            return Ok(orders);
        }
        let current = |orders: Vec<Order>| -> Vec<Order> {
            orders
                .into_iter()
                .map(|o| self.registry.get(&o.client_id).unwrap_or(o))
                .collect()
        };
        match self
            .rest()
            .cancel_list(&ctx.strategy, ctx.wait, symbol, &list_client_id)
            .await
        {
            Ok(answer) => {
                self.apply_list_answer(&answer);
                Ok(current(orders))
            }
            Err(error) => {
                // -2011 (already done) or an unknown outcome: find out each order's state.
                if error.exchange_code == Some(-2011) || error.code == ErrorCode::UnknownStatus {
                    for order in orders.iter().filter(|o| !o.status.is_final()) {
                        self.spawn_lookup(order.client_id.clone());
                    }
                }
                Err(error)
            }
        }
    }

    async fn send(
        &self,
        ctx: &CallCtx,
        client_id: Option<ClientOrderId>,
        order: Approved<ValidOrder>,
    ) -> Result<Order, ApiError> {
        let valid = order.into_inner();
        let client_id = client_id.unwrap_or_else(|| self.registry.mint_client_id());
        // Held until the exchange has answered: the journal syncs the record after the send.
        let _registered = self
            .registry
            .register(&ctx.strategy, &client_id, &valid, self.gateway.now_ms())?;
        ctx.stage_reached(Stage::Journaled);
        match self.rest().place_order(ctx, &valid, &client_id).await {
            Ok(wire) => {
                self.apply_answer(&wire);
                self.registry
                    .get(client_id.as_str())
                    .ok_or_else(|| ApiError::new(ErrorCode::UnknownStatus, "order vanished from the registry"))
            }
            Err(mut error) => {
                self.unsent_or_rejected(&client_id, &error);
                if error.code == ErrorCode::UnknownStatus {
                    error.message = format!("order {client_id} is PENDING: {}", error.message);
                }
                Err(error)
            }
        }
    }

    async fn cancel(&self, ctx: &CallCtx, symbol: &str, order: &OrderRef) -> Result<Order, ApiError> {
        let current = self.owned(&ctx.strategy, symbol, order)?;
        if current.status.is_final() {
            return Ok(current);
        }
        match self
            .rest()
            .cancel_order(&ctx.strategy, ctx.wait, symbol, &current.client_id)
            .await
        {
            Ok(wire) => {
                self.apply_answer(&wire);
                Ok(self.registry.get(&current.client_id).unwrap_or(current))
            }
            Err(error) => {
                // -2011 (already gone) or an unknown outcome: find out what the order's state is.
                if error.exchange_code == Some(-2011) || error.code == ErrorCode::UnknownStatus {
                    self.spawn_lookup(current.client_id);
                }
                Err(error)
            }
        }
    }

    async fn amend(&self, ctx: &CallCtx, symbol: &str, order: &OrderRef, quantity: f64) -> Result<Order, ApiError> {
        let current = self.owned(&ctx.strategy, symbol, order)?;
        if current.status.is_final() || current.status == OrderStatus::Pending {
            return Err(invalid(format!(
                "order {} is {}: only an order the exchange holds open can be amended",
                current.client_id, current.status
            )));
        }
        let info = self.info(symbol)?;
        let quantity = symbols::validate_amend(info, current.order_type, current.quantity, quantity)?;
        match self.rest().amend_order(ctx, symbol, &current.client_id, quantity).await {
            Ok(answer) => {
                self.apply(&OrderUpdate::from_amend(&answer, self.gateway.now_ms()));
                Ok(self.registry.get(&current.client_id).unwrap_or(current))
            }
            Err(error) => {
                // An unknown outcome, or an order that is no longer what we knew: find out its state.
                if error.code == ErrorCode::UnknownStatus || error.exchange_code == Some(-2038) {
                    self.spawn_lookup(current.client_id);
                }
                Err(error)
            }
        }
    }

    async fn send_replace(
        &self,
        ctx: &CallCtx,
        cancel: &OrderRef,
        mode: ReplaceMode,
        client_id: Option<ClientOrderId>,
        order: Approved<ValidOrder>,
    ) -> Result<Order, ApiError> {
        let valid = order.into_inner();
        let old = self.owned(&ctx.strategy, valid.symbol(), cancel).map_err(|error| {
            // What the exchange answers for an order it does not know; here nothing was sent.
            ApiError::new(
                ErrorCode::InvalidOrder,
                format!("Unknown order sent. ({}; nothing was sent)", error.message),
            )
            .with_exchange_code(-2011)
        })?;
        let client_id = client_id.unwrap_or_else(|| self.registry.mint_client_id());
        // Held until the exchange has answered: the journal syncs the record after the send.
        let _registered = self
            .registry
            .register(&ctx.strategy, &client_id, &valid, self.gateway.now_ms())?;
        let result = self
            .rest()
            .cancel_replace(ctx, &valid, &client_id, &old.client_id, mode)
            .await;
        let new_order = || {
            self.registry
                .get(client_id.as_str())
                .ok_or_else(|| ApiError::new(ErrorCode::UnknownStatus, "order vanished from the registry"))
        };
        match result {
            Ok(answer) => {
                self.apply_replace_outcome(&answer, &old.client_id, &client_id);
                new_order()
            }
            Err(Failure { error, data }) => {
                let outcome = data.and_then(|data| serde_json::from_value::<wire::CancelReplaceAnswer>(data).ok());
                if let Some(answer) = outcome {
                    let summary = self.apply_replace_outcome(&answer, &old.client_id, &client_id);
                    let mut error = error;
                    error.message = format!("{}: {summary}", error.message);
                    return Err(error);
                }
                self.unsent_or_rejected(&client_id, &error);
                if error.code == ErrorCode::UnknownStatus {
                    // The cancel may have happened too.
                    self.spawn_lookup(old.client_id);
                }
                Err(error)
            }
        }
    }

    async fn cancel_all(&self, ctx: &CallCtx, symbol: &str) -> Result<Vec<Order>, ApiError> {
        self.info(symbol)?;
        // Per-order cancels: DELETE openOrders would cancel other strategies' orders too.
        let refs: Vec<OrderRef> = self
            .registry
            .open_orders(&ctx.strategy, Some(symbol))
            .into_iter()
            .map(|o| OrderRef::ClientId(o.client_id))
            .collect();
        let results = futures_util::future::join_all(refs.iter().map(|r| self.cancel(ctx, symbol, r))).await;
        let mut canceled = Vec::new();
        let mut first_error = None;
        for result in results {
            match result {
                Ok(order) => canceled.push(order),
                Err(e) => {
                    tracing::warn!(strategy = %ctx.strategy, symbol, "cancel failed: {e}");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(error) if canceled.is_empty() => Err(error),
            _ => Ok(canceled),
        }
    }

    async fn get_order(&self, ctx: &CallCtx, symbol: &str, order: &OrderRef) -> Result<Order, ApiError> {
        let current = self.owned(&ctx.strategy, symbol, order)?;
        let current_enough =
            current.status.is_final() || (self.user_stream_up() && current.status != OrderStatus::Pending);
        if current_enough {
            return Ok(current);
        }
        let reference = OrderRef::ClientId(current.client_id.clone());
        let wire = self
            .rest()
            .query_order(&ctx.strategy, ctx.wait, symbol, &reference)
            .await?;
        self.apply_answer(&wire);
        Ok(self.registry.get(&current.client_id).unwrap_or(current))
    }

    fn open_orders(&self, strategy: &str, symbol: Option<&str>) -> Vec<Order> {
        self.registry.open_orders(strategy, symbol)
    }

    fn balances(&self) -> BTreeMap<String, Balance> {
        self.balances.read().clone()
    }

    fn quote(&self, symbol: &str) -> Option<Quote> {
        self.router.quote(symbol)
    }

    fn book(&self, symbol: &str, levels: usize) -> Option<Depth> {
        self.router.book(symbol, levels)
    }

    async fn set_subscriptions(&self, strategy: &StrategyId, streams: Vec<StreamKey>) -> Result<(), ApiError> {
        if let Some(unknown) = streams.iter().find(|k| self.symbols.get(&k.symbol).is_none()) {
            return Err(invalid(format!("unknown symbol {:?}", unknown.symbol)));
        }
        if self.gateway.shutdown().is_triggered() {
            return Err(ApiError::new(ErrorCode::Stopped, "the client is shutting down"));
        }
        self.streams.set(strategy, streams);
        Ok(())
    }

    fn ledger_status(&self, strategy: &str) -> LedgerStatus {
        let mut status = self.gateway.ledger().status(strategy);
        let egress = self.gateway.egress();
        // Named only when groups are configured: a single unnamed group stays plain `ip0`.
        if egress.groups().iter().any(|g| g.source.is_some()) {
            let scopes: Vec<crate::ledger::Scope> = status.pools.iter().map(|p| p.scope).collect();
            for scope in scopes {
                if let crate::ledger::Scope::Ip(n) = scope {
                    if let Some(name) = egress.name(n) {
                        status.name_scope(scope, name);
                    }
                }
            }
        }
        // A -1015 ("too many new orders", a 429) holds this account's new orders only: its order
        // pools say so, unless a back-off that ends later is already shown.
        if let Some(until_ms) = self.gateway.new_orders_held_until_ms() {
            let account = crate::ledger::Scope::Account(self.options.account);
            for pool in status.pools.iter_mut().filter(|p| p.scope == account) {
                if pool.backoff_until_ms.is_none_or(|known| known < until_ms) {
                    pool.backoff = crate::ledger::BackoffState::Throttled;
                    pool.backoff_until_ms = Some(until_ms);
                }
            }
        }
        status
    }

    fn breakers(&self) -> Vec<BreakerStatus> {
        self.gateway.breakers().snapshot()
    }

    async fn start(&self, sink: Arc<dyn EventSink>) -> Result<(), ApiError> {
        self.router.set_sink(Arc::clone(&sink));
        {
            let mut slot = self.sink.write();
            *slot = Some(Arc::clone(&sink));
            for order in self.queued.lock().drain(..) {
                sink.order(order);
            }
        }
        if self.started.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        if self.options.user_data {
            if let Some(venue) = self.me.upgrade() {
                self.gateway.spawn(user_data::run(Arc::clone(&self.gateway), venue));
            }
        }
        // Orders restored from the journal whose final state is unknown.
        self.resync_orders();
        Ok(())
    }

    async fn shutdown(&self) {
        self.gateway.shutdown().trigger();
        self.registry.close(self.gateway.now_ms());
    }
}
