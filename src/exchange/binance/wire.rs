//! Binance spot's JSON shapes, shared by the client (which parses them) and the
//! simulator (which produces them). Field names follow the exchange exactly;
//! numbers the exchange sends as decimal strings are `Decimal` (or borrowed `&str`
//! in hot stream events, so the client can parse them without allocating).

use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

/// Reads an optional field leniently: absent, `null` or of an unexpected shape is `None`
/// (what the exchange adds or changes in a field the client can do without must not make
/// the whole answer unreadable).
fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

/// Reads a list leniently: entries of an unexpected shape are skipped, a non-list is empty.
fn lenient_list<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    let serde_json::Value::Array(items) = value else {
        return Ok(Vec::new());
    };
    Ok(items
        .into_iter()
        .filter_map(|item| serde_json::from_value(item).ok())
        .collect())
}

/// `{"code": -1121, "msg": "Invalid symbol."}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: i64,
    pub msg: String,
    /// What the refused request did do, on the refusals that say (a cancel-replace's two outcomes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

/// `GET /api/v3/time`
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerTime {
    pub server_time: i64,
}

/// One `rateLimits` entry. Clients parse entries leniently from `serde_json::Value`
/// (a malformed entry must not discard the others); this type is for producing them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitEntry {
    pub rate_limit_type: String,
    pub interval: String,
    pub interval_num: u32,
    pub limit: u64,
    /// Present in WebSocket API responses and `rateLimit/order`: current usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// `GET /api/v3/exchangeInfo`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeInfo {
    pub timezone: String,
    pub server_time: i64,
    /// Raw entries; see [`RateLimitEntry`].
    pub rate_limits: Vec<serde_json::Value>,
    #[serde(default)]
    pub exchange_filters: Vec<serde_json::Value>,
    pub symbols: Vec<SymbolEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SymbolEntry {
    pub symbol: String,
    pub status: String,
    pub base_asset: String,
    pub base_asset_precision: u32,
    pub quote_asset: String,
    pub quote_precision: u32,
    pub quote_asset_precision: u32,
    #[serde(default)]
    pub order_types: Vec<String>,
    #[serde(default)]
    pub is_spot_trading_allowed: bool,
    #[serde(default)]
    pub quote_order_qty_market_allowed: bool,
    pub filters: Vec<Filter>,
}

/// A symbol filter. Unknown filter types are kept as `Other` and ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "filterType")]
pub enum Filter {
    #[serde(rename = "PRICE_FILTER", rename_all = "camelCase")]
    Price {
        min_price: Decimal,
        max_price: Decimal,
        tick_size: Decimal,
    },
    #[serde(rename = "LOT_SIZE", rename_all = "camelCase")]
    LotSize {
        min_qty: Decimal,
        max_qty: Decimal,
        step_size: Decimal,
    },
    #[serde(rename = "MARKET_LOT_SIZE", rename_all = "camelCase")]
    MarketLotSize {
        min_qty: Decimal,
        max_qty: Decimal,
        step_size: Decimal,
    },
    #[serde(rename = "NOTIONAL", rename_all = "camelCase")]
    Notional {
        min_notional: Decimal,
        apply_min_to_market: bool,
        max_notional: Decimal,
        apply_max_to_market: bool,
        avg_price_mins: u32,
    },
    /// The older form of NOTIONAL.
    #[serde(rename = "MIN_NOTIONAL", rename_all = "camelCase")]
    MinNotional {
        min_notional: Decimal,
        apply_to_market: bool,
        avg_price_mins: u32,
    },
    #[serde(rename = "MAX_NUM_ORDERS", rename_all = "camelCase")]
    MaxNumOrders { max_num_orders: u32 },
    #[serde(other)]
    Other,
}

/// `GET /api/v3/depth` and the partial-depth streams (`<s>@depth5`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepthSnapshot {
    pub last_update_id: u64,
    pub bids: Vec<[Decimal; 2]>,
    pub asks: Vec<[Decimal; 2]>,
}

/// `GET /api/v3/ticker/price` (one symbol).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceTicker {
    pub symbol: String,
    pub price: Decimal,
}

/// `GET /api/v3/ticker/bookTicker` (one symbol).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookTicker {
    pub symbol: String,
    pub bid_price: Decimal,
    pub bid_qty: Decimal,
    pub ask_price: Decimal,
    pub ask_qty: Decimal,
}

/// `GET /api/v3/avgPrice`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AvgPrice {
    pub mins: u32,
    pub price: Decimal,
    pub close_time: i64,
}

/// One row of `GET /api/v3/klines`: an array
/// `[openTime, open, high, low, close, volume, closeTime, quoteVolume, trades, takerBuyBase, takerBuyQuote, "0"]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KlineRow(
    pub i64,
    pub Decimal,
    pub Decimal,
    pub Decimal,
    pub Decimal,
    pub Decimal,
    pub i64,
    pub Decimal,
    pub u64,
    pub Decimal,
    pub Decimal,
    pub String,
);

/// One element of `GET /api/v3/trades`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestTrade {
    pub id: u64,
    pub price: Decimal,
    pub qty: Decimal,
    pub quote_qty: Decimal,
    pub time: i64,
    pub is_buyer_maker: bool,
    pub is_best_match: bool,
}

/// One fill in a FULL order response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fill {
    pub price: Decimal,
    pub qty: Decimal,
    pub commission: Decimal,
    pub commission_asset: String,
    pub trade_id: u64,
}

/// An order as REST returns it from `POST`, `GET` and `DELETE /api/v3/order`,
/// `openOrders` and `allOrders`. Fields absent from some of those are optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderWire {
    pub symbol: String,
    pub order_id: u64,
    #[serde(default = "minus_one")]
    pub order_list_id: i64,
    pub client_order_id: String,
    /// On cancels: the client id of the order that was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orig_client_order_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transact_time: Option<i64>,
    pub price: Decimal,
    pub orig_qty: Decimal,
    pub executed_qty: Decimal,
    pub cummulative_quote_qty: Decimal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orig_quote_order_qty: Option<Decimal>,
    pub status: String,
    pub time_in_force: String,
    #[serde(rename = "type")]
    pub order_type: String,
    pub side: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_working: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_trade_prevention_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fills: Vec<Fill>,
}

fn minus_one() -> i64 {
    -1
}

/// An order answer as the client reads it (`POST`, `GET` and `DELETE /api/v3/order`,
/// `openOrders`, and their WebSocket API twins). Only what the runner cannot do without is
/// required (which order, on which symbol, in which state); every other field is optional and
/// read leniently, and unknown fields are ignored. The fill quantities are optional too: an
/// answer without them says the order exists but not how much of it filled, and the client
/// then looks the order up ([`OrderAnswer::fill`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderAnswer {
    pub symbol: String,
    pub order_id: u64,
    pub client_order_id: String,
    /// On cancels: the client id of the order that was cancelled.
    #[serde(default, deserialize_with = "lenient")]
    pub orig_client_order_id: Option<String>,
    pub status: String,
    #[serde(default, deserialize_with = "lenient")]
    pub executed_qty: Option<Decimal>,
    #[serde(default, deserialize_with = "lenient")]
    pub cummulative_quote_qty: Option<Decimal>,
    #[serde(default, deserialize_with = "lenient")]
    pub price: Option<Decimal>,
    #[serde(default, deserialize_with = "lenient")]
    pub orig_qty: Option<Decimal>,
    #[serde(default, deserialize_with = "lenient")]
    pub side: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub transact_time: Option<i64>,
    #[serde(default, deserialize_with = "lenient")]
    pub update_time: Option<i64>,
    #[serde(default, deserialize_with = "lenient_list")]
    pub fills: Vec<Fill>,
    /// The order list the order is a leg of (-1 when none).
    #[serde(default, deserialize_with = "lenient")]
    pub order_list_id: Option<i64>,
}

impl OrderAnswer {
    /// The cumulative filled quantity and quote quantity, when the answer carries both.
    pub fn fill(&self) -> Option<(Decimal, Decimal)> {
        Some((self.executed_qty?, self.cummulative_quote_qty?))
    }
}

/// `PUT /api/v3/order/amend/keepPriority` (`order.amend.keepPriority`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AmendAnswer {
    #[serde(default)]
    pub transact_time: Option<i64>,
    pub amended_order: AmendedOrder,
}

/// The order an amendment changed (its fields are spelt unlike an order answer's).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AmendedOrder {
    pub symbol: String,
    pub order_id: u64,
    pub client_order_id: String,
    pub qty: Decimal,
    pub executed_qty: Decimal,
    pub cumulative_quote_qty: Decimal,
    pub status: String,
}

/// `POST /api/v3/order/cancelReplace` (`order.cancelReplace`): its answer, and on a refusal
/// (-2021, -2022) the refusal's `data`. A failed step's response is the exchange's `{code, msg}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelReplaceAnswer {
    pub cancel_result: String,
    pub new_order_result: String,
    pub cancel_response: serde_json::Value,
    #[serde(default)]
    pub new_order_response: Option<serde_json::Value>,
}

/// One order of a list, as the list names it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListOrder {
    pub symbol: String,
    pub order_id: u64,
    pub client_order_id: String,
}

/// An order list as `POST /api/v3/orderList/{oco,oto,otoco}`, `DELETE` and `GET /api/v3/orderList`
/// (and the WebSocket API's `orderList.*`) answer it: the list, its orders, and on a placement or a
/// cancel each order's report.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListAnswer {
    pub order_list_id: u64,
    pub list_client_order_id: String,
    #[serde(default)]
    pub list_order_status: Option<String>,
    #[serde(default, deserialize_with = "lenient_list")]
    pub orders: Vec<ListOrder>,
    #[serde(default, deserialize_with = "lenient_list")]
    pub order_reports: Vec<OrderAnswer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountBalance {
    pub asset: String,
    pub free: Decimal,
    pub locked: Decimal,
}

/// `GET /api/v3/account` (the fields the runtime uses; others are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub maker_commission: u32,
    pub taker_commission: u32,
    pub can_trade: bool,
    pub update_time: i64,
    pub account_type: String,
    pub balances: Vec<AccountBalance>,
}

/// One element of `GET /api/v3/myTrades`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MyTrade {
    pub symbol: String,
    pub id: u64,
    pub order_id: u64,
    pub order_list_id: i64,
    pub price: Decimal,
    pub qty: Decimal,
    pub quote_qty: Decimal,
    pub commission: Decimal,
    pub commission_asset: String,
    pub time: i64,
    pub is_buyer: bool,
    pub is_maker: bool,
    pub is_best_match: bool,
}

// ---- market streams (hot path: borrowed strings) ----

/// A combined-stream frame: `{"stream": "btcusdt@bookTicker", "data": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Combined<'a, T> {
    pub stream: &'a str,
    pub data: T,
}

/// `<symbol>@bookTicker`: `{"u":400900217,"s":"BNBUSDT","b":"25.35","B":"31.21","a":"25.36","A":"40.66"}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BookTickerEvent<'a> {
    pub u: u64,
    pub s: &'a str,
    pub b: &'a str,
    #[serde(rename = "B")]
    pub bid_qty: &'a str,
    pub a: &'a str,
    #[serde(rename = "A")]
    pub ask_qty: &'a str,
}

/// `<symbol>@depth` / `<symbol>@depth@100ms` diff event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DepthUpdateEvent<'a> {
    pub e: &'a str,
    #[serde(rename = "E")]
    pub event_time: i64,
    pub s: &'a str,
    /// First update id in this event.
    #[serde(rename = "U")]
    pub first_update_id: u64,
    /// Final update id in this event.
    pub u: u64,
    #[serde(borrow)]
    pub b: Vec<[&'a str; 2]>,
    #[serde(borrow)]
    pub a: Vec<[&'a str; 2]>,
}

/// `<symbol>@trade`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TradeEvent<'a> {
    pub e: &'a str,
    #[serde(rename = "E")]
    pub event_time: i64,
    pub s: &'a str,
    pub t: u64,
    pub p: &'a str,
    pub q: &'a str,
    #[serde(rename = "T")]
    pub trade_time: i64,
    /// Is the buyer the market maker?
    pub m: bool,
    #[serde(rename = "M", default)]
    pub best_match: bool,
}

/// `<symbol>@kline_<interval>`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KlineEvent<'a> {
    pub e: &'a str,
    #[serde(rename = "E")]
    pub event_time: i64,
    pub s: &'a str,
    #[serde(borrow)]
    pub k: KlineBody<'a>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KlineBody<'a> {
    pub t: i64,
    #[serde(rename = "T")]
    pub close_time: i64,
    pub s: &'a str,
    pub i: &'a str,
    pub f: i64,
    #[serde(rename = "L")]
    pub last_trade_id: i64,
    pub o: &'a str,
    pub c: &'a str,
    pub h: &'a str,
    pub l: &'a str,
    pub v: &'a str,
    pub n: u64,
    pub x: bool,
    pub q: &'a str,
    #[serde(rename = "V")]
    pub taker_base: &'a str,
    #[serde(rename = "Q")]
    pub taker_quote: &'a str,
    #[serde(rename = "B")]
    pub ignore: &'a str,
}

/// A SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS request on a market-stream connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamRequest {
    pub method: String,
    #[serde(default)]
    pub params: Vec<String>,
    pub id: serde_json::Value,
}

// ---- WebSocket API ----

/// A WebSocket API request: `{"id": ..., "method": "...", "params": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WsApiRequest {
    pub id: serde_json::Value,
    pub method: String,
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
}

/// A WebSocket API response. `error.data.retryAfter`, when present, is epoch ms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WsApiResponse {
    pub id: serde_json::Value,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<WsApiError>,
    /// Read leniently: a malformed entry must not make the answer (an order's) unreadable.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "lenient_list")]
    pub rate_limits: Vec<RateLimitEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WsApiError {
    pub code: i64,
    pub msg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

/// A user-data event pushed on the WebSocket API: `{"subscriptionId": 0, "event": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserDataFrame {
    pub subscription_id: u64,
    pub event: UserDataEvent,
}

// Each event is parsed once and consumed at once; boxing the large variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "e")]
pub enum UserDataEvent {
    #[serde(rename = "executionReport")]
    ExecutionReport(ExecutionReport),
    #[serde(rename = "outboundAccountPosition")]
    AccountPosition(AccountPosition),
    #[serde(rename = "balanceUpdate")]
    BalanceUpdate(BalanceUpdate),
    #[serde(rename = "listStatus")]
    ListStatus(ListStatusEvent),
    #[serde(rename = "eventStreamTerminated")]
    StreamTerminated {
        #[serde(rename = "E")]
        event_time: i64,
    },
    #[serde(other)]
    Other,
}

/// An order list's status (`listStatus`). Single-letter names are the exchange's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListStatusEvent {
    pub s: String,
    /// The list id.
    pub g: u64,
    /// `EXEC_STARTED`, `EXECUTING`, `ALL_DONE`, `REJECT`.
    #[serde(rename = "L")]
    pub list_order_status: String,
    /// The list's client id.
    #[serde(rename = "C")]
    pub list_client_id: String,
    #[serde(rename = "O", default)]
    pub orders: Vec<ListStatusOrder>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListStatusOrder {
    pub s: String,
    pub i: u64,
    pub c: String,
}

/// An order update. Single-letter names are the exchange's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionReport {
    #[serde(rename = "E")]
    pub event_time: i64,
    pub s: String,
    /// Client order id.
    pub c: String,
    #[serde(rename = "S")]
    pub side: String,
    /// Order type.
    pub o: String,
    /// Time in force.
    pub f: String,
    pub q: Decimal,
    pub p: Decimal,
    /// Original client order id (on cancels), else "".
    #[serde(rename = "C", default)]
    pub orig_client_id: String,
    /// Execution type: NEW, CANCELED, REJECTED, TRADE, EXPIRED, ...
    pub x: String,
    /// Order status.
    #[serde(rename = "X")]
    pub status: String,
    /// Reject reason ("NONE" when none).
    pub r: String,
    /// Order id.
    pub i: u64,
    /// Last executed quantity.
    pub l: Decimal,
    /// Cumulative filled quantity.
    pub z: Decimal,
    /// Last executed price.
    #[serde(rename = "L")]
    pub last_price: Decimal,
    /// Commission amount of the last fill.
    pub n: Decimal,
    /// Commission asset.
    #[serde(rename = "N")]
    pub commission_asset: Option<String>,
    /// Transaction time.
    #[serde(rename = "T")]
    pub transaction_time: i64,
    /// Trade id (-1 when not a trade).
    pub t: i64,
    /// Is the order on the book?
    pub w: bool,
    /// Is this trade the maker side?
    pub m: bool,
    /// Order creation time.
    #[serde(rename = "O")]
    pub created: i64,
    /// Cumulative quote quantity.
    #[serde(rename = "Z")]
    pub cum_quote: Decimal,
    /// The order list id (-1 when the order is in none).
    #[serde(default = "no_list")]
    pub g: i64,
    /// Last quote quantity.
    #[serde(rename = "Y")]
    pub last_quote: Decimal,
}

fn no_list() -> i64 {
    -1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountPosition {
    #[serde(rename = "E")]
    pub event_time: i64,
    pub u: i64,
    #[serde(rename = "B")]
    pub balances: Vec<PositionBalance>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PositionBalance {
    pub a: String,
    pub f: Decimal,
    pub l: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BalanceUpdate {
    #[serde(rename = "E")]
    pub event_time: i64,
    pub a: String,
    pub d: Decimal,
    #[serde(rename = "T")]
    pub clear_time: i64,
}

/// `GET /api/v3/ticker/24hr` (one symbol). Fields marked optional are absent with `type=MINI`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ticker24hr {
    pub symbol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_change: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_change_percent: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weighted_avg_price: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_close_price: Option<Decimal>,
    pub last_price: Decimal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_qty: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bid_price: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bid_qty: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ask_price: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ask_qty: Option<Decimal>,
    pub open_price: Decimal,
    pub high_price: Decimal,
    pub low_price: Decimal,
    pub volume: Decimal,
    pub quote_volume: Decimal,
    pub open_time: i64,
    pub close_time: i64,
    /// First trade id in the window (-1 when none).
    pub first_id: i64,
    pub last_id: i64,
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_status_event_names_each_order_and_its_list() {
        let text = r#"{"e":"listStatus","E":1,"s":"BTCUSDT","g":7,"c":"OCO","l":"EXEC_STARTED","L":"EXECUTING",
            "r":"NONE","C":"list-1","T":1,"O":[{"s":"BTCUSDT","i":11,"c":"tp"},{"s":"BTCUSDT","i":12,"c":"sl"}]}"#;
        let UserDataEvent::ListStatus(status) = serde_json::from_str(text).unwrap() else {
            panic!("a listStatus event")
        };
        assert_eq!((status.g, status.list_client_id.as_str()), (7, "list-1"));
        assert_eq!(
            status.orders.iter().map(|o| (o.i, o.c.as_str())).collect::<Vec<_>>(),
            vec![(11, "tp"), (12, "sl")]
        );
    }

    #[test]
    fn parses_documented_examples() {
        let bt: BookTickerEvent = serde_json::from_str(
            r#"{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}"#,
        )
        .unwrap();
        assert_eq!((bt.u, bt.s, bt.a), (400900217, "BNBUSDT", "25.36520000"));

        let du: DepthUpdateEvent = serde_json::from_str(
            r#"{"e":"depthUpdate","E":123456789,"s":"BNBBTC","U":157,"u":160,"b":[["0.0024","10"]],"a":[["0.0026","100"]]}"#,
        )
        .unwrap();
        assert_eq!((du.first_update_id, du.u, du.b[0][0]), (157, 160, "0.0024"));

        let frame: UserDataFrame = serde_json::from_str(
            r#"{"subscriptionId":0,"event":{"e":"executionReport","E":1499405658658,"s":"ETHBTC","c":"mUvoqJxFIILMdfAW5iGSOW","S":"BUY","o":"LIMIT","f":"GTC","q":"1.00000000","p":"0.10264410","P":"0.00000000","F":"0.00000000","g":-1,"C":"","x":"NEW","X":"NEW","r":"NONE","i":4293153,"l":"0.00000000","z":"0.00000000","L":"0.00000000","n":"0","N":null,"T":1499405658657,"t":-1,"v":3,"I":8641984,"w":true,"m":false,"M":false,"O":1499405658657,"Z":"0.00000000","Y":"0.00000000","Q":"0.00000000","W":1499405658657,"V":"NONE"}}"#,
        )
        .unwrap();
        match frame.event {
            UserDataEvent::ExecutionReport(r) => assert_eq!((r.i, r.status.as_str()), (4293153, "NEW")),
            other => panic!("unexpected {other:?}"),
        }

        let f: Vec<Filter> = serde_json::from_str(
            r#"[{"filterType":"PRICE_FILTER","minPrice":"0.00000100","maxPrice":"100000.00000000","tickSize":"0.00000100"},{"filterType":"ICEBERG_PARTS","limit":10}]"#,
        )
        .unwrap();
        assert!(matches!(f[1], Filter::Other));
    }
}
