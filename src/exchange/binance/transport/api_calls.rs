//! Typed calls over the gateway (HTTP, or the WebSocket API for order entry), with the retry policy: idempotent reads retry
//! with jittered exponential backoff (bounded, each retry reserving budget again);
//! nothing retries on a 429/418; state-changing calls never retry.

use std::time::Duration;

use rand::Rng;
use serde::de::DeserializeOwned;

use crate::exchange::grid::to_f64 as dec;
use rust_decimal::Decimal;

use crate::exchange::types::{
    ApiError, ClientOrderId, ErrorCode, Kline, ListLegs, ListType, OrderRef, Quote, ReplaceMode, Ticker, Trade,
};
use crate::exchange::CallCtx;
use crate::ledger::{Lane, Verdict};

use super::gateway::Gateway;
use crate::exchange::binance::errors::{CallKind, SendError};
use crate::exchange::binance::limits::endpoints::Endpoint;
use crate::exchange::binance::orders::order_lists::{list_params, ValidList};
use crate::exchange::binance::orders::order_wire::order_params;
use crate::exchange::binance::orders::symbols::ValidOrder;
use crate::exchange::binance::transport::{Body, Request};
use crate::exchange::binance::wire;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `retry` (1-based): exponential, with ±50 % jitter.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1 << retry.saturating_sub(1).min(16));
        let capped = exp.min(self.max_delay);
        capped.mul_f64(rand::rng().random_range(0.5..1.5))
    }
}

fn unreadable(what: &str, kind: CallKind, reason: &str) -> ApiError {
    tracing::warn!(call = what, reason, "the exchange's answer could not be read");
    match kind {
        CallKind::Mutation => ApiError::new(
            ErrorCode::UnknownStatus,
            format!("the exchange answered {what}, but the answer could not be read ({reason}); the outcome is unknown and is being looked up"),
        ),
        // A read changed nothing: it failed, and may be tried again.
        CallKind::Query => ApiError::new(
            ErrorCode::Network,
            format!("the exchange answered {what}, but the answer could not be read ({reason})"),
        ),
    }
}

/// Checks an order answer; one that does not say how much filled is an unknown outcome for a
/// call that may have acted, and a failed read otherwise (the order is looked up either way).
fn filled(answer: wire::OrderAnswer, endpoint: Endpoint, kind: CallKind) -> Result<wire::OrderAnswer, ApiError> {
    match answer.fill() {
        Some(_) => Ok(answer),
        None => Err(unreadable(
            &endpoint.name(),
            kind,
            "no executedQty or cummulativeQuoteQty",
        )),
    }
}

/// A failed call: its error, and the refusal's `data` when it carried some.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub error: ApiError,
    pub data: Option<serde_json::Value>,
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Failure {
        Failure { error, data: None }
    }
}

/// Typed calls. `strategy` and `wait` say who is charged and how long budget may be awaited.
pub struct Rest<'g> {
    pub gateway: &'g Gateway,
    pub retry: RetryPolicy,
}

impl Rest<'_> {
    /// Sends `request`, retrying reads per the policy; returns a 2xx answer read as `T`. One that
    /// arrived but cannot be read is, for a call that may have acted (place, cancel), an unknown
    /// outcome to be looked up, never "nothing arrived".
    pub async fn execute<T: DeserializeOwned>(
        &self,
        strategy: &str,
        wait: Duration,
        request: &Request,
        kind: CallKind,
    ) -> Result<T, ApiError> {
        self.execute_detailed(strategy, wait, request, kind)
            .await
            .map_err(|failure| failure.error)
    }

    /// [`execute`](Self::execute), keeping a refusal's `data` (what a refused cancel-replace did).
    async fn execute_detailed<T: DeserializeOwned>(
        &self,
        strategy: &str,
        wait: Duration,
        request: &Request,
        kind: CallKind,
    ) -> Result<T, Failure> {
        let attempts = if kind == CallKind::Query {
            self.retry.attempts.max(1)
        } else {
            1
        };
        let mut attempt = 1;
        loop {
            let error = match self.gateway.send::<T>(strategy, wait, request).await {
                Ok(reply) => match reply.body {
                    Body::Read(answer) => return Ok(answer),
                    Body::Unreadable(reason) => return Err(unreadable(&request.endpoint.name(), kind, &reason).into()),
                    Body::Refused(rejection) => {
                        let now = self.gateway.now_ms();
                        let error = rejection.to_api_error(kind, &reply.verdict, now);
                        if rejection.code == Some(-1021) {
                            // Our clock drifted from the server's: resync, then let the caller decide.
                            if let Err(e) = self.gateway.sync_time(Duration::from_secs(5)).await {
                                tracing::warn!("server time resync after -1021 failed: {e}");
                            }
                            return Err(error.into());
                        }
                        let transient = reply.status >= 500 && reply.verdict == Verdict::Ok;
                        if !transient {
                            return Err(Failure {
                                error,
                                data: rejection.data,
                            });
                        }
                        error
                    }
                },
                Err(SendError::Ledger(error) | SendError::Unavailable(error)) => return Err(error.into()),
                Err(error @ (SendError::Stopped | SendError::NoRoute(_))) => {
                    return Err(error.to_api_error(kind).into())
                }
                Err(error) => error.to_api_error(kind),
            };
            if attempt >= attempts {
                return Err(error.into());
            }
            let delay = self.retry.delay(attempt);
            let endpoint = request.endpoint;
            tracing::debug!(?endpoint, attempt, ?delay, "retrying read after: {error}");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.gateway.shutdown().wait() => return Err(SendError::Stopped.to_api_error(kind).into()),
            }
            attempt += 1;
        }
    }

    /// Synchronises the server-time offset, retrying transport failures per the policy.
    pub async fn sync_time(&self, wait: Duration) -> Result<i64, ApiError> {
        let mut attempt = 1;
        loop {
            match self.gateway.sync_time(wait).await {
                Ok(offset) => return Ok(offset),
                Err(
                    error @ (SendError::Ledger(_)
                    | SendError::Stopped
                    | SendError::NoRoute(_)
                    | SendError::Unavailable(_)),
                ) => return Err(error.to_api_error(CallKind::Query)),
                Err(error) if attempt >= self.retry.attempts.max(1) => return Err(error.to_api_error(CallKind::Query)),
                Err(error) => {
                    tracing::debug!(attempt, "retrying server time after: {error}");
                    tokio::select! {
                        _ = tokio::time::sleep(self.retry.delay(attempt)) => {}
                        _ = self.gateway.shutdown().wait() => return Err(SendError::Stopped.to_api_error(CallKind::Query)),
                    }
                    attempt += 1;
                }
            }
        }
    }

    async fn query<T: DeserializeOwned>(
        &self,
        strategy: &str,
        wait: Duration,
        request: Request,
    ) -> Result<T, ApiError> {
        self.execute(strategy, wait, &request, CallKind::Query).await
    }

    pub async fn exchange_info(&self, strategy: &str, wait: Duration) -> Result<wire::ExchangeInfo, ApiError> {
        self.query(strategy, wait, Request::new(Endpoint::ExchangeInfo, Lane::MarketData))
            .await
    }

    pub async fn account(&self, strategy: &str, wait: Duration) -> Result<wire::Account, ApiError> {
        let call = Request::new(Endpoint::Account, Lane::MarketData)
            .param("omitZeroBalances", "true")
            .signed();
        self.query(strategy, wait, call).await
    }

    pub async fn depth(
        &self,
        strategy: &str,
        wait: Duration,
        symbol: &str,
        limit: u32,
    ) -> Result<wire::DepthSnapshot, ApiError> {
        let call = Request::new(Endpoint::Depth, Lane::MarketData)
            .param("symbol", symbol)
            .param("limit", limit.to_string());
        self.query(strategy, wait, call).await
    }

    pub async fn ticker(&self, strategy: &str, wait: Duration, symbol: &str) -> Result<Ticker, ApiError> {
        let call = Request::new(Endpoint::TickerPrice, Lane::MarketData).param("symbol", symbol);
        let t: wire::PriceTicker = self.query(strategy, wait, call).await?;
        Ok(Ticker {
            symbol: t.symbol,
            price: dec(t.price),
        })
    }

    pub async fn book_ticker(&self, strategy: &str, wait: Duration, symbol: &str) -> Result<Quote, ApiError> {
        let call = Request::new(Endpoint::TickerBook, Lane::MarketData).param("symbol", symbol);
        let t: wire::BookTicker = self.query(strategy, wait, call).await?;
        Ok(Quote {
            symbol: t.symbol.as_str().into(),
            bid: dec(t.bid_price),
            bid_qty: dec(t.bid_qty),
            ask: dec(t.ask_price),
            ask_qty: dec(t.ask_qty),
            update_id: 0,
            time: self.gateway.now_ms(),
        })
    }

    pub async fn klines(
        &self,
        strategy: &str,
        wait: Duration,
        symbol: &str,
        interval: &str,
        limit: u32,
    ) -> Result<Vec<Kline>, ApiError> {
        let call = Request::new(Endpoint::Klines, Lane::MarketData)
            .param("symbol", symbol)
            .param("interval", interval)
            .param("limit", limit.to_string());
        let rows: Vec<wire::KlineRow> = self.query(strategy, wait, call).await?;
        Ok(rows
            .into_iter()
            .map(|r| Kline {
                open_time: r.0,
                open: dec(r.1),
                high: dec(r.2),
                low: dec(r.3),
                close: dec(r.4),
                volume: dec(r.5),
                close_time: r.6,
            })
            .collect())
    }

    pub async fn trades(
        &self,
        strategy: &str,
        wait: Duration,
        symbol: &str,
        limit: u32,
    ) -> Result<Vec<Trade>, ApiError> {
        let call = Request::new(Endpoint::RecentTrades, Lane::MarketData)
            .param("symbol", symbol)
            .param("limit", limit.to_string());
        let rows: Vec<wire::RestTrade> = self.query(strategy, wait, call).await?;
        let name: std::sync::Arc<str> = symbol.into();
        Ok(rows
            .into_iter()
            .map(|t| Trade {
                symbol: name.clone(),
                id: t.id,
                price: dec(t.price),
                qty: dec(t.qty),
                time: t.time,
                buyer_maker: t.is_buyer_maker,
            })
            .collect())
    }

    /// Places an order (never retried: an unknown outcome is resolved by lookup).
    pub async fn place_order(
        &self,
        ctx: &CallCtx,
        order: &ValidOrder,
        client_id: &ClientOrderId,
    ) -> Result<wire::OrderAnswer, ApiError> {
        let mut call = Request::new(Endpoint::PlaceOrder, Lane::Order);
        for (name, value) in order_params(order, client_id) {
            call = call.param(name, value);
        }
        let call = call
            .param("newOrderRespType", "FULL")
            .signed()
            .free_on_success()
            .for_event(ctx.trigger.clone());
        let answer = self.execute(&ctx.strategy, ctx.wait, &call, CallKind::Mutation).await?;
        filled(answer, call.endpoint, CallKind::Mutation)
    }

    /// Lowers an open order's quantity, keeping its place in the queue and its client id (never
    /// retried: an unknown outcome is resolved by lookup).
    pub async fn amend_order(
        &self,
        ctx: &CallCtx,
        symbol: &str,
        client_id: &str,
        quantity: Decimal,
    ) -> Result<wire::AmendAnswer, ApiError> {
        let call = Request::new(Endpoint::AmendKeepPriority, Lane::Order)
            .param("symbol", symbol)
            .param("origClientOrderId", client_id)
            // The same id again: the order keeps the id the registry and the strategy know it by.
            .param("newClientOrderId", client_id)
            .param("newQty", quantity.to_string())
            .signed();
        self.execute(&ctx.strategy, ctx.wait, &call, CallKind::Mutation).await
    }

    /// Cancels the order `cancel_client_id` and places `order` in one request (never retried: an
    /// unknown outcome is resolved by lookup). A refusal keeps the exchange's account of both steps.
    pub async fn cancel_replace(
        &self,
        ctx: &CallCtx,
        order: &ValidOrder,
        client_id: &ClientOrderId,
        cancel_client_id: &str,
        mode: ReplaceMode,
    ) -> Result<wire::CancelReplaceAnswer, Failure> {
        let mut call = Request::new(Endpoint::CancelReplace, Lane::Order);
        for (name, value) in order_params(order, client_id) {
            call = call.param(name, value);
        }
        let call = call
            .param("cancelReplaceMode", mode.as_str())
            .param("cancelOrigClientOrderId", cancel_client_id)
            .param("newOrderRespType", "FULL")
            .signed()
            .free_on_success()
            .for_event(ctx.trigger.clone());
        self.execute_detailed(&ctx.strategy, ctx.wait, &call, CallKind::Mutation)
            .await
    }

    /// Places an order list (never retried: an unknown outcome is resolved by looking its orders up).
    pub async fn place_list(
        &self,
        ctx: &CallCtx,
        list: &ValidList,
        list_client_id: &ClientOrderId,
        client_ids: &ListLegs<ClientOrderId>,
    ) -> Result<wire::ListAnswer, ApiError> {
        let endpoint = match list.orders().list_type() {
            ListType::Oco => Endpoint::PlaceOco,
            ListType::Oto => Endpoint::PlaceOto,
            ListType::Otoco => Endpoint::PlaceOtoco,
        };
        let mut call = Request::new(endpoint, Lane::Order);
        for (name, value) in list_params(list, list_client_id, client_ids) {
            call = call.param(name, value);
        }
        let call = call.signed().free_on_success().for_event(ctx.trigger.clone());
        self.execute(&ctx.strategy, ctx.wait, &call, CallKind::Mutation).await
    }

    /// Cancels every open order of the list `list_client_id` (never retried).
    pub async fn cancel_list(
        &self,
        strategy: &str,
        wait: Duration,
        symbol: &str,
        list_client_id: &str,
    ) -> Result<wire::ListAnswer, ApiError> {
        let call = Request::new(Endpoint::CancelOrderList, Lane::Cancel)
            .param("symbol", symbol)
            .param("listClientOrderId", list_client_id)
            .signed()
            .free_on_success();
        self.execute(strategy, wait, &call, CallKind::Mutation).await
    }

    pub async fn cancel_order(
        &self,
        strategy: &str,
        wait: Duration,
        symbol: &str,
        client_id: &str,
    ) -> Result<wire::OrderAnswer, ApiError> {
        let call = Request::new(Endpoint::CancelOrder, Lane::Cancel)
            .param("symbol", symbol)
            .param("origClientOrderId", client_id)
            .signed()
            .free_on_success();
        let answer = self.execute(strategy, wait, &call, CallKind::Mutation).await?;
        filled(answer, call.endpoint, CallKind::Mutation)
    }

    /// Every open order of the account (weight 80).
    pub async fn open_orders(&self, strategy: &str, wait: Duration) -> Result<Vec<wire::OrderAnswer>, ApiError> {
        let call = Request::new(Endpoint::OpenOrders, Lane::Order);
        self.query(strategy, wait, call.signed()).await
    }

    pub async fn query_order(
        &self,
        strategy: &str,
        wait: Duration,
        symbol: &str,
        order: &OrderRef,
    ) -> Result<wire::OrderAnswer, ApiError> {
        let call = Request::new(Endpoint::OrderStatus, Lane::Order).param("symbol", symbol);
        let call = match order {
            OrderRef::ClientId(id) => call.param("origClientOrderId", id),
            OrderRef::Id(id) => call.param("orderId", id.to_string()),
        };
        let call = call.signed();
        let answer = self.execute(strategy, wait, &call, CallKind::Query).await?;
        filled(answer, call.endpoint, CallKind::Query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_with_jitter_and_cap() {
        let policy = RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        for _ in 0..50 {
            let first = policy.delay(1);
            assert!(
                first >= Duration::from_millis(50) && first <= Duration::from_millis(150),
                "{first:?}"
            );
            let third = policy.delay(3);
            assert!(
                third >= Duration::from_millis(200) && third <= Duration::from_millis(600),
                "{third:?}"
            );
            assert!(policy.delay(30) <= Duration::from_millis(1500));
        }
    }
}
