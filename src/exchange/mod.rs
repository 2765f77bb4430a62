//! The exchange boundary.
//!
//! The Lua host talks to a [`Venue`]; a venue adapter (today Binance spot, in
//! [`binance`]) is the only code that holds HTTP and WebSocket handles, and every
//! request it sends first reserves its cost in the shared [`crate::ledger::Ledger`].

pub mod accounts;
pub mod binance;
pub mod breaker;
pub mod grid;
pub mod latency;
pub(crate) mod market_cache;
pub mod risk;
pub mod stage_timing;
pub mod types;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::ledger::LedgerStatus;
use binance::orders::order_lists::{self, ValidList};
use binance::orders::symbols::ValidOrder;
pub use market_cache::{Freshness, MarketAnswer, MarketData, MarketRequest, MarketSavings, Source};
use risk::Approved;
pub use types::*;

/// The refusal of a call a venue does not support: nothing was sent.
pub fn unsupported(venue: &str, call: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidOrder,
        format!("{call} is not supported by the {venue} venue; nothing was sent"),
    )
}

/// Who is calling and how long it may wait for budget.
#[derive(Debug, Clone)]
pub struct CallCtx {
    pub strategy: StrategyId,
    /// How long to wait for ledger budget before failing with `rate_limited`.
    /// Zero means "fail at once if the budget is not there now".
    pub wait: Duration,
    /// The market event this call was made for, if any: an order placed for it records its
    /// tick-to-order latency there once it is written to the exchange.
    pub trigger: Option<latency::Trigger>,
}

impl CallCtx {
    pub fn new(strategy: impl Into<StrategyId>, wait: Duration) -> CallCtx {
        CallCtx {
            strategy: strategy.into(),
            wait,
            trigger: None,
        }
    }

    /// Notes `stage` of this call's order (see [`stage_timing`]) if it was made for a market event.
    pub fn stage_reached(&self, stage: stage_timing::Stage) {
        if let Some(trigger) = &self.trigger {
            trigger.reached(stage);
        }
    }
}

/// A market stream a strategy can ask for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamKind {
    /// Best bid/ask (`<s>@bookTicker`), delivered as `on_book`.
    Book,
    /// The host-maintained local order book (`<s>@depth@100ms` + REST snapshot), delivered as `on_depth`.
    Depth,
    /// Trades (`<s>@trade`), delivered as `on_trade`.
    Trade,
    /// Candles (`<s>@kline_<interval>`), delivered as `on_kline`; holds the interval, e.g. "1m".
    Kline(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub symbol: String,
    pub kind: StreamKind,
}

/// Market events pushed by the venue's streams.
#[derive(Debug, Clone)]
pub enum MarketEvent {
    Book(Quote),
    Trade(Trade),
    /// The local book of this symbol changed; pull it with [`Venue::book`].
    DepthChanged(Arc<str>),
    Kline {
        symbol: Arc<str>,
        interval: Arc<str>,
        kline: Kline,
        closed: bool,
    },
}

/// Where a venue delivers what its streams produce. Implemented by the engine,
/// which routes each event to the strategies that asked for it.
pub trait EventSink: Send + Sync + 'static {
    fn market(&self, event: MarketEvent);
    /// `event`, read from the exchange at `received`: where its tick-to-order latency starts.
    fn market_received(&self, event: MarketEvent, received: Instant) {
        let _ = received;
        self.market(event);
    }
    /// Events read together (frames already waiting behind one another), in order, each with when it was
    /// read; the sink may hand them on in one go. Leaves `events` empty.
    fn market_batch(&self, events: &mut Vec<(MarketEvent, Instant)>) {
        for (event, received) in events.drain(..) {
            self.market_received(event, received);
        }
    }
    /// An order changed; `order.strategy` owns it. Must never be dropped.
    fn order(&self, order: Order);
    /// Balances changed (the latest view is in [`Venue::balances`]).
    fn balances_changed(&self) {}
}

/// Everything the strategy host needs from an exchange.
#[async_trait]
pub trait Venue: Send + Sync + 'static {
    /// "binance-paper", "binance-testnet", "binance-live", ...
    fn name(&self) -> &str;

    /// Milliseconds, synchronised to the exchange's clock.
    fn now_ms(&self) -> i64;

    /// Cached trading rules of a symbol; `None` for a symbol the exchange does not list.
    fn symbol(&self, symbol: &str) -> Option<SymbolInfo>;

    /// Every listed symbol's name.
    fn symbols(&self) -> Vec<String>;

    async fn ticker(&self, ctx: &CallCtx, symbol: &str) -> Result<Ticker, ApiError>;
    async fn book_ticker(&self, ctx: &CallCtx, symbol: &str) -> Result<Quote, ApiError>;
    async fn depth(&self, ctx: &CallCtx, symbol: &str, limit: u32) -> Result<Depth, ApiError>;
    async fn klines(&self, ctx: &CallCtx, symbol: &str, interval: &str, limit: u32) -> Result<Vec<Kline>, ApiError>;
    async fn trades(&self, ctx: &CallCtx, symbol: &str, limit: u32) -> Result<Vec<Trade>, ApiError>;

    /// A market-data answer without a request, if there is one now: a live stream's state (when
    /// `freshness.stream`) or a kept answer within `freshness.max_age`. Never waits.
    fn market_local(
        &self,
        strategy: &StrategyId,
        request: &MarketRequest,
        freshness: Freshness,
    ) -> Option<MarketAnswer> {
        let _ = (strategy, request, freshness);
        None
    }

    /// A market-data answer: locally if [`Venue::market_local`] has one, else by a request (shared with
    /// identical requests in flight). This default sends every call; venues that coalesce override it.
    async fn market_data(
        &self,
        ctx: &CallCtx,
        request: MarketRequest,
        freshness: Freshness,
    ) -> Result<MarketAnswer, ApiError> {
        let _ = freshness;
        let data = match &request {
            MarketRequest::Ticker { symbol } => MarketData::Ticker(Arc::new(self.ticker(ctx, symbol).await?)),
            MarketRequest::BookTicker { symbol } => MarketData::Quote(Arc::new(self.book_ticker(ctx, symbol).await?)),
            MarketRequest::Depth { symbol, limit } => {
                MarketData::Depth(Arc::new(self.depth(ctx, symbol, *limit).await?))
            }
            MarketRequest::Klines {
                symbol,
                interval,
                limit,
            } => MarketData::Klines(Arc::new(self.klines(ctx, symbol, interval, *limit).await?)),
            MarketRequest::Trades { symbol, limit } => {
                MarketData::Trades(Arc::new(self.trades(ctx, symbol, *limit).await?))
            }
        };
        Ok(MarketAnswer {
            data,
            age_ms: 0,
            source: Source::Exchange,
        })
    }

    /// Every strategy's market-data calls and what coalescing saved (empty for a venue that does not coalesce).
    fn market_savings(&self) -> Vec<(StrategyId, MarketSavings)> {
        Vec::new()
    }

    /// Puts `request` exactly on its symbol's grid and checks the symbol's filters; sends nothing.
    fn validate(&self, request: &OrderRequest) -> Result<ValidOrder, ApiError>;

    /// Sends an order the risk limits approved, for `ctx.strategy`. The client order id is minted
    /// (if not given) and journalled before anything is sent; an unknown outcome is resolved by
    /// the venue and reported through [`EventSink::order`].
    async fn send(
        &self,
        ctx: &CallCtx,
        client_id: Option<ClientOrderId>,
        order: Approved<ValidOrder>,
    ) -> Result<Order, ApiError>;

    /// Places an order: [`Venue::validate`], the risk limits, [`Venue::send`]. A venue on its own
    /// has no operator limits; [`risk::RiskGuard`] in front of it applies them.
    async fn place(&self, ctx: &CallCtx, request: OrderRequest) -> Result<Order, ApiError> {
        let valid = self.validate(&request)?;
        let approved = risk::RiskLimits::default().approve(self, &ctx.strategy, valid)?;
        self.send(ctx, request.client_id, approved).await
    }
    async fn cancel(&self, ctx: &CallCtx, symbol: &str, order: &OrderRef) -> Result<Order, ApiError>;

    /// Lowers the quantity of this strategy's open order, keeping its place in the queue (Binance's
    /// amend keep-priority). A quantity that is not lower is refused with `invalid_order`, nothing sent.
    /// It cannot add risk, so no operator limit applies. A venue that cannot amend refuses it.
    async fn amend(&self, ctx: &CallCtx, symbol: &str, order: &OrderRef, quantity: f64) -> Result<Order, ApiError> {
        let _ = (ctx, symbol, order, quantity);
        Err(unsupported(self.name(), "orders.amend"))
    }

    /// Cancels `cancel` and places an approved order in one request (Binance's cancel-replace), for
    /// `ctx.strategy`; `mode` says whether the new order is placed when the cancel fails. The new order
    /// is journalled before anything is sent, and both orders' outcomes go through [`EventSink::order`].
    /// Answers the new order. A venue that cannot replace refuses it.
    async fn send_replace(
        &self,
        ctx: &CallCtx,
        cancel: &OrderRef,
        mode: ReplaceMode,
        client_id: Option<ClientOrderId>,
        order: Approved<ValidOrder>,
    ) -> Result<Order, ApiError> {
        let _ = (ctx, cancel, mode, client_id, order);
        Err(unsupported(self.name(), "orders.replace"))
    }

    /// Cancel-replace: [`Venue::validate`] the new order, the risk limits (the canceled order's place
    /// among the open ones is counted free), [`Venue::send_replace`].
    async fn replace(
        &self,
        ctx: &CallCtx,
        cancel: &OrderRef,
        mode: ReplaceMode,
        request: OrderRequest,
    ) -> Result<Order, ApiError> {
        let valid = self.validate(&request)?;
        let approved = risk::RiskLimits::default().approve_replacing(self, &ctx.strategy, valid)?;
        self.send_replace(ctx, cancel, mode, request.client_id, approved).await
    }

    /// Puts every order of a list on its symbol's grid and checks the list's rules (see
    /// [`order_lists::validate_list`]); sends nothing. This default knows no market price to check an
    /// OCO pair's prices around.
    fn validate_list(&self, request: &ListRequest) -> Result<ValidList, ApiError> {
        order_lists::validate_list(request, None, |order| self.validate(order))
    }

    /// Sends an order list the risk limits approved, for `ctx.strategy`: the list's and every order's
    /// client ids are minted (if not given) and journalled before anything is sent; an unknown outcome
    /// is looked up, never re-sent, and every order's changes go through [`EventSink::order`].
    /// A venue that cannot place lists refuses it.
    async fn send_list(&self, ctx: &CallCtx, list: Approved<ValidList>) -> Result<PlacedList, ApiError> {
        let _ = (ctx, list);
        Err(unsupported(self.name(), "orders.place_list"))
    }

    /// Places an order list: [`Venue::validate_list`], the risk limits, [`Venue::send_list`].
    async fn place_list(&self, ctx: &CallCtx, request: ListRequest) -> Result<PlacedList, ApiError> {
        let valid = self.validate_list(&request)?;
        let approved = risk::RiskLimits::default().approve_list(self, &ctx.strategy, valid)?;
        self.send_list(ctx, approved).await
    }

    /// Cancels this strategy's order list `list` on `symbol` (every open order of it); answers its orders.
    async fn cancel_list(&self, ctx: &CallCtx, symbol: &str, list: &ListRef) -> Result<Vec<Order>, ApiError> {
        let _ = (ctx, symbol, list);
        Err(unsupported(self.name(), "orders.cancel_list"))
    }

    /// Cancels this strategy's open orders on `symbol` (never another strategy's).
    async fn cancel_all(&self, ctx: &CallCtx, symbol: &str) -> Result<Vec<Order>, ApiError>;
    /// From the venue's own order state when current, else a charged REST query.
    async fn get_order(&self, ctx: &CallCtx, symbol: &str, order: &OrderRef) -> Result<Order, ApiError>;

    /// This strategy's open orders, from the venue's order state (no request).
    fn open_orders(&self, strategy: &str, symbol: Option<&str>) -> Vec<Order>;
    /// The account's balances, from the venue's account state (no request).
    fn balances(&self) -> BTreeMap<String, Balance>;
    /// The balances of the account `strategy` trades on (a venue of one account: [`Venue::balances`]).
    fn balances_of(&self, strategy: &str) -> BTreeMap<String, Balance> {
        let _ = strategy;
        self.balances()
    }
    /// Latest streamed best bid/ask, if subscribed and received.
    fn quote(&self, symbol: &str) -> Option<Quote>;
    /// The local order book, `None` while it is not in sync.
    fn book(&self, symbol: &str, levels: usize) -> Option<Depth>;

    /// Sets the streams this strategy wants (replacing its previous set). The venue
    /// reference-counts streams across strategies and (un)subscribes the difference,
    /// paced within the stream limits.
    async fn set_subscriptions(&self, strategy: &StrategyId, streams: Vec<StreamKey>) -> Result<(), ApiError>;

    /// The shared ledger's view, with `strategy`'s own usage.
    fn ledger_status(&self, strategy: &str) -> LedgerStatus;

    /// The venue's circuit breakers, one per endpoint class (none for a venue without them).
    fn breakers(&self) -> Vec<breaker::BreakerStatus> {
        Vec::new()
    }

    /// Starts the streams (market and user data) delivering into `sink`.
    async fn start(&self, sink: Arc<dyn EventSink>) -> Result<(), ApiError>;

    /// Stops streams and flushes journals; pending calls fail with `stopped`.
    async fn shutdown(&self);
}
