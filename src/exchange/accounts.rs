//! Several accounts behind one [`Venue`]: each strategy's orders, open orders and balances go to
//! the venue of the account it trades on; market data, symbols and streams come from the first
//! account's venue only, so every market event reaches the strategies once.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::binance::account::accounts::Accounts;
use super::binance::orders::symbols::ValidOrder;
use super::breaker::BreakerStatus;
use super::risk::Approved;
use super::{
    ApiError, Balance, CallCtx, ClientOrderId, Depth, EventSink, Freshness, Kline, MarketAnswer, MarketRequest,
    MarketSavings, Order, OrderRef, OrderRequest, Quote, ReplaceMode, StrategyId, StreamKey, SymbolInfo, Ticker, Trade,
    Venue,
};
use crate::ledger::{BackoffState, LedgerStatus, PoolStatus, Scope};

/// One venue per account (index = account number, at least one), routed by strategy.
pub struct AccountVenues {
    venues: Vec<Arc<dyn Venue>>,
    accounts: Accounts,
}

impl AccountVenues {
    /// `venues[n]` trades account `n` of `accounts`. `None` without a venue, or with fewer venues
    /// than accounts (a strategy would have nowhere to send).
    pub fn new(venues: Vec<Arc<dyn Venue>>, accounts: Accounts) -> Option<Arc<AccountVenues>> {
        (!venues.is_empty() && venues.len() >= usize::from(accounts.count()))
            .then(|| Arc::new(AccountVenues { venues, accounts }))
    }

    /// The first account's venue: market data, symbols and streams.
    fn market(&self) -> &Arc<dyn Venue> {
        &self.venues[0]
    }

    /// The venue of the account `strategy` trades on.
    fn of(&self, strategy: &str) -> &Arc<dyn Venue> {
        let account = usize::from(self.accounts.account_of(strategy));
        self.venues.get(account).unwrap_or(&self.venues[0])
    }
}

#[async_trait]
impl Venue for AccountVenues {
    fn name(&self) -> &str {
        self.market().name()
    }

    fn now_ms(&self) -> i64 {
        self.market().now_ms()
    }

    fn symbol(&self, symbol: &str) -> Option<SymbolInfo> {
        self.market().symbol(symbol)
    }

    fn symbols(&self) -> Vec<String> {
        self.market().symbols()
    }

    async fn ticker(&self, ctx: &CallCtx, symbol: &str) -> Result<Ticker, ApiError> {
        self.market().ticker(ctx, symbol).await
    }

    async fn book_ticker(&self, ctx: &CallCtx, symbol: &str) -> Result<Quote, ApiError> {
        self.market().book_ticker(ctx, symbol).await
    }

    async fn depth(&self, ctx: &CallCtx, symbol: &str, limit: u32) -> Result<Depth, ApiError> {
        self.market().depth(ctx, symbol, limit).await
    }

    async fn klines(&self, ctx: &CallCtx, symbol: &str, interval: &str, limit: u32) -> Result<Vec<Kline>, ApiError> {
        self.market().klines(ctx, symbol, interval, limit).await
    }

    async fn trades(&self, ctx: &CallCtx, symbol: &str, limit: u32) -> Result<Vec<Trade>, ApiError> {
        self.market().trades(ctx, symbol, limit).await
    }

    fn market_local(
        &self,
        strategy: &StrategyId,
        request: &MarketRequest,
        freshness: Freshness,
    ) -> Option<MarketAnswer> {
        self.market().market_local(strategy, request, freshness)
    }

    async fn market_data(
        &self,
        ctx: &CallCtx,
        request: MarketRequest,
        freshness: Freshness,
    ) -> Result<MarketAnswer, ApiError> {
        self.market().market_data(ctx, request, freshness).await
    }

    fn market_savings(&self) -> Vec<(StrategyId, MarketSavings)> {
        self.market().market_savings()
    }

    fn validate(&self, request: &OrderRequest) -> Result<ValidOrder, ApiError> {
        self.market().validate(request)
    }

    async fn send(
        &self,
        ctx: &CallCtx,
        client_id: Option<ClientOrderId>,
        order: Approved<ValidOrder>,
    ) -> Result<Order, ApiError> {
        self.of(&ctx.strategy).send(ctx, client_id, order).await
    }

    async fn cancel(&self, ctx: &CallCtx, symbol: &str, order: &OrderRef) -> Result<Order, ApiError> {
        self.of(&ctx.strategy).cancel(ctx, symbol, order).await
    }

    async fn amend(&self, ctx: &CallCtx, symbol: &str, order: &OrderRef, quantity: f64) -> Result<Order, ApiError> {
        self.of(&ctx.strategy).amend(ctx, symbol, order, quantity).await
    }

    async fn send_replace(
        &self,
        ctx: &CallCtx,
        cancel: &OrderRef,
        mode: ReplaceMode,
        client_id: Option<ClientOrderId>,
        order: Approved<ValidOrder>,
    ) -> Result<Order, ApiError> {
        self.of(&ctx.strategy)
            .send_replace(ctx, cancel, mode, client_id, order)
            .await
    }

    async fn cancel_all(&self, ctx: &CallCtx, symbol: &str) -> Result<Vec<Order>, ApiError> {
        self.of(&ctx.strategy).cancel_all(ctx, symbol).await
    }

    async fn get_order(&self, ctx: &CallCtx, symbol: &str, order: &OrderRef) -> Result<Order, ApiError> {
        self.of(&ctx.strategy).get_order(ctx, symbol, order).await
    }

    fn open_orders(&self, strategy: &str, symbol: Option<&str>) -> Vec<Order> {
        self.of(strategy).open_orders(strategy, symbol)
    }

    /// The first account's balances.
    fn balances(&self) -> BTreeMap<String, Balance> {
        self.market().balances()
    }

    fn balances_of(&self, strategy: &str) -> BTreeMap<String, Balance> {
        self.of(strategy).balances()
    }

    fn quote(&self, symbol: &str) -> Option<Quote> {
        self.market().quote(symbol)
    }

    fn book(&self, symbol: &str, levels: usize) -> Option<Depth> {
        self.market().book(symbol, levels)
    }

    async fn set_subscriptions(&self, strategy: &StrategyId, streams: Vec<StreamKey>) -> Result<(), ApiError> {
        self.market().set_subscriptions(strategy, streams).await
    }

    /// The one ledger's view; each account pool named by its account (`account1(sub1)`), with
    /// the -1015 hold on new orders its own venue keeps, if one is in force.
    fn ledger_status(&self, strategy: &str) -> LedgerStatus {
        let mut status = self.market().ledger_status(strategy);
        for (account, venue) in (0u16..).zip(&self.venues).skip(1) {
            let scope = Scope::Account(account);
            let held: Vec<PoolStatus> = venue
                .ledger_status("")
                .pools
                .into_iter()
                .filter(|p| p.scope == scope && p.backoff != BackoffState::Normal)
                .collect();
            for pool in &mut status.pools {
                let own = held
                    .iter()
                    .find(|h| (h.scope, h.kind, h.interval) == (pool.scope, pool.kind, pool.interval));
                if let Some(own) = own {
                    (pool.backoff, pool.backoff_until_ms) = (own.backoff, own.backoff_until_ms);
                }
            }
        }
        let scopes: Vec<Scope> = status.pools.iter().map(|p| p.scope).collect();
        for scope in scopes {
            if let Some(name) = self.accounts.scope_name(scope) {
                status.name_scope(scope, name);
            }
        }
        status
    }

    /// Every account's breakers (each account's venue has its own).
    fn breakers(&self) -> Vec<BreakerStatus> {
        self.venues.iter().flat_map(|v| v.breakers()).collect()
    }

    async fn start(&self, sink: Arc<dyn EventSink>) -> Result<(), ApiError> {
        for venue in &self.venues {
            venue.start(Arc::clone(&sink)).await?;
        }
        Ok(())
    }

    async fn shutdown(&self) {
        for venue in &self.venues {
            venue.shutdown().await;
        }
    }
}
