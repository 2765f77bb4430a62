//! An order's state changes, merged so that it never regresses: whatever the source (an order
//! answer, the user stream, a lookup) and whatever order they arrive in.

use crate::exchange::types::{Order, OrderStatus};

/// A state change of an order, from any source (REST answer, user stream, lookup).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderUpdate {
    pub client_id: String,
    pub id: Option<u64>,
    /// `None` for transitional exchange states (e.g. PENDING_CANCEL) that change no status.
    pub status: Option<OrderStatus>,
    pub filled_qty: f64,
    pub filled_quote: f64,
    pub last_fill_qty: f64,
    pub last_fill_price: f64,
    pub last_commission: f64,
    pub commission_asset: Option<String>,
    pub reject_reason: Option<String>,
    pub update_time: i64,
    /// The order's quantity when it says so: an amendment only ever lowers it.
    pub quantity: Option<f64>,
    /// The order list the order is a leg of, when the source says.
    pub list_id: Option<u64>,
}

impl OrderUpdate {
    /// A final REJECTED state, with nothing filled.
    pub fn rejected(client_id: String, reason: String, update_time: i64) -> Self {
        OrderUpdate {
            client_id,
            id: None,
            status: Some(OrderStatus::Rejected),
            filled_qty: 0.0,
            filled_quote: 0.0,
            last_fill_qty: 0.0,
            last_fill_price: 0.0,
            last_commission: 0.0,
            commission_asset: None,
            reject_reason: Some(reason),
            update_time,
            quantity: None,
            list_id: None,
        }
    }
}

fn rank(status: OrderStatus) -> u8 {
    match status {
        OrderStatus::Pending => 0,
        // Known to the exchange, waiting for its list's working order.
        OrderStatus::PendingNew => 1,
        OrderStatus::New => 2,
        OrderStatus::PartiallyFilled => 3,
        _ => 4,
    }
}

/// The result of applying an update that changed something.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub order: Order,
    /// The order's first fill: the exchange lowered the unfilled-order count.
    pub first_fill: bool,
}

/// Applies `update` to `order`; `None` when it changes nothing or would regress.
pub fn merge(order: &mut Order, update: &OrderUpdate) -> Option<bool> {
    if order.status.is_final() || update.filled_qty < order.filled_qty {
        return None;
    }
    let status = update.status.unwrap_or(order.status);
    if rank(status) < rank(order.status) {
        return None;
    }
    // An amendment lowers the quantity; a stale answer from before it must not raise it again.
    let amended = update.quantity.filter(|q| *q < order.quantity);
    let changed = status != order.status
        || update.filled_qty > order.filled_qty
        || (order.id.is_none() && update.id.is_some())
        || amended.is_some()
        || (order.list_id.is_none() && update.list_id.is_some());
    if !changed {
        return None;
    }
    let first_fill = order.filled_qty <= 0.0 && update.filled_qty > 0.0;
    if update.filled_qty > order.filled_qty {
        order.last_fill_qty = update.last_fill_qty;
        order.last_fill_price = update.last_fill_price;
        order.last_commission = update.last_commission;
        if update.commission_asset.is_some() {
            order.commission_asset.clone_from(&update.commission_asset);
        }
    }
    order.status = status;
    order.id = order.id.or(update.id);
    order.list_id = order.list_id.or(update.list_id);
    if let Some(quantity) = amended {
        order.quantity = quantity;
    }
    order.filled_qty = update.filled_qty;
    order.filled_quote = update.filled_quote;
    order.avg_price = if update.filled_qty > 0.0 {
        update.filled_quote / update.filled_qty
    } else {
        0.0
    };
    if update.reject_reason.is_some() {
        order.reject_reason.clone_from(&update.reject_reason);
    }
    order.update_time = update.update_time;
    Some(first_fill)
}
