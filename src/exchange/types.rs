//! Venue-neutral domain types: what strategies see, whatever the exchange.
//!
//! Prices and quantities here are `f64` because that is what Lua holds; the venue
//! adapters convert them exactly onto each symbol's grid before anything is sent.

use std::fmt;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::ledger::LedgerError;

/// The name a strategy runs under; unique within one process.
pub type StrategyId = Arc<str>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Side {
    Buy,
    Sell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderType {
    Limit,
    Market,
    LimitMaker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TimeInForce {
    Gtc,
    Ioc,
    Fok,
}

/// The exchange's order states, plus `Pending`: sent, outcome not yet known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Pending,
    New,
    PartiallyFilled,
    Filled,
    Canceled,
    Rejected,
    Expired,
}

impl OrderStatus {
    /// True once the order can change no more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OrderStatus::Filled | OrderStatus::Canceled | OrderStatus::Rejected | OrderStatus::Expired
        )
    }

    /// True while the exchange holds the order open: it can still fill or be canceled.
    pub fn is_open(self) -> bool {
        matches!(self, OrderStatus::New | OrderStatus::PartiallyFilled)
    }
}

macro_rules! wire_names {
    ($ty:ty { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// The exchange's spelling, as strategies also write it.
            pub fn as_str(self) -> &'static str {
                match self { $(<$ty>::$variant => $name),+ }
            }
            /// Parses the exchange's spelling (case-sensitive, as the API contract says).
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($name => Some(<$ty>::$variant),)+ _ => None }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

wire_names!(Side { Buy => "BUY", Sell => "SELL" });
wire_names!(OrderType { Limit => "LIMIT", Market => "MARKET", LimitMaker => "LIMIT_MAKER" });
wire_names!(TimeInForce { Gtc => "GTC", Ioc => "IOC", Fok => "FOK" });
wire_names!(OrderStatus {
    Pending => "PENDING",
    New => "NEW",
    PartiallyFilled => "PARTIALLY_FILLED",
    Filled => "FILLED",
    Canceled => "CANCELED",
    Rejected => "REJECTED",
    Expired => "EXPIRED",
});

/// A symbol's trading rules, from the exchange's symbol list (exact decimals).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SymbolInfo {
    pub symbol: String,
    pub base: String,
    pub quote: String,
    /// "TRADING", "HALT", "BREAK", ...
    pub status: String,
    pub tick_size: Decimal,
    pub min_price: Decimal,
    pub max_price: Decimal,
    pub step_size: Decimal,
    pub min_qty: Decimal,
    pub max_qty: Decimal,
    /// MARKET_LOT_SIZE; zero fields mean "use LOT_SIZE".
    pub market_step_size: Decimal,
    pub market_min_qty: Decimal,
    pub market_max_qty: Decimal,
    pub min_notional: Decimal,
    pub apply_min_to_market: bool,
    /// Zero means no maximum.
    pub max_notional: Decimal,
    pub apply_max_to_market: bool,
    /// MAX_NUM_ORDERS, if the symbol has it.
    pub max_num_orders: Option<u32>,
    pub base_precision: u32,
    pub quote_precision: u32,
}

/// Best bid and ask, from the book-ticker stream or REST.
#[derive(Debug, Clone, PartialEq)]
pub struct Quote {
    pub symbol: Arc<str>,
    pub bid: f64,
    pub bid_qty: f64,
    pub ask: f64,
    pub ask_qty: f64,
    pub update_id: u64,
    /// Exchange time in ms when known, else the local receive time in exchange ms.
    pub time: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ticker {
    pub symbol: String,
    pub price: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trade {
    pub symbol: Arc<str>,
    pub id: u64,
    pub price: f64,
    pub qty: f64,
    pub time: i64,
    pub buyer_maker: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kline {
    pub open_time: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    pub close_time: i64,
}

/// An order book: a REST snapshot or the host's stream-maintained local book.
/// Bids best (highest) first, asks best (lowest) first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Depth {
    pub symbol: String,
    pub update_id: u64,
    pub bids: Vec<(f64, f64)>,
    pub asks: Vec<(f64, f64)>,
}

/// What a strategy asks for with `orders.place{...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRequest {
    pub symbol: String,
    pub side: Side,
    pub order_type: OrderType,
    pub quantity: Option<f64>,
    /// MARKET orders only: spend (BUY) or receive (SELL) this much of the quote asset.
    pub quote_quantity: Option<f64>,
    pub price: Option<f64>,
    pub tif: Option<TimeInForce>,
    pub client_id: Option<String>,
}

impl OrderRequest {
    /// A LIMIT order; the time in force and the client id are left to the client's defaults.
    pub fn limit(symbol: &str, side: Side, quantity: f64, price: f64) -> OrderRequest {
        OrderRequest {
            symbol: symbol.into(),
            side,
            order_type: OrderType::Limit,
            quantity: Some(quantity),
            quote_quantity: None,
            price: Some(price),
            tif: None,
            client_id: None,
        }
    }
}

/// An order as the host knows it. `strategy` says who owns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub strategy: StrategyId,
    /// The exchange's order id, once known.
    pub id: Option<u64>,
    pub client_id: String,
    pub symbol: String,
    pub side: Side,
    pub order_type: OrderType,
    pub tif: Option<TimeInForce>,
    pub status: OrderStatus,
    pub price: f64,
    pub quantity: f64,
    pub filled_qty: f64,
    /// Cumulative quote quantity filled (price × qty summed over fills).
    pub filled_quote: f64,
    pub avg_price: f64,
    pub last_fill_qty: f64,
    pub last_fill_price: f64,
    /// Commission charged on the last fill, and its asset.
    pub last_commission: f64,
    pub commission_asset: Option<String>,
    pub reject_reason: Option<String>,
    pub time: i64,
    pub update_time: i64,
}

/// How a strategy names an order: the exchange's id or the client order id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OrderRef {
    Id(u64),
    ClientId(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Balance {
    pub free: f64,
    pub locked: f64,
}

/// The error codes of the strategy API contract (`err.code` in Lua).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The budget would be exceeded and the wait deadline passed; nothing was sent.
    RateLimited,
    /// The exchange asked everyone to wait (429); nothing was sent.
    Backoff,
    /// The IP is banned (418); nothing was sent.
    Banned,
    /// Refused locally (filter, bad parameter); nothing was sent.
    InvalidOrder,
    /// The exchange refused it.
    Rejected,
    /// Sent, outcome not known yet; the host is finding out.
    UnknownStatus,
    /// Could not reach the exchange; nothing is known to have arrived.
    Network,
    /// The runtime is shutting down.
    Stopped,
    /// The exchange is failing and its circuit breaker is open; nothing was sent.
    /// `retry_after_ms` says when to try again.
    Unavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Backoff => "backoff",
            ErrorCode::Banned => "banned",
            ErrorCode::InvalidOrder => "invalid_order",
            ErrorCode::Rejected => "rejected",
            ErrorCode::UnknownStatus => "unknown_status",
            ErrorCode::Network => "network",
            ErrorCode::Stopped => "stopped",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

/// An expected failure of an exchange call, as handed to Lua (`nil, err`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_ms: Option<u64>,
    pub exchange_code: Option<i64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            retry_after_ms: None,
            exchange_code: None,
        }
    }

    pub fn with_retry_after(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms);
        self
    }

    pub fn with_exchange_code(mut self, code: i64) -> Self {
        self.exchange_code = Some(code);
        self
    }

    /// The strategy-facing form of a ledger refusal, with `retry_after_ms` relative to `now_ms`.
    pub fn from_ledger(error: &LedgerError, now_ms: i64) -> Self {
        let after = |until: i64| (until - now_ms).max(0) as u64;
        let message = error.to_string();
        match error {
            LedgerError::RateLimited { until_ms } => {
                ApiError::new(ErrorCode::RateLimited, message).with_retry_after(after(*until_ms))
            }
            LedgerError::Throttled { until_ms } => {
                ApiError::new(ErrorCode::Backoff, message).with_retry_after(after(*until_ms))
            }
            LedgerError::Banned { until_ms } => {
                ApiError::new(ErrorCode::Banned, message).with_retry_after(after(*until_ms))
            }
            LedgerError::TooLarge(_) => ApiError::new(ErrorCode::InvalidOrder, message),
            LedgerError::Closed => ApiError::new(ErrorCode::Stopped, message),
        }
    }
}
