//! A user's order as the simulated exchange keeps it: the order types it runs, a new order's
//! request, and the order's state as it works and fills.

use rust_decimal::Decimal;

use super::stp::Stp;
use crate::exchange::types::{OrderStatus, OrderType, Side, TimeInForce};

/// The order types the matching engine runs (the client's own order types are fewer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Limit,
    LimitMaker,
    Market,
    StopLoss,
    StopLossLimit,
    TakeProfit,
    TakeProfitLimit,
}

impl From<OrderType> for Kind {
    fn from(order_type: OrderType) -> Kind {
        match order_type {
            OrderType::Limit => Kind::Limit,
            OrderType::LimitMaker => Kind::LimitMaker,
            OrderType::Market => Kind::Market,
            OrderType::StopLoss => Kind::StopLoss,
            OrderType::StopLossLimit => Kind::StopLossLimit,
            OrderType::TakeProfit => Kind::TakeProfit,
            OrderType::TakeProfitLimit => Kind::TakeProfitLimit,
        }
    }
}

impl From<Kind> for OrderType {
    fn from(kind: Kind) -> OrderType {
        match kind {
            Kind::Limit => OrderType::Limit,
            Kind::LimitMaker => OrderType::LimitMaker,
            Kind::Market => OrderType::Market,
            Kind::StopLoss => OrderType::StopLoss,
            Kind::StopLossLimit => OrderType::StopLossLimit,
            Kind::TakeProfit => OrderType::TakeProfit,
            Kind::TakeProfitLimit => OrderType::TakeProfitLimit,
        }
    }
}

impl Kind {
    const ALL: [(Kind, &'static str); 7] = [
        (Kind::Limit, "LIMIT"),
        (Kind::LimitMaker, "LIMIT_MAKER"),
        (Kind::Market, "MARKET"),
        (Kind::StopLoss, "STOP_LOSS"),
        (Kind::StopLossLimit, "STOP_LOSS_LIMIT"),
        (Kind::TakeProfit, "TAKE_PROFIT"),
        (Kind::TakeProfitLimit, "TAKE_PROFIT_LIMIT"),
    ];

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.iter().find(|(_, name)| *name == s).map(|(k, _)| *k)
    }

    pub fn as_str(self) -> &'static str {
        Kind::ALL
            .iter()
            .find(|(k, _)| *k == self)
            .map(|(_, n)| *n)
            .unwrap_or("LIMIT")
    }

    /// The strategy API's order type; `None` for the stop and take-profit kinds, which the runner's
    /// client does not place.
    pub fn order_type(self) -> Option<OrderType> {
        match self {
            Kind::Limit => Some(OrderType::Limit),
            Kind::LimitMaker => Some(OrderType::LimitMaker),
            Kind::Market => Some(OrderType::Market),
            _ => None,
        }
    }

    /// Waits for the last price to reach its stop price.
    pub fn is_conditional(self) -> bool {
        !matches!(self, Kind::Limit | Kind::LimitMaker | Kind::Market)
    }

    /// What the order matches as (a triggered stop or take-profit becomes a market or limit order).
    pub fn active(self) -> Kind {
        match self {
            Kind::StopLoss | Kind::TakeProfit => Kind::Market,
            Kind::StopLossLimit | Kind::TakeProfitLimit => Kind::Limit,
            other => other,
        }
    }

    /// Does a last trade at `last` trigger a `side` order of this kind with stop price `stop`?
    /// Stop-loss buys trigger at or above the stop, sells at or below; take-profit the other way.
    pub fn triggers(self, side: Side, stop: Decimal, last: Decimal) -> bool {
        match (self, side) {
            (Kind::StopLoss | Kind::StopLossLimit, Side::Buy)
            | (Kind::TakeProfit | Kind::TakeProfitLimit, Side::Sell) => last >= stop,
            (Kind::StopLoss | Kind::StopLossLimit, Side::Sell)
            | (Kind::TakeProfit | Kind::TakeProfitLimit, Side::Buy) => last <= stop,
            _ => false,
        }
    }
}

/// A validated new-order request.
#[derive(Debug, Clone)]
pub struct NewOrder {
    /// The account placing it (the one its API key authenticated).
    pub account: u16,
    pub symbol: usize,
    pub side: Side,
    pub kind: Kind,
    pub tif: Option<TimeInForce>,
    pub price: Option<Decimal>,
    pub qty: Option<Decimal>,
    pub quote_qty: Option<Decimal>,
    pub client_id: Option<String>,
    pub stop_price: Option<Decimal>,
    pub iceberg_qty: Option<Decimal>,
}

#[derive(Debug, Clone)]
pub struct Order {
    pub id: u64,
    /// The account that placed it: its balances are locked and paid, its user stream told.
    pub account: u16,
    pub symbol: usize,
    pub client_id: String,
    pub side: Side,
    pub kind: Kind,
    pub tif: Option<TimeInForce>,
    pub price: Decimal,
    pub orig_qty: Decimal,
    pub orig_quote_qty: Decimal,
    pub executed: Decimal,
    pub cum_quote: Decimal,
    pub status: OrderStatus,
    pub time: i64,
    pub update_time: i64,
    /// Still locked for this order (quote for buys, base for sells).
    pub locked: Decimal,
    pub filled_once: bool,
    pub on_book: bool,
    /// Zero when none.
    pub stop_price: Decimal,
    /// Zero when not an iceberg.
    pub iceberg_qty: Decimal,
    /// What the book shows of it now (an iceberg's visible part).
    pub visible: Decimal,
    /// Since when it can match: placement, or the trigger of a stop / take-profit order.
    pub working_time: Option<i64>,
    /// The order list it belongs to (`orderListId`).
    pub list: Option<u64>,
    /// A pending order of an OTO list, waiting for its working order to fill (`PENDING_NEW`).
    pub awaiting: bool,
    pub stp: Stp,
    /// What self-trade prevention took from it, if anything.
    pub prevented: Option<Prevented>,
}

/// Self-trade prevention's effect on one order (`preventedMatchId`, `preventedQuantity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prevented {
    /// The latest prevented match the order was in.
    pub match_id: u64,
    /// Quantity prevented over the order's life (`A`, `preventedQuantity`).
    pub qty: Decimal,
    /// Quantity the latest prevented match took (`B`).
    pub last_qty: Decimal,
    /// Whether prevention ended it (`EXPIRED_IN_MATCH`); DECREMENT may leave it open.
    pub expired: bool,
}

impl Order {
    /// The exchange's status name (`PENDING_NEW` for an OTO list's waiting order).
    pub fn status_name(&self) -> &'static str {
        if self.awaiting {
            "PENDING_NEW"
        } else if self.prevented.is_some_and(|p| p.expired) {
            "EXPIRED_IN_MATCH"
        } else {
            self.status.as_str()
        }
    }

    /// Quantity still to execute: what neither filled nor self-trade prevention took.
    pub fn remaining(&self) -> Decimal {
        let prevented = self.prevented.map_or(Decimal::ZERO, |p| p.qty);
        (self.orig_qty - self.executed - prevented).max(Decimal::ZERO)
    }

    /// The order's remaining part as a request of `kind` (what a trigger or a list activation re-checks).
    pub fn remaining_as(&self, kind: Kind) -> NewOrder {
        NewOrder {
            account: self.account,
            symbol: self.symbol,
            side: self.side,
            kind,
            tif: self.tif,
            price: (self.price > Decimal::ZERO).then_some(self.price),
            qty: Some(self.remaining()),
            quote_qty: None,
            client_id: None,
            stop_price: (self.stop_price > Decimal::ZERO).then_some(self.stop_price),
            iceberg_qty: None,
        }
    }
}
