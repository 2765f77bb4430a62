//! Venue-neutral domain types: what strategies see, whatever the exchange.
//!
//! Prices and quantities a strategy gives or sees are `f64` because that is what Lua holds; an
//! order's [`OrderKind`] is generic over its numbers so that the venue adapters can put it exactly
//! on each symbol's grid (`OrderKind<Decimal>`) and send those decimals as they are.

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
    StopLoss,
    StopLossLimit,
    TakeProfit,
    TakeProfitLimit,
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
    /// Accepted as a leg of an order list that is not working yet.
    PendingNew,
    New,
    PartiallyFilled,
    Filled,
    Canceled,
    Rejected,
    Expired,
    /// Expired by self-trade prevention.
    ExpiredInMatch,
}

impl OrderStatus {
    /// True once the order can change no more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OrderStatus::Filled
                | OrderStatus::Canceled
                | OrderStatus::Rejected
                | OrderStatus::Expired
                | OrderStatus::ExpiredInMatch
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
wire_names!(OrderType {
    Limit => "LIMIT",
    Market => "MARKET",
    LimitMaker => "LIMIT_MAKER",
    StopLoss => "STOP_LOSS",
    StopLossLimit => "STOP_LOSS_LIMIT",
    TakeProfit => "TAKE_PROFIT",
    TakeProfitLimit => "TAKE_PROFIT_LIMIT",
});
wire_names!(SelfTradePrevention {
    None => "NONE",
    ExpireTaker => "EXPIRE_TAKER",
    ExpireMaker => "EXPIRE_MAKER",
    ExpireBoth => "EXPIRE_BOTH",
    Decrement => "DECREMENT",
});
wire_names!(TimeInForce { Gtc => "GTC", Ioc => "IOC", Fok => "FOK" });
wire_names!(OrderStatus {
    Pending => "PENDING",
    PendingNew => "PENDING_NEW",
    New => "NEW",
    PartiallyFilled => "PARTIALLY_FILLED",
    Filled => "FILLED",
    Canceled => "CANCELED",
    Rejected => "REJECTED",
    Expired => "EXPIRED",
    ExpiredInMatch => "EXPIRED_IN_MATCH",
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

/// Self-trade prevention: what the exchange does when this order would trade with another order
/// of the same account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SelfTradePrevention {
    None,
    ExpireTaker,
    ExpireMaker,
    ExpireBoth,
    Decrement,
}

/// A client order id as the exchange accepts it: 1-36 characters of `A-Z a-z 0-9 . : / _ -`
/// (Binance's `^[\.A-Z\:/a-z0-9_-]{1,36}$`). Built only by [`ClientOrderId::new`], so every id
/// the registry, the journal and the wire see is valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClientOrderId(String);

/// A text that is not a valid client order id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("client_id {0:?} must be 1-36 characters of A-Z a-z 0-9 . : / _ -")]
pub struct InvalidClientOrderId(pub String);

impl ClientOrderId {
    pub fn new(id: impl Into<String>) -> Result<ClientOrderId, InvalidClientOrderId> {
        let id = id.into();
        let valid = (1..=36).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'/' | b'_' | b'-'));
        if valid {
            Ok(ClientOrderId(id))
        } else {
            Err(InvalidClientOrderId(id))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ClientOrderId {
    type Error = InvalidClientOrderId;
    fn try_from(id: String) -> Result<Self, Self::Error> {
        ClientOrderId::new(id)
    }
}

impl From<ClientOrderId> for String {
    fn from(id: ClientOrderId) -> String {
        id.0
    }
}

impl fmt::Display for ClientOrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for ClientOrderId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<InvalidClientOrderId> for ApiError {
    fn from(error: InvalidClientOrderId) -> ApiError {
        ApiError::new(ErrorCode::InvalidOrder, error.to_string())
    }
}

/// How much a MARKET order trades: a base quantity, or (`quoteOrderQty`) an amount of the quote
/// asset to spend (BUY) or receive (SELL).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MarketAmount<N> {
    Base(N),
    Quote(N),
}

/// What triggers a stop-loss or take-profit order: a stop price, a trailing delta (in basis
/// points of the price since the order was placed), or both (the first reached).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StopTrigger<N> {
    pub stop_price: Option<N>,
    pub trailing_delta: Option<u32>,
}

/// One order's kind with exactly the fields that kind takes: a LIMIT order always has a price
/// and a time in force, a MARKET order never has a price, a stop order always has a trigger.
/// `N` is `f64` as a strategy writes it and `Decimal` once it is on the symbol's grid.
/// Order lists are made of these; an amendment changes the quantity of one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OrderKind<N> {
    Limit {
        price: N,
        quantity: N,
        tif: TimeInForce,
    },
    /// A LIMIT order the exchange refuses if it would trade at once.
    LimitMaker {
        price: N,
        quantity: N,
    },
    Market {
        amount: MarketAmount<N>,
    },
    /// A MARKET order once triggered.
    StopLoss {
        quantity: N,
        trigger: StopTrigger<N>,
    },
    /// A LIMIT order once triggered.
    StopLossLimit {
        price: N,
        quantity: N,
        tif: TimeInForce,
        trigger: StopTrigger<N>,
    },
    TakeProfit {
        quantity: N,
        trigger: StopTrigger<N>,
    },
    TakeProfitLimit {
        price: N,
        quantity: N,
        tif: TimeInForce,
        trigger: StopTrigger<N>,
    },
}

/// An order's fields as flat options: how a strategy's table and the exchange's parameters
/// spell them. [`OrderKind::from_fields`] checks which ones a kind needs and takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrderFields<N> {
    pub price: Option<N>,
    pub quantity: Option<N>,
    pub quote_quantity: Option<N>,
    pub tif: Option<TimeInForce>,
    pub stop_price: Option<N>,
    pub trailing_delta: Option<u32>,
}

impl<N> Default for OrderFields<N> {
    fn default() -> Self {
        OrderFields {
            price: None,
            quantity: None,
            quote_quantity: None,
            tif: None,
            stop_price: None,
            trailing_delta: None,
        }
    }
}

/// Which number of an order a value is: the grid check snaps each by its own rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderField {
    Price,
    Quantity,
    QuoteQuantity,
    StopPrice,
}

impl<N: Copy> OrderKind<N> {
    /// The kind `order_type` names, from flat fields; a message saying what is missing or
    /// not allowed otherwise. LIMIT-priced kinds default to GTC.
    pub fn from_fields(order_type: OrderType, fields: OrderFields<N>) -> Result<OrderKind<N>, String> {
        use OrderType as T;
        let OrderFields {
            price,
            quantity,
            quote_quantity,
            tif,
            stop_price,
            trailing_delta,
        } = fields;
        if quote_quantity.is_some() && order_type != T::Market {
            return Err("quote_quantity is only allowed on MARKET orders".into());
        }
        let priced = matches!(
            order_type,
            T::Limit | T::LimitMaker | T::StopLossLimit | T::TakeProfitLimit
        );
        let price = match (priced, price) {
            (true, Some(p)) => Some(p),
            (true, None) => return Err(format!("a {order_type} order needs a price")),
            (false, Some(_)) => return Err(format!("a {order_type} order takes no price")),
            (false, None) => None,
        };
        let has_tif = matches!(order_type, T::Limit | T::StopLossLimit | T::TakeProfitLimit);
        let tif = match (has_tif, tif) {
            (true, tif) => tif.unwrap_or(TimeInForce::Gtc),
            (false, Some(_)) => return Err(format!("a {order_type} order takes no time in force")),
            (false, None) => TimeInForce::Gtc,
        };
        let stop = matches!(
            order_type,
            T::StopLoss | T::StopLossLimit | T::TakeProfit | T::TakeProfitLimit
        );
        let trigger = StopTrigger {
            stop_price,
            trailing_delta,
        };
        match (stop, stop_price.is_some() || trailing_delta.is_some()) {
            (true, false) => return Err(format!("a {order_type} order needs stop_price or trailing_delta")),
            (false, true) => return Err(format!("a {order_type} order takes no stop_price or trailing_delta")),
            _ => {}
        }
        let quantity = || quantity.ok_or_else(|| format!("a {order_type} order needs a quantity"));
        // `priced` kinds have a price here.
        let price = || price.ok_or_else(|| format!("a {order_type} order needs a price"));
        Ok(match order_type {
            T::Market => OrderKind::Market {
                amount: match (fields.quantity, quote_quantity) {
                    (Some(_), Some(_)) => return Err("give either quantity or quote_quantity, not both".into()),
                    (None, None) => return Err("a MARKET order needs quantity or quote_quantity".into()),
                    (Some(q), None) => MarketAmount::Base(q),
                    (None, Some(q)) => MarketAmount::Quote(q),
                },
            },
            T::Limit => OrderKind::Limit {
                price: price()?,
                quantity: quantity()?,
                tif,
            },
            T::LimitMaker => OrderKind::LimitMaker {
                price: price()?,
                quantity: quantity()?,
            },
            T::StopLoss => OrderKind::StopLoss {
                quantity: quantity()?,
                trigger,
            },
            T::StopLossLimit => OrderKind::StopLossLimit {
                price: price()?,
                quantity: quantity()?,
                tif,
                trigger,
            },
            T::TakeProfit => OrderKind::TakeProfit {
                quantity: quantity()?,
                trigger,
            },
            T::TakeProfitLimit => OrderKind::TakeProfitLimit {
                price: price()?,
                quantity: quantity()?,
                tif,
                trigger,
            },
        })
    }

    /// The exchange's name of this kind.
    pub fn order_type(&self) -> OrderType {
        match self {
            OrderKind::Limit { .. } => OrderType::Limit,
            OrderKind::LimitMaker { .. } => OrderType::LimitMaker,
            OrderKind::Market { .. } => OrderType::Market,
            OrderKind::StopLoss { .. } => OrderType::StopLoss,
            OrderKind::StopLossLimit { .. } => OrderType::StopLossLimit,
            OrderKind::TakeProfit { .. } => OrderType::TakeProfit,
            OrderKind::TakeProfitLimit { .. } => OrderType::TakeProfitLimit,
        }
    }

    /// The fields of this kind, flat (the inverse of [`OrderKind::from_fields`]).
    pub fn fields(&self) -> OrderFields<N> {
        let mut out = OrderFields::default();
        let stop = |trigger: &StopTrigger<N>, out: &mut OrderFields<N>| {
            out.stop_price = trigger.stop_price;
            out.trailing_delta = trigger.trailing_delta;
        };
        match self {
            OrderKind::Limit { price, quantity, tif } => {
                (out.price, out.quantity, out.tif) = (Some(*price), Some(*quantity), Some(*tif));
            }
            OrderKind::LimitMaker { price, quantity } => (out.price, out.quantity) = (Some(*price), Some(*quantity)),
            OrderKind::Market {
                amount: MarketAmount::Base(q),
            } => out.quantity = Some(*q),
            OrderKind::Market {
                amount: MarketAmount::Quote(q),
            } => out.quote_quantity = Some(*q),
            OrderKind::StopLoss { quantity, trigger } | OrderKind::TakeProfit { quantity, trigger } => {
                out.quantity = Some(*quantity);
                stop(trigger, &mut out);
            }
            OrderKind::StopLossLimit {
                price,
                quantity,
                tif,
                trigger,
            }
            | OrderKind::TakeProfitLimit {
                price,
                quantity,
                tif,
                trigger,
            } => {
                (out.price, out.quantity, out.tif) = (Some(*price), Some(*quantity), Some(*tif));
                stop(trigger, &mut out);
            }
        }
        out
    }

    pub fn price(&self) -> Option<N> {
        self.fields().price
    }

    /// The base quantity (none for a MARKET order by quote amount).
    pub fn quantity(&self) -> Option<N> {
        self.fields().quantity
    }

    pub fn tif(&self) -> Option<TimeInForce> {
        self.fields().tif
    }

    /// The same kind with each number converted by `convert(field, value)`.
    pub fn try_map<M: Copy, E>(
        &self,
        mut convert: impl FnMut(OrderField, N) -> Result<M, E>,
    ) -> Result<OrderKind<M>, E> {
        Ok(match self {
            OrderKind::Limit { price, quantity, tif } => OrderKind::Limit {
                quantity: convert(OrderField::Quantity, *quantity)?,
                price: convert(OrderField::Price, *price)?,
                tif: *tif,
            },
            OrderKind::LimitMaker { price, quantity } => OrderKind::LimitMaker {
                quantity: convert(OrderField::Quantity, *quantity)?,
                price: convert(OrderField::Price, *price)?,
            },
            OrderKind::Market {
                amount: MarketAmount::Base(q),
            } => OrderKind::Market {
                amount: MarketAmount::Base(convert(OrderField::Quantity, *q)?),
            },
            OrderKind::Market {
                amount: MarketAmount::Quote(q),
            } => OrderKind::Market {
                amount: MarketAmount::Quote(convert(OrderField::QuoteQuantity, *q)?),
            },
            OrderKind::StopLoss { quantity, trigger } => OrderKind::StopLoss {
                quantity: convert(OrderField::Quantity, *quantity)?,
                trigger: map_trigger(trigger, &mut convert)?,
            },
            OrderKind::TakeProfit { quantity, trigger } => OrderKind::TakeProfit {
                quantity: convert(OrderField::Quantity, *quantity)?,
                trigger: map_trigger(trigger, &mut convert)?,
            },
            OrderKind::StopLossLimit {
                price,
                quantity,
                tif,
                trigger,
            } => OrderKind::StopLossLimit {
                quantity: convert(OrderField::Quantity, *quantity)?,
                price: convert(OrderField::Price, *price)?,
                tif: *tif,
                trigger: map_trigger(trigger, &mut convert)?,
            },
            OrderKind::TakeProfitLimit {
                price,
                quantity,
                tif,
                trigger,
            } => OrderKind::TakeProfitLimit {
                quantity: convert(OrderField::Quantity, *quantity)?,
                price: convert(OrderField::Price, *price)?,
                tif: *tif,
                trigger: map_trigger(trigger, &mut convert)?,
            },
        })
    }
}

fn map_trigger<N: Copy, M, E>(
    trigger: &StopTrigger<N>,
    convert: &mut impl FnMut(OrderField, N) -> Result<M, E>,
) -> Result<StopTrigger<M>, E> {
    Ok(StopTrigger {
        stop_price: trigger
            .stop_price
            .map(|p| convert(OrderField::StopPrice, p))
            .transpose()?,
        trailing_delta: trigger.trailing_delta,
    })
}

/// What a strategy asks for with `orders.place{...}`: numbers as the strategy wrote them, the
/// kind already well-formed. The venue puts it on the symbol's grid before anything is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRequest {
    pub symbol: String,
    pub side: Side,
    pub kind: OrderKind<f64>,
    /// Minted by the venue when not given.
    pub client_id: Option<ClientOrderId>,
    /// The exchange's default when not given.
    pub stp: Option<SelfTradePrevention>,
}

impl OrderRequest {
    pub fn new(symbol: &str, side: Side, kind: OrderKind<f64>) -> OrderRequest {
        OrderRequest {
            symbol: symbol.into(),
            side,
            kind,
            client_id: None,
            stp: None,
        }
    }

    /// A GTC LIMIT order; the client id is left to the venue.
    pub fn limit(symbol: &str, side: Side, quantity: f64, price: f64) -> OrderRequest {
        OrderRequest::new(
            symbol,
            side,
            OrderKind::Limit {
                price,
                quantity,
                tif: TimeInForce::Gtc,
            },
        )
    }

    /// A MARKET order by base quantity or quote amount.
    pub fn market(symbol: &str, side: Side, amount: MarketAmount<f64>) -> OrderRequest {
        OrderRequest::new(symbol, side, OrderKind::Market { amount })
    }

    pub fn with_client_id(mut self, id: ClientOrderId) -> OrderRequest {
        self.client_id = Some(id);
        self
    }
}

/// The three kinds of order list (Binance's OCO, OTO and OTOCO).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListType {
    /// One-cancels-the-other: two orders, one above the market and one below; one working or
    /// trading ends the other.
    Oco,
    /// One-triggers-the-other: a working order, and a pending order placed once it has filled.
    Oto,
    /// A working order, and an OCO pair placed once it has filled.
    Otoco,
}

wire_names!(ListType { Oco => "OCO", Oto => "OTO", Otoco => "OTOCO" });

/// The orders of a list, each in its place (Binance's names: `above`/`below`, `working`/`pending`).
#[derive(Debug, Clone, PartialEq)]
pub enum ListLegs<T> {
    Oco {
        above: T,
        below: T,
    },
    Oto {
        working: T,
        pending: T,
    },
    Otoco {
        working: T,
        pending_above: T,
        pending_below: T,
    },
}

impl<T> ListLegs<T> {
    pub fn list_type(&self) -> ListType {
        match self {
            ListLegs::Oco { .. } => ListType::Oco,
            ListLegs::Oto { .. } => ListType::Oto,
            ListLegs::Otoco { .. } => ListType::Otoco,
        }
    }

    /// Each order with its place's name (`above`, `pending_below`, ...), the working order first.
    pub fn named(&self) -> Vec<(&'static str, &T)> {
        match self {
            ListLegs::Oco { above, below } => vec![("above", above), ("below", below)],
            ListLegs::Oto { working, pending } => vec![("working", working), ("pending", pending)],
            ListLegs::Otoco {
                working,
                pending_above,
                pending_below,
            } => vec![
                ("working", working),
                ("pending_above", pending_above),
                ("pending_below", pending_below),
            ],
        }
    }

    /// The same places, each order converted by `convert(name, order)`.
    pub fn try_map<U, E>(&self, mut convert: impl FnMut(&'static str, &T) -> Result<U, E>) -> Result<ListLegs<U>, E> {
        Ok(match self {
            ListLegs::Oco { above, below } => ListLegs::Oco {
                above: convert("above", above)?,
                below: convert("below", below)?,
            },
            ListLegs::Oto { working, pending } => ListLegs::Oto {
                working: convert("working", working)?,
                pending: convert("pending", pending)?,
            },
            ListLegs::Otoco {
                working,
                pending_above,
                pending_below,
            } => ListLegs::Otoco {
                working: convert("working", working)?,
                pending_above: convert("pending_above", pending_above)?,
                pending_below: convert("pending_below", pending_below)?,
            },
        })
    }
}

/// What a strategy asks for with `orders.place_list{...}`: every order on the list's symbol (each
/// order's own `symbol` and `stp` are the list's), numbers as the strategy wrote them.
#[derive(Debug, Clone, PartialEq)]
pub struct ListRequest {
    pub symbol: String,
    pub legs: ListLegs<OrderRequest>,
    /// The list's own client id (`listClientOrderId`); minted by the venue when not given.
    pub client_id: Option<ClientOrderId>,
    /// Every order's self-trade prevention mode; the exchange's default when not given.
    pub stp: Option<SelfTradePrevention>,
}

/// A list as placed: the exchange's list id once known, its client id, and each order.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedList {
    pub list_id: Option<u64>,
    pub client_id: String,
    pub orders: ListLegs<Order>,
}

/// How a strategy names an order list: the exchange's list id or the list's client id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListRef {
    Id(u64),
    ClientId(String),
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
    /// The trigger price of a stop or take-profit order.
    pub stop_price: Option<f64>,
    /// The exchange's id of the order list this order is a leg of.
    pub list_id: Option<u64>,
}

/// What a cancel-replace does when its cancel fails (Binance's `cancelReplaceMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReplaceMode {
    /// Place the new order only if the old one was canceled.
    StopOnFailure,
    /// Place the new order whatever became of the cancel.
    AllowFailure,
}

wire_names!(ReplaceMode {
    StopOnFailure => "STOP_ON_FAILURE",
    AllowFailure => "ALLOW_FAILURE",
});

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
