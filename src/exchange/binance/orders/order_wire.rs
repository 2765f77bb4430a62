//! Orders on the wire: the parameters of a new order, built from its grid decimals as they are,
//! and the exchange's answers and reports read back into [`OrderUpdate`]s.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use crate::exchange::types::{ClientOrderId, OrderStatus};

use super::order_state::OrderUpdate;
use super::symbols::ValidOrder;
use crate::exchange::binance::wire::{AmendAnswer, ExecutionReport, OrderAnswer};

/// The parameters of a new order (`POST /api/v3/order`, `order.place`), without the signature's.
pub fn order_params(order: &ValidOrder, client_id: &ClientOrderId) -> Vec<(&'static str, String)> {
    let fields = order.kind().fields();
    // Room for every parameter an order can have (the eleven below).
    let mut params = Vec::with_capacity(11);
    params.extend([
        ("symbol", order.symbol().to_string()),
        ("side", order.side().as_str().to_string()),
        ("type", order.kind().order_type().as_str().to_string()),
    ]);
    let decimal = |name, value: Option<Decimal>| value.map(|d: Decimal| (name, d.to_string()));
    params.extend(fields.tif.map(|tif| ("timeInForce", tif.as_str().to_string())));
    params.extend(decimal("quantity", fields.quantity));
    params.extend(decimal("quoteOrderQty", fields.quote_quantity));
    params.extend(decimal("price", fields.price));
    params.extend(decimal("stopPrice", fields.stop_price));
    params.extend(fields.trailing_delta.map(|delta| ("trailingDelta", delta.to_string())));
    params.extend(
        order
            .stp()
            .map(|stp| ("selfTradePreventionMode", stp.as_str().to_string())),
    );
    params.push(("newClientOrderId", client_id.to_string()));
    params
}

fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

/// The exchange's status spelling; `None` for transitional states (PENDING_CANCEL) that change no status.
pub fn parse_status(s: &str) -> Option<OrderStatus> {
    OrderStatus::parse(s)
}

impl OrderUpdate {
    /// From an order answer (`POST`, `GET` or `DELETE /api/v3/order`, or the WebSocket API's).
    /// `None` when the answer does not say how much filled: the order must be looked up.
    pub fn from_answer(answer: &OrderAnswer, now_ms: i64) -> Option<Self> {
        let (executed, quote) = answer.fill()?;
        // On a cancel answer the order's own id is in origClientOrderId.
        let client_id = answer
            .orig_client_order_id
            .clone()
            .unwrap_or_else(|| answer.client_order_id.clone());
        let last = answer.fills.last();
        Some(OrderUpdate {
            client_id,
            id: Some(answer.order_id),
            status: parse_status(&answer.status),
            filled_qty: f(executed),
            filled_quote: f(quote),
            last_fill_qty: last.map_or(0.0, |fill| f(fill.qty)),
            last_fill_price: last.map_or(0.0, |fill| f(fill.price)),
            last_commission: answer.fills.iter().map(|fill| f(fill.commission)).sum(),
            commission_asset: last.map(|fill| fill.commission_asset.clone()),
            reject_reason: None,
            update_time: answer.update_time.or(answer.transact_time).unwrap_or(now_ms),
            // The order's quantity now: lower than placed after an amendment.
            quantity: answer.orig_qty.map(f),
            list_id: answer.order_list_id.and_then(|id| u64::try_from(id).ok()),
        })
    }

    /// From an amendment's answer: the order's new quantity and state.
    pub fn from_amend(answer: &AmendAnswer, now_ms: i64) -> Self {
        let order = &answer.amended_order;
        OrderUpdate {
            client_id: order.client_order_id.clone(),
            id: Some(order.order_id),
            status: parse_status(&order.status),
            filled_qty: f(order.executed_qty),
            filled_quote: f(order.cumulative_quote_qty),
            last_fill_qty: 0.0,
            last_fill_price: 0.0,
            last_commission: 0.0,
            commission_asset: None,
            reject_reason: None,
            update_time: answer.transact_time.unwrap_or(now_ms),
            quantity: Some(f(order.qty)),
            list_id: None,
        }
    }

    /// An order's exchange id and its list's, as a list answer or a `listStatus` event names them; its
    /// state is left as it is.
    pub fn list_member(client_id: String, order_id: u64, list_id: u64, now_ms: i64) -> Self {
        OrderUpdate {
            id: Some(order_id),
            status: None,
            list_id: Some(list_id),
            reject_reason: None,
            ..OrderUpdate::rejected(client_id, String::new(), now_ms)
        }
    }

    /// From a user-stream `executionReport`.
    pub fn from_report(report: &ExecutionReport) -> Self {
        // A cancel report carries the cancel request's id in `c` and the order's in `C`.
        let client_id = if report.orig_client_id.is_empty() {
            report.c.clone()
        } else {
            report.orig_client_id.clone()
        };
        OrderUpdate {
            client_id,
            id: Some(report.i),
            status: parse_status(&report.status),
            filled_qty: f(report.z),
            filled_quote: f(report.cum_quote),
            last_fill_qty: f(report.l),
            last_fill_price: f(report.last_price),
            last_commission: f(report.n),
            commission_asset: report.commission_asset.clone(),
            reject_reason: (report.r != "NONE" && !report.r.is_empty()).then(|| report.r.clone()),
            update_time: report.transaction_time,
            // An amendment (`REPLACED`) reports the order's new quantity.
            quantity: (report.x == "REPLACED").then(|| f(report.q)),
            list_id: u64::try_from(report.g).ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::binance::orders::symbols::{grid_only_btcusdt, validate};
    use crate::exchange::types::{OrderKind, OrderRequest, SelfTradePrevention, Side, StopTrigger, TimeInForce};

    #[test]
    fn order_params_carry_the_grid_decimals_as_they_are() {
        let mut request = OrderRequest::new(
            "BTCUSDT",
            Side::Sell,
            OrderKind::StopLossLimit {
                price: 0.1 + 0.2,
                quantity: 0.00003,
                tif: TimeInForce::Ioc,
                trigger: StopTrigger {
                    stop_price: Some(0.31),
                    trailing_delta: Some(150),
                },
            },
        );
        request.stp = Some(SelfTradePrevention::ExpireBoth);
        let order = validate(&grid_only_btcusdt(), &request, None).unwrap();
        let id = ClientOrderId::new("abc").unwrap();
        let params = order_params(&order, &id);
        let expected: Vec<(&str, String)> = [
            ("symbol", "BTCUSDT"),
            ("side", "SELL"),
            ("type", "STOP_LOSS_LIMIT"),
            ("timeInForce", "IOC"),
            ("quantity", "0.00003"),
            ("price", "0.3"),
            ("stopPrice", "0.31"),
            ("trailingDelta", "150"),
            ("selfTradePreventionMode", "EXPIRE_BOTH"),
            ("newClientOrderId", "abc"),
        ]
        .into_iter()
        .map(|(name, value)| (name, value.to_string()))
        .collect();
        assert_eq!(params, expected);
    }
}
