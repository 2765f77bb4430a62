//! Operator-set risk limits in front of any venue: an order over a limit is refused before it
//! reaches the ledger, the journal or the exchange. Strategies can neither see nor change the
//! limits; a runaway loop or a sizing bug costs nothing but an `invalid_order` error. The operator
//! can also halt every new order at once (cancels still go out).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::Decimal;

use super::binance::orders::order_lists::ValidList;
use super::binance::orders::symbols::ValidOrder;
use super::{
    ApiError, Balance, CallCtx, ClientOrderId, Depth, ErrorCode, EventSink, Freshness, Kline, ListRef, ListRequest,
    MarketAnswer, MarketRequest, MarketSavings, Order, OrderRef, OrderRequest, PlacedList, Quote, ReplaceMode, Side,
    StrategyId, StreamKey, SymbolInfo, Ticker, Trade, Venue,
};
use crate::exchange::stage_timing::Stage;
use crate::ledger::LedgerStatus;

/// What one strategy may send.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RiskLimits {
    /// Largest value of one order, per quote asset (`USDT` → 1000 caps every …USDT order at
    /// 1000 USDT). Orders in a quote asset not listed are not capped.
    pub max_order_notional: BTreeMap<String, f64>,
    /// Most orders one strategy may have open (or in flight) at once.
    pub max_open_orders: Option<usize>,
}

impl RiskLimits {
    pub fn is_empty(&self) -> bool {
        self.max_order_notional.is_empty() && self.max_open_orders.is_none()
    }

    /// Approves `order` from `strategy`, or refuses it if it breaks a limit, judged with `venue`'s
    /// own state (symbol rules, latest quote, the strategy's open orders); sends nothing.
    pub fn approve<V: Venue + ?Sized>(
        &self,
        venue: &V,
        strategy: &str,
        order: ValidOrder,
    ) -> Result<Approved<ValidOrder>, ApiError> {
        self.approve_freeing(venue, strategy, order, 0)
    }

    /// [`approve`](Self::approve) for an order that replaces one of the strategy's open orders in the
    /// same request (cancel-replace): the replaced order's place among the open ones is counted free.
    pub fn approve_replacing<V: Venue + ?Sized>(
        &self,
        venue: &V,
        strategy: &str,
        order: ValidOrder,
    ) -> Result<Approved<ValidOrder>, ApiError> {
        self.approve_freeing(venue, strategy, order, 1)
    }

    fn approve_freeing<V: Venue + ?Sized>(
        &self,
        venue: &V,
        strategy: &str,
        order: ValidOrder,
        freed: usize,
    ) -> Result<Approved<ValidOrder>, ApiError> {
        self.check_open_orders(venue, strategy, 1, freed)?;
        self.check_notional(venue, order.symbol(), "order", || notional(venue, &order))?;
        Ok(Approved(order))
    }

    /// Approves an order list: each of its orders counts as an open order, and its value is what can
    /// fill (see [`ValidList::notional`]: an OCO pair trades one order, an OTO both).
    pub fn approve_list<V: Venue + ?Sized>(
        &self,
        venue: &V,
        strategy: &str,
        list: ValidList,
    ) -> Result<Approved<ValidList>, ApiError> {
        self.check_open_orders(venue, strategy, list.len(), 0)?;
        self.check_notional(venue, list.symbol(), "order list", || {
            list.notional(|order| notional(venue, order))
        })?;
        Ok(Approved(list))
    }

    /// Refuses `adding` more open orders past `max_open_orders` (`freed` of the open ones go in the same request).
    fn check_open_orders<V: Venue + ?Sized>(
        &self,
        venue: &V,
        strategy: &str,
        adding: usize,
        freed: usize,
    ) -> Result<(), ApiError> {
        let Some(max) = self.max_open_orders else {
            return Ok(());
        };
        let open = venue.open_orders(strategy, None).len().saturating_sub(freed);
        if open + adding > max {
            let what = if adding == 1 {
                String::new()
            } else {
                format!(" and {adding} more would be placed")
            };
            return Err(refused(format!(
                "{strategy} has {open} open orders{what}, and may have at most {max} (max_open_orders)"
            )));
        }
        Ok(())
    }

    /// Refuses `what` on `symbol` worth more than `max_order_notional` of its quote asset.
    fn check_notional<V: Venue + ?Sized>(
        &self,
        venue: &V,
        symbol: &str,
        what: &str,
        value: impl FnOnce() -> Option<Decimal>,
    ) -> Result<(), ApiError> {
        if self.max_order_notional.is_empty() {
            return Ok(());
        }
        let Some(info) = venue.symbol(symbol) else {
            // The venue refuses unknown symbols itself, with its own message.
            return Ok(());
        };
        let Some(&max) = self.max_order_notional.get(&info.quote) else {
            return Ok(());
        };
        let notional = value().ok_or_else(|| {
            refused(format!(
                "a MARKET order on {symbol} cannot be valued without a streamed quote, and {} orders are capped \
                 (max_order_notional): subscribe to its quotes or give quote_quantity",
                info.quote
            ))
        })?;
        if notional.to_f64().is_none_or(|n| n > max) {
            return Err(refused(format!(
                "{symbol} {what} worth {notional} {} is over max_order_notional {max} {}",
                info.quote, info.quote
            )));
        }
        Ok(())
    }
}

/// An order the operator's risk limits let through; only [`RiskLimits::approve`] makes one, and a
/// venue sends nothing else.
#[derive(Debug, Clone, PartialEq)]
pub struct Approved<T>(T);

impl<T> Approved<T> {
    pub fn get(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

/// The order's value in its quote asset: from its own fields (see [`ValidOrder::notional`]), or
/// for a MARKET order by quantity its quantity at the side of the latest quote it would trade against.
fn notional<V: Venue + ?Sized>(venue: &V, order: &ValidOrder) -> Option<Decimal> {
    if let Some(notional) = order.notional() {
        return Some(notional);
    }
    let quote = venue.quote(order.symbol())?;
    let price = match order.side() {
        Side::Buy => quote.ask,
        Side::Sell => quote.bid,
    };
    Some(Decimal::from_f64(price)? * order.kind().quantity()?)
}

fn refused(message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidOrder, format!("risk limit: {message}"))
}

/// The operator's switch for new orders, shared by everything that may flip it.
#[derive(Debug, Clone, Default)]
pub struct Halt(Arc<AtomicBool>);

impl Halt {
    /// Refuse every new order from now on; cancels still go out.
    pub fn halt(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    pub fn is_halted(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A venue whose orders pass the operator's [`Halt`] and [`RiskLimits`] first; everything else
/// (cancels included) goes straight through.
pub struct RiskGuard {
    inner: Arc<dyn Venue>,
    limits: RiskLimits,
    halt: Halt,
}

impl RiskGuard {
    pub fn new(inner: Arc<dyn Venue>, limits: RiskLimits) -> Arc<RiskGuard> {
        Self::with_halt(inner, limits, Halt::default())
    }

    pub fn with_halt(inner: Arc<dyn Venue>, limits: RiskLimits, halt: Halt) -> Arc<RiskGuard> {
        Arc::new(RiskGuard { inner, limits, halt })
    }
}

impl RiskGuard {
    /// The operator's checks, then the inner venue's send.
    async fn check(
        &self,
        ctx: &CallCtx,
        order: ValidOrder,
        client_id: Option<ClientOrderId>,
    ) -> Result<Order, ApiError> {
        self.check_halt()?;
        let approved = self.limits.approve(self.inner.as_ref(), &ctx.strategy, order)?;
        self.inner.send(ctx, client_id, approved).await
    }

    fn check_halt(&self) -> Result<(), ApiError> {
        if self.halt.is_halted() {
            return Err(refused("new orders are halted by the operator".into()));
        }
        Ok(())
    }

    /// The operator's checks for a cancel-replace's new order, then the inner venue's send.
    async fn check_replace(
        &self,
        ctx: &CallCtx,
        cancel: &OrderRef,
        mode: ReplaceMode,
        order: ValidOrder,
        client_id: Option<ClientOrderId>,
    ) -> Result<Order, ApiError> {
        self.check_halt()?;
        let approved = self
            .limits
            .approve_replacing(self.inner.as_ref(), &ctx.strategy, order)?;
        self.inner.send_replace(ctx, cancel, mode, client_id, approved).await
    }
}

#[async_trait]
impl Venue for RiskGuard {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn now_ms(&self) -> i64 {
        self.inner.now_ms()
    }

    fn symbol(&self, symbol: &str) -> Option<SymbolInfo> {
        self.inner.symbol(symbol)
    }

    fn symbols(&self) -> Vec<String> {
        self.inner.symbols()
    }

    async fn ticker(&self, ctx: &CallCtx, symbol: &str) -> Result<Ticker, ApiError> {
        self.inner.ticker(ctx, symbol).await
    }

    async fn book_ticker(&self, ctx: &CallCtx, symbol: &str) -> Result<Quote, ApiError> {
        self.inner.book_ticker(ctx, symbol).await
    }

    async fn depth(&self, ctx: &CallCtx, symbol: &str, limit: u32) -> Result<Depth, ApiError> {
        self.inner.depth(ctx, symbol, limit).await
    }

    async fn klines(&self, ctx: &CallCtx, symbol: &str, interval: &str, limit: u32) -> Result<Vec<Kline>, ApiError> {
        self.inner.klines(ctx, symbol, interval, limit).await
    }

    async fn trades(&self, ctx: &CallCtx, symbol: &str, limit: u32) -> Result<Vec<Trade>, ApiError> {
        self.inner.trades(ctx, symbol, limit).await
    }

    fn market_local(
        &self,
        strategy: &StrategyId,
        request: &MarketRequest,
        freshness: Freshness,
    ) -> Option<MarketAnswer> {
        self.inner.market_local(strategy, request, freshness)
    }

    async fn market_data(
        &self,
        ctx: &CallCtx,
        request: MarketRequest,
        freshness: Freshness,
    ) -> Result<MarketAnswer, ApiError> {
        self.inner.market_data(ctx, request, freshness).await
    }

    fn market_savings(&self) -> Vec<(StrategyId, MarketSavings)> {
        self.inner.market_savings()
    }

    fn validate(&self, request: &OrderRequest) -> Result<ValidOrder, ApiError> {
        self.inner.validate(request)
    }

    /// The halt and the limits are checked here too: an order approved elsewhere still meets them.
    async fn send(
        &self,
        ctx: &CallCtx,
        client_id: Option<ClientOrderId>,
        order: Approved<ValidOrder>,
    ) -> Result<Order, ApiError> {
        self.check(ctx, order.into_inner(), client_id).await
    }

    async fn place(&self, ctx: &CallCtx, request: OrderRequest) -> Result<Order, ApiError> {
        let valid = self.inner.validate(&request)?;
        ctx.stage_reached(Stage::Validated);
        self.check(ctx, valid, request.client_id).await
    }

    async fn cancel(&self, ctx: &CallCtx, symbol: &str, order: &OrderRef) -> Result<Order, ApiError> {
        self.inner.cancel(ctx, symbol, order).await
    }

    /// An amendment only lowers a quantity: it goes through, halted or not, like a cancel.
    async fn amend(&self, ctx: &CallCtx, symbol: &str, order: &OrderRef, quantity: f64) -> Result<Order, ApiError> {
        self.inner.amend(ctx, symbol, order, quantity).await
    }

    async fn send_replace(
        &self,
        ctx: &CallCtx,
        cancel: &OrderRef,
        mode: ReplaceMode,
        client_id: Option<ClientOrderId>,
        order: Approved<ValidOrder>,
    ) -> Result<Order, ApiError> {
        self.check_replace(ctx, cancel, mode, order.into_inner(), client_id)
            .await
    }

    async fn replace(
        &self,
        ctx: &CallCtx,
        cancel: &OrderRef,
        mode: ReplaceMode,
        request: OrderRequest,
    ) -> Result<Order, ApiError> {
        let valid = self.inner.validate(&request)?;
        self.check_replace(ctx, cancel, mode, valid, request.client_id).await
    }

    fn validate_list(&self, request: &ListRequest) -> Result<ValidList, ApiError> {
        self.inner.validate_list(request)
    }

    /// The halt and the limits are checked here too: a list approved elsewhere still meets them.
    async fn send_list(&self, ctx: &CallCtx, list: Approved<ValidList>) -> Result<PlacedList, ApiError> {
        self.check_halt()?;
        let approved = self
            .limits
            .approve_list(self.inner.as_ref(), &ctx.strategy, list.into_inner())?;
        self.inner.send_list(ctx, approved).await
    }

    async fn place_list(&self, ctx: &CallCtx, request: ListRequest) -> Result<PlacedList, ApiError> {
        self.check_halt()?;
        let valid = self.inner.validate_list(&request)?;
        let approved = self.limits.approve_list(self.inner.as_ref(), &ctx.strategy, valid)?;
        self.inner.send_list(ctx, approved).await
    }

    async fn cancel_list(&self, ctx: &CallCtx, symbol: &str, list: &ListRef) -> Result<Vec<Order>, ApiError> {
        self.inner.cancel_list(ctx, symbol, list).await
    }

    async fn cancel_all(&self, ctx: &CallCtx, symbol: &str) -> Result<Vec<Order>, ApiError> {
        self.inner.cancel_all(ctx, symbol).await
    }

    async fn get_order(&self, ctx: &CallCtx, symbol: &str, order: &OrderRef) -> Result<Order, ApiError> {
        self.inner.get_order(ctx, symbol, order).await
    }

    fn open_orders(&self, strategy: &str, symbol: Option<&str>) -> Vec<Order> {
        self.inner.open_orders(strategy, symbol)
    }

    fn balances(&self) -> BTreeMap<String, Balance> {
        self.inner.balances()
    }

    fn balances_of(&self, strategy: &str) -> BTreeMap<String, Balance> {
        self.inner.balances_of(strategy)
    }

    fn quote(&self, symbol: &str) -> Option<Quote> {
        self.inner.quote(symbol)
    }

    fn book(&self, symbol: &str, levels: usize) -> Option<Depth> {
        self.inner.book(symbol, levels)
    }

    async fn set_subscriptions(&self, strategy: &StrategyId, streams: Vec<StreamKey>) -> Result<(), ApiError> {
        self.inner.set_subscriptions(strategy, streams).await
    }

    fn ledger_status(&self, strategy: &str) -> LedgerStatus {
        self.inner.ledger_status(strategy)
    }

    fn breakers(&self) -> Vec<crate::exchange::breaker::BreakerStatus> {
        self.inner.breakers()
    }

    async fn start(&self, sink: Arc<dyn EventSink>) -> Result<(), ApiError> {
        self.inner.start(sink).await
    }

    async fn shutdown(&self) {
        self.inner.shutdown().await
    }
}
