//! Operator-set risk limits in front of any venue: an order over a limit is refused before it
//! reaches the ledger, the journal or the exchange. Strategies can neither see nor change the
//! limits; a runaway loop or a sizing bug costs nothing but an `invalid_order` error. The operator
//! can also halt every new order at once (cancels still go out).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use super::{
    ApiError, Balance, CallCtx, Depth, ErrorCode, EventSink, Freshness, Kline, MarketAnswer, MarketRequest,
    MarketSavings, Order, OrderRef, OrderRequest, OrderType, Quote, Side, StrategyId, StreamKey, SymbolInfo, Ticker,
    Trade, Venue,
};
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

    /// Refuses `order` from `strategy` if it breaks a limit, judged with `venue`'s own state
    /// (symbol rules, latest quote, the strategy's open orders); sends nothing.
    pub fn check(&self, venue: &dyn Venue, strategy: &str, order: &OrderRequest) -> Result<(), ApiError> {
        if let Some(max) = self.max_open_orders {
            let open = venue.open_orders(strategy, None).len();
            if open >= max {
                return Err(refused(format!(
                    "{strategy} has {open} open orders and may have at most {max} (max_open_orders)"
                )));
            }
        }
        if self.max_order_notional.is_empty() {
            return Ok(());
        }
        let Some(info) = venue.symbol(&order.symbol) else {
            // The venue refuses unknown symbols itself, with its own message.
            return Ok(());
        };
        let Some(&max) = self.max_order_notional.get(&info.quote) else {
            return Ok(());
        };
        let notional = notional(venue, order).ok_or_else(|| {
            refused(format!(
                "a MARKET order on {} cannot be valued without a streamed quote, and {} orders are capped \
                 (max_order_notional): subscribe to its quotes or give quote_quantity",
                order.symbol, info.quote
            ))
        })?;
        if notional > max {
            return Err(refused(format!(
                "{} order worth {notional} {} is over max_order_notional {max} {}",
                order.symbol, info.quote, info.quote
            )));
        }
        Ok(())
    }
}

/// The order's value in its quote asset: its quote quantity, its price times its quantity, or
/// for a MARKET order its quantity at the side of the latest quote it would trade against.
fn notional(venue: &dyn Venue, order: &OrderRequest) -> Option<f64> {
    if let Some(quote_quantity) = order.quote_quantity {
        return Some(quote_quantity);
    }
    let quantity = order.quantity?;
    let price = match (order.order_type, order.price) {
        (OrderType::Market, _) | (_, None) => {
            let quote = venue.quote(&order.symbol)?;
            match order.side {
                Side::Buy => quote.ask,
                Side::Sell => quote.bid,
            }
        }
        (_, Some(price)) => price,
    };
    Some(price * quantity).filter(|n| n.is_finite())
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

    async fn place(&self, ctx: &CallCtx, request: OrderRequest) -> Result<Order, ApiError> {
        if self.halt.is_halted() {
            return Err(refused("new orders are halted by the operator".into()));
        }
        self.limits.check(self.inner.as_ref(), &ctx.strategy, &request)?;
        self.inner.place(ctx, request).await
    }

    async fn cancel(&self, ctx: &CallCtx, symbol: &str, order: &OrderRef) -> Result<Order, ApiError> {
        self.inner.cancel(ctx, symbol, order).await
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
