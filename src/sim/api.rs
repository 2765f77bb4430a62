//! Every endpoint the simulator serves, with its weight declared beside it, and the handlers.
//! REST (`/api/v3/...`) and the WebSocket API share this table: same parameters, same
//! weights, same answers.

use rust_decimal::Decimal;
use serde_json::{json, Value};

use super::api_lists;
use super::candles::{Candle, Span, MINUTE_MS};
use super::error::ApiErr;
use super::limiter::Charge;
use super::matching::Exchange;
use super::num::d8;
use super::order_record::{Kind, NewOrder, Order};
use super::params::Params;
use super::run_state::Sim;
use super::stats;
use super::stp::Stp;
use super::symbol_state::TradeRec;
use crate::exchange::binance::wire::{
    AccountBalance, AvgPrice, BookTicker, ExchangeInfo, Filter, KlineRow, MyTrade, PriceTicker, RateLimitEntry,
    RestTrade, SymbolEntry,
};
use crate::exchange::types::{OrderStatus, Side, TimeInForce};
use crate::ledger::limits::{PoolKind, RateLimit};

const DAY_MS: i64 = 1_440 * MINUTE_MS;

/// What an endpoint does to the order pools (and whether success refunds its weight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    None,
    /// Places an order: +1 unfilled order; weight refunded on success.
    Place,
    /// Cancels: weight refunded on success.
    Cancel,
}

pub type Handler = fn(&Sim, &Params, i64) -> Result<Value, ApiErr>;

/// Settles an admitted request's weight once it has run: a successful order or cancel costs
/// nothing, anything else what it was charged. Returns the weight kept.
pub fn settle_weight(sim: &Sim, effect: Effect, charge: Charge, result: &Result<Value, ApiErr>) -> u64 {
    let kept = match (effect, result) {
        (Effect::None, _) | (_, Err(_)) => charge.weight,
        (_, Ok(_)) => 0,
    };
    if effect != Effect::None {
        sim.limiter.lock().settle(charge, kept);
    }
    kept
}

pub struct Endpoint {
    pub method: &'static str,
    /// Path under `/api/v3/`.
    pub path: &'static str,
    /// WebSocket API method name.
    pub ws: &'static str,
    pub signed: bool,
    pub effect: Effect,
    /// Parameters the handler reads (besides the signing ones).
    pub params: &'static [&'static str],
    pub weight: fn(&Params) -> u64,
    pub run: Handler,
}

impl Endpoint {
    /// The weight a request is charged: the endpoint's rule, except that `myPreventedMatches` for a
    /// symbol the exchange does not list costs 2 whatever it asked for (rest-api.md: "If symbol is
    /// invalid: 2").
    pub fn weight_of(&self, sim: &Sim, p: &Params) -> u64 {
        if self.path == "myPreventedMatches" {
            let listed = p
                .get("symbol")
                .is_some_and(|s| sim.world.lock().ex.symbol_index(s).is_some());
            if !listed {
                return 2;
            }
        }
        (self.weight)(p)
    }
}

/// Parameters consumed by authentication, not by handlers (REST sends the key as a header).
pub const REST_SIGNING_PARAMS: [&str; 3] = ["timestamp", "recvWindow", "signature"];
/// The WebSocket API also carries the key as `apiKey`.
pub const WS_SIGNING_PARAMS: [&str; 4] = ["timestamp", "recvWindow", "signature", "apiKey"];

const ORDER_PARAMS: &[&str] = &[
    "stopPrice",
    "icebergQty",
    "symbol",
    "side",
    "type",
    "timeInForce",
    "quantity",
    "quoteOrderQty",
    "price",
    "newClientOrderId",
    "newOrderRespType",
    "selfTradePreventionMode",
    "strategyId",
    "strategyType",
    "computeCommissionRates",
];

const KLINE_PARAMS: &[&str] = &["symbol", "interval", "startTime", "endTime", "timeZone", "limit"];
const ONE_OR_MANY_PARAMS: &[&str] = &["symbol", "symbols", "symbolStatus"];
const CANCEL_PARAMS: &[&str] = &[
    "symbol",
    "orderId",
    "origClientOrderId",
    "newClientOrderId",
    "cancelRestrictions",
];

/// Every endpoint, one a line: (method,) REST path under `/api/v3/`, WebSocket API method,
/// (effect,) parameters, weight, handler. `public` rows are GETs without effect.
#[rustfmt::skip]
pub static ENDPOINTS: &[Endpoint] = &[
    public("ping", "ping", &[], |_| 1, ping),
    public("time", "time", &[], |_| 1, time),
    public("exchangeInfo", "exchangeInfo",
        &["symbol", "symbols", "permissions", "showPermissionSets", "symbolStatus"], |_| 20, exchange_info),
    public("depth", "depth", &["symbol", "limit", "symbolStatus"], depth_weight, depth),
    public("trades", "trades.recent", &["symbol", "limit"], |_| 25, trades),
    public("historicalTrades", "trades.historical", &["symbol", "limit", "fromId"], |_| 25, historical_trades),
    public("aggTrades", "trades.aggregate", &["symbol", "fromId", "startTime", "endTime", "limit"], |_| 4, agg_trades),
    public("klines", "klines", KLINE_PARAMS, |_| 2, klines),
    public("uiKlines", "uiKlines", KLINE_PARAMS, |_| 2, klines),
    public("avgPrice", "avgPrice", &["symbol"], |_| 2, avg_price),
    public("ticker/price", "ticker.price", ONE_OR_MANY_PARAMS, one_or_many_weight, ticker_price),
    public("ticker/bookTicker", "ticker.book", ONE_OR_MANY_PARAMS, one_or_many_weight, book_ticker),
    public("ticker/24hr", "ticker.24hr",
        &["symbol", "symbols", "type", "symbolStatus"], ticker_24hr_weight, ticker_24hr),
    public("ticker", "ticker",
        &["symbol", "symbols", "windowSize", "type", "symbolStatus"], per_symbol_4_weight, ticker_window),
    public("ticker/tradingDay", "ticker.tradingDay",
        &["symbol", "symbols", "timeZone", "type", "symbolStatus"], per_symbol_4_weight, ticker_trading_day),
    public("executionRules", "executionRules",
        &["symbol", "symbols", "symbolStatus"], execution_rules_weight, execution_rules),
    public("referencePrice", "referencePrice", &["symbol"], |_| 2, reference_price),
    signed("POST", "order", "order.place", Effect::Place, ORDER_PARAMS, |_| 1, place_order),
    signed("POST", "order/test", "order.test", Effect::None, ORDER_PARAMS, test_order_weight, test_order),
    signed("GET", "order", "order.status", Effect::None,
        &["symbol", "orderId", "origClientOrderId"], |_| 4, query_order),
    signed("DELETE", "order", "order.cancel", Effect::Cancel, CANCEL_PARAMS, |_| 1, cancel_order),
    signed("PUT", "order/amend/keepPriority", "order.amend.keepPriority", Effect::None,
        &["symbol", "orderId", "origClientOrderId", "newClientOrderId", "newQty"], |_| 4, amend_keep_priority),
    signed("POST", "order/cancelReplace", "order.cancelReplace", Effect::Place,
        CANCEL_REPLACE_PARAMS, |_| 1, cancel_replace),
    signed("GET", "openOrders", "openOrders.status", Effect::None, &["symbol"], open_orders_weight, open_orders),
    signed("DELETE", "openOrders", "openOrders.cancelAll", Effect::Cancel, &["symbol"], |_| 1, cancel_open_orders),
    signed("GET", "allOrders", "allOrders", Effect::None,
        &["symbol", "orderId", "startTime", "endTime", "limit"], |_| 20, all_orders),
    signed("GET", "account", "account.status", Effect::None, &["omitZeroBalances"], |_| 20, account),
    signed("GET", "myTrades", "myTrades", Effect::None,
        &["symbol", "orderId", "startTime", "endTime", "fromId", "limit"], my_trades_weight, my_trades),
    signed("GET", "myPreventedMatches", "myPreventedMatches", Effect::None,
        &["symbol", "preventedMatchId", "orderId", "fromPreventedMatchId", "limit"],
        prevented_matches_weight, my_prevented_matches),
    signed("GET", "rateLimit/order", "account.rateLimits.orders", Effect::None, &[], |_| 40, rate_limit_order),
    signed("GET", "account/commission", "account.commission", Effect::None, &["symbol"], |_| 20, commission),
    signed("POST", "orderList/oco", "orderList.place.oco", Effect::Place, api_lists::OCO_PARAMS, |_| 1, api_lists::place_oco),
    signed("POST", "orderList/oto", "orderList.place.oto", Effect::Place, api_lists::OTO_PARAMS, |_| 1, api_lists::place_oto),
    signed("POST", "orderList/otoco", "orderList.place.otoco", Effect::Place,
        api_lists::OTOCO_PARAMS, |_| 1, api_lists::place_otoco),
    signed("DELETE", "orderList", "orderList.cancel", Effect::Cancel,
        &["symbol", "orderListId", "listClientOrderId", "newClientOrderId"], |_| 1, api_lists::cancel_list),
    signed("GET", "orderList", "orderList.status", Effect::None,
        &["orderListId", "origClientOrderId"], |_| 4, api_lists::query_list),
    signed("GET", "openOrderList", "openOrderLists.status", Effect::None, &[], |_| 6, api_lists::open_lists),
    signed("GET", "allOrderList", "allOrderLists", Effect::None,
        &["fromId", "startTime", "endTime", "limit"], |_| 20, api_lists::all_lists),
];

/// An unsigned market-data endpoint: GET, no effect on the order pools.
const fn public(
    path: &'static str,
    ws: &'static str,
    params: &'static [&'static str],
    weight: fn(&Params) -> u64,
    run: Handler,
) -> Endpoint {
    Endpoint {
        method: "GET",
        path,
        ws,
        signed: false,
        effect: Effect::None,
        params,
        weight,
        run,
    }
}

/// An endpoint that needs the API key and a signature.
const fn signed(
    method: &'static str,
    path: &'static str,
    ws: &'static str,
    effect: Effect,
    params: &'static [&'static str],
    weight: fn(&Params) -> u64,
    run: Handler,
) -> Endpoint {
    Endpoint {
        method,
        path,
        ws,
        signed: true,
        effect,
        params,
        weight,
        run,
    }
}

pub fn rest_endpoint(method: &str, path: &str) -> Option<&'static Endpoint> {
    ENDPOINTS.iter().find(|e| e.method == method && e.path == path)
}

pub fn ws_endpoint(name: &str) -> Option<&'static Endpoint> {
    ENDPOINTS.iter().find(|e| e.ws == name)
}

/// A path the simulator knows under another method (answered 405-style by the REST layer).
pub fn known_path(path: &str) -> bool {
    ENDPOINTS.iter().any(|e| e.path == path)
}

// ---- weights that depend on parameters ----

fn test_order_weight(p: &Params) -> u64 {
    if p.get("computeCommissionRates") == Some("true") {
        20
    } else {
        1
    }
}

fn open_orders_weight(p: &Params) -> u64 {
    if p.get("symbol").is_some() {
        6
    } else {
        80
    }
}

fn my_trades_weight(p: &Params) -> u64 {
    if p.get("orderId").is_some() {
        5
    } else {
        20
    }
}

/// By `preventedMatchId` 2, by `orderId` 20 (an unlisted symbol costs 2: see [`Endpoint::weight_of`]).
fn prevented_matches_weight(p: &Params) -> u64 {
    if p.get("orderId").is_some() && p.get("preventedMatchId").is_none() {
        20
    } else {
        2
    }
}

fn depth_weight(p: &Params) -> u64 {
    match p.uint("limit").ok().flatten().unwrap_or(100) {
        0..=100 => 5,
        101..=500 => 25,
        501..=1000 => 50,
        _ => 250,
    }
}

fn symbols_count(p: &Params) -> Option<usize> {
    p.get("symbols")
        .map(|raw| serde_json::from_str::<Vec<Value>>(raw).map(|v| v.len()).unwrap_or(1))
}

fn one_or_many_weight(p: &Params) -> u64 {
    if p.get("symbol").is_some() {
        2
    } else {
        4
    }
}

/// 4 per symbol, at most 200 (rolling-window and trading-day tickers).
fn per_symbol_4_weight(p: &Params) -> u64 {
    let n = if p.get("symbol").is_some() {
        1
    } else {
        symbols_count(p).unwrap_or(1)
    };
    (4 * n as u64).min(200)
}

/// 2 per symbol capped at 40; every symbol (or a status) 40.
fn execution_rules_weight(p: &Params) -> u64 {
    match (p.get("symbol"), symbols_count(p)) {
        (Some(_), _) => 2,
        (None, Some(n)) => (2 * n as u64).min(40),
        (None, None) => 40,
    }
}

fn ticker_24hr_weight(p: &Params) -> u64 {
    if p.get("symbol").is_some() {
        return 2;
    }
    match symbols_count(p) {
        Some(0..=20) => 2,
        Some(21..=100) => 40,
        _ => 80,
    }
}

// ---- helpers ----

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

pub(super) fn symbol_of(ex: &Exchange, p: &Params) -> Result<usize, ApiErr> {
    let name = p.symbol()?.ok_or_else(|| ApiErr::mandatory("symbol"))?;
    ex.symbol_index(&name).ok_or_else(ApiErr::invalid_symbol)
}

/// `symbol`, `symbols` or every symbol; both given is an error, as on the exchange.
fn symbols_of(ex: &Exchange, p: &Params) -> Result<(Vec<usize>, bool), ApiErr> {
    if p.get("symbol").is_some() && p.get("symbols").is_some() {
        return Err(ApiErr::bad(-1128, "Combination of optional parameters invalid."));
    }
    if p.get("symbol").is_some() {
        return Ok((vec![symbol_of(ex, p)?], true));
    }
    if let Some(list) = p.symbols()? {
        let idx = list
            .iter()
            .map(|s| ex.symbol_index(s).ok_or_else(ApiErr::invalid_symbol))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok((idx, false));
    }
    Ok(((0..ex.markets.len()).collect(), false))
}

/// One row for a `symbol` parameter, an array of rows for `symbols` (or for every symbol when neither is given).
fn per_symbol(sim: &Sim, p: &Params, row: impl Fn(&Exchange, usize) -> Value) -> Result<Value, ApiErr> {
    let world = sim.world.lock();
    let (wanted, single) = symbols_of(&world.ex, p)?;
    let mut rows = wanted.into_iter().map(|i| row(&world.ex, i));
    Ok(if single {
        rows.next().unwrap_or(Value::Null)
    } else {
        Value::Array(rows.collect())
    })
}

// ---- market data ----

fn ping(_: &Sim, _: &Params, _: i64) -> Result<Value, ApiErr> {
    Ok(json!({}))
}

fn time(_: &Sim, _: &Params, now: i64) -> Result<Value, ApiErr> {
    Ok(json!({ "serverTime": now }))
}

/// One `rateLimits` entry; `count` is the current use, for usage reports.
pub fn rate_limit_entry(limit: &RateLimit, count: Option<u64>) -> RateLimitEntry {
    RateLimitEntry {
        rate_limit_type: limit.kind.as_str().to_string(),
        interval: limit.interval.unit.as_str().to_string(),
        interval_num: limit.interval.num,
        limit: limit.limit,
        count,
    }
}

fn rate_limit_entries(sim: &Sim) -> Vec<Value> {
    sim.config
        .limits
        .iter()
        .map(|l| to_json(&rate_limit_entry(l, None)))
        .collect()
}

fn exchange_info(sim: &Sim, p: &Params, now: i64) -> Result<Value, ApiErr> {
    let world = sim.world.lock();
    let ex = &world.ex;
    let (wanted, _) = symbols_of(ex, p)?;
    let symbols = wanted
        .into_iter()
        .map(|i| {
            let s = &ex.markets[i].spec;
            SymbolEntry {
                symbol: s.symbol.clone(),
                status: "TRADING".to_string(),
                base_asset: s.base.clone(),
                base_asset_precision: 8,
                quote_asset: s.quote.clone(),
                quote_precision: 8,
                quote_asset_precision: 8,
                order_types: ORDER_TYPES.iter().map(|t| t.to_string()).collect(),
                is_spot_trading_allowed: true,
                quote_order_qty_market_allowed: true,
                filters: vec![
                    Filter::Price {
                        min_price: d8(s.tick_size),
                        max_price: d8(s.max_price()),
                        tick_size: d8(s.tick_size),
                    },
                    Filter::LotSize {
                        min_qty: d8(s.min_qty),
                        max_qty: d8(s.max_qty),
                        step_size: d8(s.step_size),
                    },
                    Filter::MarketLotSize {
                        min_qty: d8(s.min_qty),
                        max_qty: d8(s.max_qty),
                        step_size: d8(s.step_size),
                    },
                    Filter::Notional {
                        min_notional: d8(s.min_notional),
                        apply_min_to_market: true,
                        max_notional: d8(s.max_notional()),
                        apply_max_to_market: false,
                        avg_price_mins: 5,
                    },
                    Filter::MaxNumOrders {
                        max_num_orders: s.max_num_orders,
                    },
                ],
            }
        })
        .collect();
    let mut info = to_json(&ExchangeInfo {
        timezone: "UTC".to_string(),
        server_time: now,
        rate_limits: rate_limit_entries(sim),
        exchange_filters: Vec::new(),
        symbols,
    });
    if let Some(symbols) = info["symbols"].as_array_mut() {
        for entry in symbols {
            add_symbol_details(entry);
        }
    }
    Ok(info)
}

/// Order types every symbol accepts.
const ORDER_TYPES: [&str; 7] = [
    "LIMIT",
    "LIMIT_MAKER",
    "MARKET",
    "STOP_LOSS",
    "STOP_LOSS_LIMIT",
    "TAKE_PROFIT",
    "TAKE_PROFIT_LIMIT",
];

/// The symbol fields of the documented `exchangeInfo` beyond what the client reads: what the
/// matching engine supports (OCO / OTO lists, amend, cancel-replace, icebergs) and what it does not
/// (OPO lists, pegged and trailing orders).
fn add_symbol_details(entry: &mut Value) {
    let Some(obj) = entry.as_object_mut() else { return };
    let details = json!({
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "icebergAllowed": true,
        "ocoAllowed": true,
        "otoAllowed": true,
        "opoAllowed": false,
        "allowTrailingStop": false,
        "cancelReplaceAllowed": true,
        "amendAllowed": true,
        "pegInstructionsAllowed": false,
        "isMarginTradingAllowed": false,
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "NONE",
        "allowedSelfTradePreventionModes": Stp::NAMES,
    });
    if let Value::Object(details) = details {
        obj.extend(details);
    }
    if let Some(filters) = obj.get_mut("filters").and_then(Value::as_array_mut) {
        filters.push(json!({"filterType": "ICEBERG_PARTS", "limit": ICEBERG_PARTS}));
    }
}

/// The most parts an iceberg order may be split into (the `ICEBERG_PARTS` filter).
pub const ICEBERG_PARTS: u64 = 10;

/// Which transport an answer goes out on: the two announce different limits in `exchangeInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Rest,
    WsApi,
}

/// Adapts an answer to its transport: REST's `exchangeInfo` lists REQUEST_WEIGHT, ORDERS and
/// RAW_REQUESTS, the WebSocket API's REQUEST_WEIGHT, ORDERS and CONNECTIONS (as documented).
pub fn for_transport(name: &str, mut value: Value, transport: Transport) -> Value {
    if name != "exchangeInfo" {
        return value;
    }
    let hidden = match transport {
        Transport::Rest => PoolKind::Connections.as_str(),
        Transport::WsApi => PoolKind::RawRequests.as_str(),
    };
    if let Some(limits) = value["rateLimits"].as_array_mut() {
        limits.retain(|l| l["rateLimitType"] != hidden || !is_documented_connection_limit(l, transport));
    }
    value
}

/// Binance's own connection limit (300 per 5 minutes) is announced on the WebSocket API only. A
/// connection limit the simulator was given instead (`--limit CONNECTIONS=...`, small stress limits)
/// is announced on REST too: a client learns its limits from REST's `exchangeInfo`, and could not
/// otherwise know of one that differs from the documented default.
fn is_documented_connection_limit(limit: &Value, transport: Transport) -> bool {
    let Transport::Rest = transport else {
        return true;
    };
    limit["rateLimitType"] == PoolKind::Connections.as_str()
        && limit["interval"] == "MINUTE"
        && limit["intervalNum"] == 5
        && limit["limit"] == 300
}

/// Time fields an answer carries, in ms (scaled by [`to_microseconds`]).
const TIME_FIELDS: [&str; 12] = [
    "serverTime",
    "time",
    "transactTime",
    "updateTime",
    "workingTime",
    "openTime",
    "closeTime",
    "transactionTime",
    "authorizedSince",
    "connectedSince",
    "timestamp",
    "T",
];

/// Rewrites an answer's times from ms to µs (`X-MBX-TIME-UNIT: MICROSECOND`, `timeUnit=MICROSECOND`):
/// every time field, and the open and close times of kline rows.
pub fn to_microseconds(name: &str, value: &mut Value) {
    let klines = matches!(name, "klines" | "uiKlines");
    scale_times(value, klines);
}

fn scale_times(value: &mut Value, klines: bool) {
    let scale = |v: &mut Value| {
        if let Some(ms) = v.as_i64() {
            *v = Value::from(ms.saturating_mul(1000));
        }
    };
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if TIME_FIELDS.contains(&k.as_str()) {
                    scale(v);
                } else {
                    scale_times(v, false);
                }
            }
        }
        Value::Array(items) if klines => {
            for row in items {
                if let Some(cells) = row.as_array_mut() {
                    for idx in [0, 6] {
                        if let Some(cell) = cells.get_mut(idx) {
                            scale(cell);
                        }
                    }
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| scale_times(v, false)),
        _ => {}
    }
}

/// Reads a time-unit choice: MILLISECOND (default) or MICROSECOND, any case.
pub fn micros_wanted(raw: Option<&str>) -> Result<bool, ApiErr> {
    match raw.map(str::to_ascii_uppercase).as_deref() {
        None | Some("MILLISECOND") => Ok(false),
        Some("MICROSECOND") => Ok(true),
        Some(_) => Err(ApiErr::bad(-1100, "Invalid time unit.")),
    }
}

fn depth(sim: &Sim, p: &Params, _: i64) -> Result<Value, ApiErr> {
    // "If limit > 5000, only 5000 entries will be returned."
    let limit = p.limit(100, u64::MAX)?.min(5000);
    let world = sim.world.lock();
    let i = symbol_of(&world.ex, p)?;
    Ok(to_json(&world.ex.depth(i, limit as usize)))
}

fn trades(sim: &Sim, p: &Params, _: i64) -> Result<Value, ApiErr> {
    let limit = p.limit(500, 1000)? as usize;
    let world = sim.world.lock();
    let i = symbol_of(&world.ex, p)?;
    let recent = &world.ex.markets[i].trades;
    let rows: Vec<RestTrade> = recent
        .iter()
        .skip(recent.len().saturating_sub(limit))
        .map(rest_trade)
        .collect();
    Ok(to_json(&rows))
}

fn agg_trades(sim: &Sim, p: &Params, _: i64) -> Result<Value, ApiErr> {
    let limit = p.limit(500, 1000)? as usize;
    let (from_id, start, end) = (p.uint("fromId")?, p.int("startTime")?, p.int("endTime")?);
    let world = sim.world.lock();
    let i = symbol_of(&world.ex, p)?;
    let selected: Vec<Value> = world.ex.markets[i]
        .trades
        .iter()
        .filter(|t| from_id.is_none_or(|f| t.id >= f))
        .filter(|t| start.is_none_or(|s| t.time >= s) && end.is_none_or(|e| t.time <= e))
        .map(|t| {
            json!({"a": t.id, "p": d8(t.price), "q": d8(t.qty), "f": t.id, "l": t.id, "T": t.time, "m": t.buyer_maker, "M": true})
        })
        .collect();
    let rows = if from_id.is_some() || start.is_some() {
        selected.into_iter().take(limit).collect()
    } else {
        let skip = selected.len().saturating_sub(limit);
        selected.into_iter().skip(skip).collect()
    };
    Ok(Value::Array(rows))
}

fn klines(sim: &Sim, p: &Params, now: i64) -> Result<Value, ApiErr> {
    let interval = p.require("interval")?;
    let limit = p.limit(500, 1000)? as usize;
    let (start, end) = (p.int("startTime")?, p.int("endTime")?);
    let world = sim.world.lock();
    let i = symbol_of(&world.ex, p)?;
    let m = &world.ex.markets[i];
    let candles = match (interval, Span::of(interval)) {
        ("1s", _) => second_candles(&m.trades, now, start, end, limit),
        (_, Some(span)) => m.candles.query_span(span, start, end, limit),
        (_, None) => return Err(ApiErr::bad(-1120, "Invalid interval.")),
    };
    let rows: Vec<KlineRow> = candles
        .into_iter()
        .map(|c| {
            KlineRow(
                c.open_time,
                d8(c.open),
                d8(c.high),
                d8(c.low),
                d8(c.close),
                d8(c.volume),
                c.close_time,
                d8(c.quote_volume),
                c.trades,
                d8(c.taker_buy_base),
                d8(c.taker_buy_quote),
                "0".to_string(),
            )
        })
        .collect();
    Ok(to_json(&rows))
}

/// One-second klines from the kept recent trades: every second from the oldest kept trade's to
/// now, quiet seconds flat at the last close (as minutes are).
fn second_candles(
    trades: &std::collections::VecDeque<TradeRec>,
    now: i64,
    from: Option<i64>,
    to: Option<i64>,
    limit: usize,
) -> Vec<Candle> {
    const SECOND: i64 = 1_000;
    let Some(first) = trades.front() else { return Vec::new() };
    let mut out: Vec<Candle> = Vec::new();
    let mut next = trades.iter().peekable();
    let mut close = first.price;
    let mut t = first.time.div_euclid(SECOND) * SECOND;
    while t <= now {
        let mut c = Candle::flat(t, SECOND, close);
        while let Some(trade) = next.next_if(|tr| tr.time < t + SECOND) {
            let one = Candle {
                trades: 1,
                volume: trade.qty,
                quote_volume: trade.qty * trade.price,
                taker_buy_base: if trade.buyer_maker { Decimal::ZERO } else { trade.qty },
                taker_buy_quote: if trade.buyer_maker {
                    Decimal::ZERO
                } else {
                    trade.qty * trade.price
                },
                first_id: trade.id as i64,
                last_id: trade.id as i64,
                ..Candle::flat(t, SECOND, trade.price)
            };
            c.merge(&one);
        }
        close = c.close;
        out.push(c);
        t += SECOND;
    }
    out.retain(|c| from.is_none_or(|f| c.close_time >= f) && to.is_none_or(|e| c.open_time <= e));
    if from.is_some() {
        out.truncate(limit);
    } else if out.len() > limit {
        out.drain(..out.len() - limit);
    }
    out
}

fn avg_price(sim: &Sim, p: &Params, now: i64) -> Result<Value, ApiErr> {
    let world = sim.world.lock();
    let i = symbol_of(&world.ex, p)?;
    let m = &world.ex.markets[i];
    let price = stats::avg_price(m, now);
    let close_time = m.trades.back().map(|t| t.time).unwrap_or(now);
    Ok(to_json(&AvgPrice {
        mins: 5,
        price: d8(price),
        close_time,
    }))
}

fn ticker_price(sim: &Sim, p: &Params, _: i64) -> Result<Value, ApiErr> {
    per_symbol(sim, p, |ex, i| {
        to_json(&PriceTicker {
            symbol: ex.markets[i].spec.symbol.clone(),
            price: d8(stats::last_price(&ex.markets[i])),
        })
    })
}

fn book_ticker(sim: &Sim, p: &Params, _: i64) -> Result<Value, ApiErr> {
    per_symbol(sim, p, |ex, i| {
        let m = &ex.markets[i];
        let (bp, bq) = m.book.best_bid().unwrap_or_default();
        let (ap, aq) = m.book.best_ask().unwrap_or_default();
        to_json(&BookTicker {
            symbol: m.spec.symbol.clone(),
            bid_price: d8(bp),
            bid_qty: d8(bq),
            ask_price: d8(ap),
            ask_qty: d8(aq),
        })
    })
}

/// `type`: FULL (default) or MINI.
fn mini_type(p: &Params) -> Result<bool, ApiErr> {
    match p.get("type") {
        None | Some("FULL") => Ok(false),
        Some("MINI") => Ok(true),
        Some(_) => Err(ApiErr::illegal_chars("type", "FULL, MINI")),
    }
}

fn ticker_24hr(sim: &Sim, p: &Params, now: i64) -> Result<Value, ApiErr> {
    let mini = mini_type(p)?;
    let open_time = now - DAY_MS;
    per_symbol(sim, p, |ex, i| {
        let m = &ex.markets[i];
        let mut row = stats::window(m, open_time, now, mini);
        if !mini {
            let (bp, bq) = m.book.best_bid().unwrap_or_default();
            let (ap, aq) = m.book.best_ask().unwrap_or_default();
            row.prev_close_price = Some(row.open_price);
            row.last_qty = Some(d8(m.trades.back().map(|t| t.qty).unwrap_or_default()));
            row.bid_price = Some(d8(bp));
            row.bid_qty = Some(d8(bq));
            row.ask_price = Some(d8(ap));
            row.ask_qty = Some(d8(aq));
        }
        to_json(&row)
    })
}

/// `windowSize`: 1m..59m, 1h..23h or 1d..7d, in ms.
pub fn window_size_ms(raw: &str) -> Option<i64> {
    let unit = raw.chars().last()?;
    let n: i64 = raw[..raw.len() - 1].parse().ok()?;
    let (max, ms) = match unit {
        'm' => (59, MINUTE_MS),
        'h' => (23, 60 * MINUTE_MS),
        'd' => (7, DAY_MS),
        _ => return None,
    };
    (1..=max).contains(&n).then_some(n * ms)
}

/// `symbol` or `symbols` is mandatory for the rolling-window and trading-day tickers.
fn require_symbol_or_symbols(p: &Params) -> Result<(), ApiErr> {
    if p.get("symbol").is_none() && p.get("symbols").is_none() {
        return Err(ApiErr::bad(
            -1102,
            "Param 'symbol' or 'symbols' must be sent, but both were empty/null!",
        ));
    }
    Ok(())
}

/// `GET /api/v3/ticker`: the window opens on a minute, `windowSize` before now.
fn ticker_window(sim: &Sim, p: &Params, now: i64) -> Result<Value, ApiErr> {
    require_symbol_or_symbols(p)?;
    let mini = mini_type(p)?;
    let size = match p.get("windowSize") {
        None => DAY_MS,
        Some(raw) => window_size_ms(raw).ok_or_else(|| ApiErr::bad(-1100, "Invalid windowSize."))?,
    };
    let open_time = (now - size).div_euclid(MINUTE_MS) * MINUTE_MS;
    per_symbol(sim, p, |ex, i| {
        to_json(&stats::window(&ex.markets[i], open_time, now, mini))
    })
}

/// `timeZone`: hours (`8`, `-1`) or hours and minutes (`05:45`, `-1:00`), in ms; -12:00..+14:00.
fn time_zone_ms(raw: &str) -> Option<i64> {
    let (sign, body) = match raw.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, raw.strip_prefix('+').unwrap_or(raw)),
    };
    let (h, m) = match body.split_once(':') {
        Some((h, m)) => (h.parse::<i64>().ok()?, m.parse::<i64>().ok()?),
        None => (body.parse::<i64>().ok()?, 0),
    };
    let total = sign * (h * 60 + m);
    ((0..60).contains(&m) && (-12 * 60..=14 * 60).contains(&total)).then_some(total * MINUTE_MS)
}

/// `GET /api/v3/ticker/tradingDay`: today in `timeZone` (UTC by default).
fn ticker_trading_day(sim: &Sim, p: &Params, now: i64) -> Result<Value, ApiErr> {
    require_symbol_or_symbols(p)?;
    let mini = mini_type(p)?;
    let zone = match p.get("timeZone") {
        None => 0,
        Some(raw) => time_zone_ms(raw).ok_or_else(|| ApiErr::bad(-1100, "Invalid timeZone."))?,
    };
    let open_time = (now + zone).div_euclid(DAY_MS) * DAY_MS - zone;
    per_symbol(sim, p, |ex, i| {
        to_json(&stats::window(&ex.markets[i], open_time, open_time + DAY_MS - 1, mini))
    })
}

/// `GET /api/v3/historicalTrades`: from `fromId` on, else the most recent (only the last
/// trades are kept, as for `trades`).
fn historical_trades(sim: &Sim, p: &Params, _: i64) -> Result<Value, ApiErr> {
    let limit = p.limit(500, 1000)? as usize;
    let from_id = p.uint("fromId")?;
    let world = sim.world.lock();
    let i = symbol_of(&world.ex, p)?;
    let recent = &world.ex.markets[i].trades;
    let selected: Vec<&TradeRec> = match from_id {
        Some(f) => recent.iter().filter(|t| t.id >= f).take(limit).collect(),
        None => recent.iter().skip(recent.len().saturating_sub(limit)).collect(),
    };
    Ok(Value::Array(
        selected.into_iter().map(|t| to_json(&rest_trade(t))).collect(),
    ))
}

fn rest_trade(t: &TradeRec) -> RestTrade {
    RestTrade {
        id: t.id,
        price: d8(t.price),
        qty: d8(t.qty),
        quote_qty: d8(t.price * t.qty),
        time: t.time,
        is_buyer_maker: t.buyer_maker,
        is_best_match: true,
    }
}

/// `GET /api/v3/executionRules`: no symbol here has price-range rules.
fn execution_rules(sim: &Sim, p: &Params, _: i64) -> Result<Value, ApiErr> {
    let rows = per_symbol(
        sim,
        p,
        |ex, i| json!({"symbol": ex.markets[i].spec.symbol, "rules": []}),
    )?;
    let rows = match rows {
        Value::Array(rows) => rows,
        one => vec![one],
    };
    Ok(json!({ "symbolRules": rows }))
}

/// `GET /api/v3/referencePrice`: ordinary spot symbols never have one (-2043, as documented).
fn reference_price(sim: &Sim, p: &Params, _: i64) -> Result<Value, ApiErr> {
    let world = sim.world.lock();
    symbol_of(&world.ex, p)?;
    Err(ApiErr::bad(-2043, "This symbol doesn't have a reference price."))
}

fn commission(sim: &Sim, p: &Params, _: i64) -> Result<Value, ApiErr> {
    let world = sim.world.lock();
    let i = symbol_of(&world.ex, p)?;
    let zero = "0.00000000";
    let fees = world.ex.fees();
    let (maker, taker) = (d8(fees.maker).to_string(), d8(fees.taker).to_string());
    Ok(json!({
        "symbol": world.ex.markets[i].spec.symbol,
        "standardCommission": {"maker": maker, "taker": taker, "buyer": zero, "seller": zero},
        "specialCommission": {"maker": zero, "taker": zero, "buyer": zero, "seller": zero},
        "taxCommission": {"maker": zero, "taker": zero, "buyer": zero, "seller": zero},
        "discount": {"enabledForAccount": false, "enabledForSymbol": false, "discountAsset": "BNB", "discount": zero},
    }))
}

// ---- orders ----

/// Parses and checks an order request's parameters (everything short of the book and balances).
pub(super) fn new_order(ex: &Exchange, p: &Params) -> Result<(NewOrder, String), ApiErr> {
    let symbol = symbol_of(ex, p)?;
    let side = Side::parse(p.require("side")?).ok_or_else(|| ApiErr::bad(-1117, "Invalid side."))?;
    let kind = Kind::parse(p.require("type")?).ok_or_else(|| ApiErr::bad(-1116, "Invalid orderType."))?;
    let tif = match p.get("timeInForce") {
        None => None,
        Some(raw) => Some(TimeInForce::parse(raw).ok_or_else(|| ApiErr::bad(-1115, "Invalid timeInForce."))?),
    };
    let price = p.decimal("price")?;
    let qty = p.decimal("quantity")?;
    let quote_qty = p.decimal("quoteOrderQty")?;
    let stop_price = p.decimal("stopPrice")?;
    let iceberg_qty = p.decimal("icebergQty")?;
    if kind.is_conditional() {
        stop_price.ok_or_else(|| ApiErr::mandatory("stopPrice"))?;
    } else if stop_price.is_some() {
        return Err(ApiErr::not_required("stopPrice"));
    }
    match kind.active() {
        Kind::Limit => {
            if tif.is_none() {
                return Err(ApiErr::mandatory("timeInForce"));
            }
            qty.ok_or_else(|| ApiErr::mandatory("quantity"))?;
            price.ok_or_else(|| ApiErr::mandatory("price"))?;
            if quote_qty.is_some() {
                return Err(ApiErr::not_required("quoteOrderQty"));
            }
        }
        Kind::LimitMaker => {
            qty.ok_or_else(|| ApiErr::mandatory("quantity"))?;
            price.ok_or_else(|| ApiErr::mandatory("price"))?;
            if tif.is_some() {
                return Err(ApiErr::not_required("timeInForce"));
            }
            if quote_qty.is_some() {
                return Err(ApiErr::not_required("quoteOrderQty"));
            }
        }
        _ => {
            if price.is_some() {
                return Err(ApiErr::not_required("price"));
            }
            if tif.is_some() {
                return Err(ApiErr::not_required("timeInForce"));
            }
            match (qty, quote_qty) {
                (None, None) => {
                    return Err(ApiErr::bad(
                        -1102,
                        "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!",
                    ))
                }
                (Some(_), Some(_)) => return Err(ApiErr::not_required("quoteOrderQty")),
                // The stop-market orders take a base quantity only.
                (None, Some(_)) if kind.is_conditional() => return Err(ApiErr::mandatory("quantity")),
                _ => {}
            }
        }
    }
    if iceberg_qty.is_some() {
        // Icebergs rest on the book: GTC limits and limit-makers only.
        let rests = matches!(kind.active(), Kind::LimitMaker) || tif == Some(TimeInForce::Gtc);
        if !rests || kind.active() == Kind::Market {
            return Err(ApiErr::bad(-1013, "Iceberg orders must be GTC."));
        }
    }
    Stp::from_params(p)?;
    let client_id = match p.get("newClientOrderId") {
        None => None,
        Some(id) if valid_client_id(id) => Some(id.to_string()),
        Some(_) => {
            return Err(ApiErr::illegal_chars(
                "newClientOrderId",
                "^[\\.A-Z\\:/a-z0-9_-]{1,36}$",
            ))
        }
    };
    // MARKET and LIMIT orders answer FULL by default, every other type ACK.
    let default_resp = match kind {
        Kind::Limit | Kind::Market => "FULL",
        _ => "ACK",
    };
    let resp = match p.get("newOrderRespType") {
        None => default_resp,
        Some(r @ ("ACK" | "RESULT" | "FULL")) => r,
        Some(_) => return Err(ApiErr::illegal_chars("newOrderRespType", "ACK, RESULT, FULL")),
    };
    Ok((
        NewOrder {
            account: p.account(),
            symbol,
            side,
            kind,
            tif,
            price,
            qty,
            quote_qty,
            client_id,
            stop_price,
            iceberg_qty,
        },
        resp.to_string(),
    ))
}

pub(super) fn valid_client_id(id: &str) -> bool {
    (1..=36).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b".:/_-".contains(&b))
}

fn place_order(sim: &Sim, p: &Params, now: i64) -> Result<Value, ApiErr> {
    let mut world = sim.world.lock();
    let (req, resp) = new_order(&world.ex, p)?;
    let placed = world.ex.place_with_stp(req, Stp::from_params(p)?, now)?;
    placed_answer(&world.ex, placed, &resp, now)
}

/// A placed order's answer in its `newOrderRespType` (ACK, RESULT or FULL).
pub(super) fn placed_answer(
    ex: &Exchange,
    placed: super::matching::Placed,
    resp: &str,
    now: i64,
) -> Result<Value, ApiErr> {
    let Some(order) = ex.order(placed.order_id) else {
        return Err(ApiErr::new(
            500,
            -1000,
            "An unknown error occurred while processing the request.",
        ));
    };
    if resp == "ACK" {
        return Ok(json!({
            "symbol": ex.markets[order.symbol].spec.symbol,
            "orderId": order.id,
            "orderListId": order.list.map_or(-1, |l| l as i64),
            "clientOrderId": order.client_id,
            "transactTime": now,
        }));
    }
    let mut wire = ex.order_wire(order, false);
    wire.transact_time = Some(now);
    if order.working_time.is_none() {
        wire.working_time = None;
    }
    if resp == "FULL" {
        wire.fills = placed.fills;
    }
    let mut value = to_json(&wire);
    add_order_details(&mut value, order);
    if resp == "FULL" && wire.fills.is_empty() {
        value["fills"] = json!([]);
    }
    Ok(value)
}

fn test_order(sim: &Sim, p: &Params, _: i64) -> Result<Value, ApiErr> {
    let world = sim.world.lock();
    let (req, _) = new_order(&world.ex, p)?;
    world.ex.validate(&req)?;
    if p.get("computeCommissionRates") == Some("true") {
        let rate = "0.00100000";
        return Ok(json!({
            "standardCommissionForOrder": {"maker": rate, "taker": rate},
            "taxCommissionForOrder": {"maker": "0.00000000", "taker": "0.00000000"},
            "discount": {"enabledForAccount": false, "enabledForSymbol": false, "discountAsset": "BNB", "discount": "0.00000000"}
        }));
    }
    Ok(json!({}))
}

/// The order named by `orderId` or `origClientOrderId` (the latest one with that client id).
fn find_order<'a>(ex: &'a Exchange, symbol: usize, p: &Params) -> Result<Option<&'a Order>, ApiErr> {
    let found = match (p.uint("orderId")?, p.get("origClientOrderId")) {
        (Some(id), _) => ex.order(id).filter(|o| o.account == p.account()),
        (None, Some(cid)) => ex.order_by_client(p.account(), cid),
        (None, None) => {
            return Err(ApiErr::bad(
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            ))
        }
    };
    Ok(found.filter(|o| o.symbol == symbol))
}

fn query_order(sim: &Sim, p: &Params, _: i64) -> Result<Value, ApiErr> {
    let world = sim.world.lock();
    let ex = &world.ex;
    let symbol = symbol_of(ex, p)?;
    let order = find_order(ex, symbol, p)?.ok_or_else(ApiErr::no_such_order)?;
    Ok(order_json(ex, order))
}

/// An order as `order.status` / `openOrders` / `allOrders` show it.
fn order_json(ex: &Exchange, o: &Order) -> Value {
    let mut value = to_json(&ex.order_wire(o, true));
    add_order_details(&mut value, o);
    value
}

/// The stop price and iceberg quantity, where the order has them (as the exchange shows them).
fn add_order_details(value: &mut Value, o: &Order) {
    if let Some(fields) = value.as_object_mut() {
        if !o.stop_price.is_zero() {
            fields.insert("stopPrice".into(), json!(d8(o.stop_price)));
        }
        if !o.iceberg_qty.is_zero() {
            fields.insert("icebergQty".into(), json!(d8(o.iceberg_qty)));
        }
        if o.working_time.is_none() {
            fields.remove("workingTime");
        }
        if let Some(p) = o.prevented {
            fields.insert("preventedMatchId".into(), json!(p.match_id));
            fields.insert("preventedQuantity".into(), json!(d8(p.qty)));
        }
    }
}

/// The cancel request's own client order id: the one sent, else one made up.
pub(super) fn cancel_client_id(sent: Option<&str>, order_id: u64) -> String {
    sent.map(str::to_string)
        .unwrap_or_else(|| format!("cancel{order_id:08}"))
}

pub(super) fn cancel_wire(ex: &Exchange, id: u64, cancel_client_id: String, now: i64) -> Value {
    let Some(o) = ex.order(id) else { return Value::Null };
    let mut wire = ex.order_wire(o, false);
    wire.orig_client_order_id = Some(o.client_id.clone());
    wire.client_order_id = cancel_client_id;
    wire.transact_time = Some(now);
    wire.working_time = None;
    to_json(&wire)
}

/// `cancelRestrictions`: the status an order must have to be canceled, if any.
fn cancel_restriction(p: &Params) -> Result<Option<OrderStatus>, ApiErr> {
    match p.get("cancelRestrictions") {
        None => Ok(None),
        Some("ONLY_NEW") => Ok(Some(OrderStatus::New)),
        Some("ONLY_PARTIALLY_FILLED") => Ok(Some(OrderStatus::PartiallyFilled)),
        Some(_) => Err(ApiErr::illegal_chars(
            "cancelRestrictions",
            "ONLY_NEW, ONLY_PARTIALLY_FILLED",
        )),
    }
}

/// An open order whose status is not the one `cancelRestrictions` allows stays (-2011).
fn check_cancel_restriction(restriction: Option<OrderStatus>, order: Option<&Order>) -> Result<(), ApiErr> {
    match (restriction, order) {
        (Some(allowed), Some(o)) if o.status.is_open() && o.status != allowed => {
            Err(ApiErr::bad(-2011, "Order was not canceled due to cancel restrictions."))
        }
        _ => Ok(()),
    }
}

fn cancel_order(sim: &Sim, p: &Params, now: i64) -> Result<Value, ApiErr> {
    let restriction = cancel_restriction(p)?;
    let mut world = sim.world.lock();
    let symbol = symbol_of(&world.ex, p)?;
    let id = match find_order(&world.ex, symbol, p) {
        Ok(Some(o)) => {
            check_cancel_restriction(restriction, Some(o))?;
            o.id
        }
        Ok(None) => return Err(ApiErr::unknown_order_cancel()),
        Err(e) => return Err(e),
    };
    let cancel_id = cancel_client_id(p.get("newClientOrderId"), id);
    world.ex.cancel(symbol, id, &cancel_id, now)?;
    Ok(cancel_wire(&world.ex, id, cancel_id, now))
}

fn cancel_open_orders(sim: &Sim, p: &Params, now: i64) -> Result<Value, ApiErr> {
    let mut world = sim.world.lock();
    let symbol = symbol_of(&world.ex, p)?;
    let ids: Vec<u64> = world
        .ex
        .orders()
        .filter(|o| o.account == p.account() && o.symbol == symbol && o.status.is_open())
        .map(|o| o.id)
        .collect();
    if ids.is_empty() {
        return Err(ApiErr::unknown_order_cancel());
    }
    let mut rows = Vec::with_capacity(ids.len());
    for id in ids {
        // Canceling an order of a list canceled its other orders already.
        let Some(o) = world.ex.order(id).filter(|o| o.status.is_open()) else {
            continue;
        };
        let list = o.list;
        let cancel_id = cancel_client_id(None, id);
        world.ex.cancel(symbol, id, &cancel_id, now)?;
        rows.push(match list {
            // An order list is answered as a list, with its orders' reports.
            Some(list_id) => api_lists::canceled_list_json(&world.ex, list_id, &cancel_id, now),
            None => cancel_wire(&world.ex, id, cancel_id, now),
        });
    }
    Ok(Value::Array(rows))
}

fn open_orders(sim: &Sim, p: &Params, _: i64) -> Result<Value, ApiErr> {
    let world = sim.world.lock();
    let ex = &world.ex;
    let symbol = match p.get("symbol") {
        Some(_) => Some(symbol_of(ex, p)?),
        None => None,
    };
    let rows: Vec<Value> = ex
        .orders()
        .filter(|o| o.account == p.account() && o.status.is_open() && symbol.is_none_or(|s| o.symbol == s))
        .map(|o| order_json(ex, o))
        .collect();
    Ok(Value::Array(rows))
}

fn all_orders(sim: &Sim, p: &Params, _: i64) -> Result<Value, ApiErr> {
    let limit = p.limit(500, 1000)? as usize;
    let (from_id, start, end) = (p.uint("orderId")?, p.int("startTime")?, p.int("endTime")?);
    let world = sim.world.lock();
    let ex = &world.ex;
    let symbol = symbol_of(ex, p)?;
    let selected: Vec<&Order> = ex
        .orders()
        .filter(|o| o.account == p.account() && o.symbol == symbol && from_id.is_none_or(|f| o.id >= f))
        .filter(|o| start.is_none_or(|s| o.time >= s) && end.is_none_or(|e| o.time <= e))
        .collect();
    let skip = if from_id.is_some() {
        0
    } else {
        selected.len().saturating_sub(limit)
    };
    let rows = selected
        .into_iter()
        .skip(skip)
        .take(limit)
        .map(|o| order_json(ex, o))
        .collect();
    Ok(Value::Array(rows))
}

fn account(sim: &Sim, p: &Params, _: i64) -> Result<Value, ApiErr> {
    let omit_zero = p.get("omitZeroBalances") == Some("true");
    let world = sim.world.lock();
    let ex = &world.ex;
    let balances: Vec<AccountBalance> = ex
        .balances_of(p.account())
        .iter()
        .filter(|(_, b)| !omit_zero || !(b.free + b.locked).is_zero())
        .map(|(a, b)| AccountBalance {
            asset: a.clone(),
            free: d8(b.free),
            locked: d8(b.locked),
        })
        .collect();
    let fees = ex.fees();
    // The integer fields are in basis points, as Binance's account answer has them.
    let bps = |rate: Decimal| {
        rust_decimal::prelude::ToPrimitive::to_u32(&(rate * Decimal::from(10_000)).round()).unwrap_or(0)
    };
    Ok(json!({
        "makerCommission": bps(fees.maker),
        "takerCommission": bps(fees.taker),
        "buyerCommission": 0,
        "sellerCommission": 0,
        "commissionRates": {
            "maker": d8(fees.maker).to_string(),
            "taker": d8(fees.taker).to_string(),
            "buyer": "0.00000000",
            "seller": "0.00000000",
        },
        "canTrade": true,
        "canWithdraw": false,
        "canDeposit": false,
        "brokered": false,
        "requireSelfTradePrevention": false,
        "preventSor": false,
        "updateTime": ex.account_update_time(),
        "accountType": "SPOT",
        "balances": balances,
        "permissions": ["SPOT"],
        "uid": 1,
    }))
}

fn my_trades(sim: &Sim, p: &Params, _: i64) -> Result<Value, ApiErr> {
    let limit = p.limit(500, 1000)? as usize;
    let (order_id, from_id) = (p.uint("orderId")?, p.uint("fromId")?);
    let (start, end) = (p.int("startTime")?, p.int("endTime")?);
    let world = sim.world.lock();
    let ex = &world.ex;
    let symbol = symbol_of(ex, p)?;
    let selected: Vec<Value> = ex
        .my_trades()
        .iter()
        .filter(|t| t.symbol == symbol && order_id.is_none_or(|o| t.order_id == o))
        .filter(|t| ex.order(t.order_id).is_some_and(|o| o.account == p.account()))
        .filter(|t| from_id.is_none_or(|f| t.id >= f))
        .filter(|t| start.is_none_or(|s| t.time >= s) && end.is_none_or(|e| t.time <= e))
        .map(|t| {
            to_json(&MyTrade {
                symbol: ex.markets[t.symbol].spec.symbol.clone(),
                id: t.id,
                order_id: t.order_id,
                order_list_id: -1,
                price: d8(t.price),
                qty: d8(t.qty),
                quote_qty: d8(t.price * t.qty),
                commission: d8(t.commission),
                commission_asset: t.commission_asset.clone(),
                time: t.time,
                is_buyer: t.is_buyer,
                is_maker: t.is_maker,
                is_best_match: true,
            })
        })
        .collect();
    let skip = if from_id.is_some() {
        0
    } else {
        selected.len().saturating_sub(limit)
    };
    Ok(Value::Array(selected.into_iter().skip(skip).take(limit).collect()))
}

/// `myPreventedMatches`: one prevented match by `preventedMatchId`, or an order's (as taker or
/// maker) by `orderId`, from `fromPreventedMatchId` on, oldest first, at most `limit`.
fn my_prevented_matches(sim: &Sim, p: &Params, _: i64) -> Result<Value, ApiErr> {
    let limit = p.limit(500, 1000)? as usize;
    let by_match = p.uint("preventedMatchId")?;
    let (order_id, from_id) = (p.uint("orderId")?, p.uint("fromPreventedMatchId")?);
    let combination = |valid: bool| {
        valid
            .then_some(())
            .ok_or_else(|| ApiErr::bad(-1128, "Combination of optional parameters invalid."))
    };
    match (by_match, order_id) {
        (Some(_), None) => combination(from_id.is_none())?,
        (None, Some(_)) => {}
        _ => combination(false)?,
    }
    let world = sim.world.lock();
    let ex = &world.ex;
    let symbol = symbol_of(ex, p)?;
    let name = &ex.markets[symbol].spec.symbol;
    let rows = ex
        .prevented_matches(symbol)
        .filter(|m| ex.order(m.taker_order_id).is_some_and(|o| o.account == p.account()))
        .filter(|m| by_match.is_none_or(|id| m.id == id))
        .filter(|m| order_id.is_none_or(|id| m.taker_order_id == id || m.maker_order_id == id))
        .filter(|m| from_id.is_none_or(|from| m.id >= from))
        .take(limit)
        .map(|m| {
            let mut row = json!({
                "symbol": name,
                "preventedMatchId": m.id,
                "takerOrderId": m.taker_order_id,
                "makerSymbol": name,
                "makerOrderId": m.maker_order_id,
                "tradeGroupId": -1,
                "selfTradePreventionMode": m.mode.as_str(),
                "price": d8(m.price),
                "transactTime": m.time,
            });
            if let Some(q) = m.taker_qty {
                row["takerPreventedQuantity"] = json!(d8(q));
            }
            if let Some(q) = m.maker_qty {
                row["makerPreventedQuantity"] = json!(d8(q));
            }
            row
        })
        .collect();
    Ok(Value::Array(rows))
}

fn rate_limit_order(sim: &Sim, p: &Params, now: i64) -> Result<Value, ApiErr> {
    let usage = sim.limiter.lock().order_usage(now, p.account());
    Ok(Value::Array(
        usage
            .into_iter()
            .map(|(l, count)| to_json(&rate_limit_entry(&l, Some(count))))
            .collect(),
    ))
}

// ---- amend and cancel-replace ----

/// `PUT /api/v3/order/amend/keepPriority`: the quantity goes down, the queue place stays.
fn amend_keep_priority(sim: &Sim, p: &Params, now: i64) -> Result<Value, ApiErr> {
    let new_qty = p.decimal("newQty")?.ok_or_else(|| ApiErr::mandatory("newQty"))?;
    let mut world = sim.world.lock();
    let symbol = symbol_of(&world.ex, p)?;
    let id = match find_order(&world.ex, symbol, p)? {
        Some(o) => o.id,
        None => return Err(ApiErr::bad(-2038, "Unknown order sent.")),
    };
    let new_client_id = match p.get("newClientOrderId") {
        None => format!("amend{id:08}x{}", world.ex.last_execution_id() + 1),
        Some(c) if valid_client_id(c) => c.to_string(),
        Some(_) => {
            return Err(ApiErr::illegal_chars(
                "newClientOrderId",
                "^[\\.A-Z\\:/a-z0-9_-]{1,36}$",
            ))
        }
    };
    let orig_client_id = world.ex.order(id).map(|o| o.client_id.clone()).unwrap_or_default();
    world.ex.amend(symbol, id, new_qty, new_client_id, now)?;
    let ex = &world.ex;
    let Some(o) = ex.order(id) else {
        return Err(ApiErr::new(
            500,
            -1000,
            "An unknown error occurred while processing the request.",
        ));
    };
    let mut amended = json!({
        "symbol": ex.markets[o.symbol].spec.symbol,
        "orderId": o.id,
        "orderListId": -1,
        "origClientOrderId": orig_client_id,
        "clientOrderId": o.client_id,
        "price": d8(o.price),
        "qty": d8(o.orig_qty),
        "executedQty": d8(o.executed),
        "preventedQty": d8(o.prevented.map_or(Decimal::ZERO, |p| p.qty)),
        "quoteOrderQty": d8(o.orig_quote_qty),
        "cumulativeQuoteQty": d8(o.cum_quote),
        "status": o.status.as_str(),
        "timeInForce": o.tif.map(TimeInForce::as_str).unwrap_or("GTC"),
        "type": o.kind.as_str(),
        "side": o.side.as_str(),
        "selfTradePreventionMode": o.stp.as_str(),
    });
    if let Some(w) = o.working_time {
        amended["workingTime"] = json!(w);
    }
    Ok(json!({
        "transactTime": now,
        "executionId": ex.last_execution_id(),
        "amendedOrder": amended,
    }))
}

const CANCEL_REPLACE_PARAMS: &[&str] = &[
    "symbol",
    "side",
    "type",
    "cancelReplaceMode",
    "timeInForce",
    "quantity",
    "quoteOrderQty",
    "price",
    "cancelNewClientOrderId",
    "cancelOrigClientOrderId",
    "cancelOrderId",
    "newClientOrderId",
    "strategyId",
    "strategyType",
    "stopPrice",
    "icebergQty",
    "newOrderRespType",
    "selfTradePreventionMode",
    "cancelRestrictions",
    "orderRateLimitExceededMode",
];

/// `POST /api/v3/order/cancelReplace`: cancels, then places. The new order is checked (filters,
/// unfilled-order count) before anything happens; `STOP_ON_FAILURE` places nothing after a failed
/// cancel, `ALLOW_FAILURE` still tries. Partial failures answer -2021 (409), full ones -2022 (400),
/// each with both outcomes in `data`.
fn cancel_replace(sim: &Sim, p: &Params, now: i64) -> Result<Value, ApiErr> {
    let allow_failure = match p.require("cancelReplaceMode")? {
        "STOP_ON_FAILURE" => false,
        "ALLOW_FAILURE" => true,
        _ => {
            return Err(ApiErr::illegal_chars(
                "cancelReplaceMode",
                "STOP_ON_FAILURE, ALLOW_FAILURE",
            ))
        }
    };
    match p.get("orderRateLimitExceededMode") {
        None | Some("DO_NOTHING") | Some("CANCEL_ONLY") => {}
        Some(_) => {
            return Err(ApiErr::illegal_chars(
                "orderRateLimitExceededMode",
                "DO_NOTHING, CANCEL_ONLY",
            ))
        }
    }
    let restriction = cancel_restriction(p)?;
    let mut world = sim.world.lock();
    let (req, resp) = new_order(&world.ex, p)?;
    let stp = Stp::from_params(p)?;
    let symbol = req.symbol;
    // Filters are evaluated before either step (the balance only once the old order is gone).
    if let Err(e) = world.ex.validate(&req) {
        if e.code == -1013 {
            return Err(e);
        }
    }
    let target = match (p.uint("cancelOrderId")?, p.get("cancelOrigClientOrderId")) {
        (Some(id), cid) => world
            .ex
            .order(id)
            .filter(|o| o.account == p.account() && o.symbol == symbol && cid.is_none_or(|c| c == o.client_id))
            .map(|o| o.id),
        (None, Some(cid)) => world
            .ex
            .order_by_client(p.account(), cid)
            .filter(|o| o.symbol == symbol)
            .map(|o| o.id),
        (None, None) => {
            return Err(ApiErr::bad(
                -1102,
                "Param 'cancelOrigClientOrderId' or 'cancelOrderId' must be sent, but both were empty/null!",
            ))
        }
    };
    let cancel = match target {
        Some(id) => {
            let cancel_id = cancel_client_id(p.get("cancelNewClientOrderId"), id);
            check_cancel_restriction(restriction, world.ex.order(id))
                .and_then(|_| world.ex.cancel(symbol, id, &cancel_id, now))
                .map(|_| cancel_wire(&world.ex, id, cancel_id, now))
        }
        None => Err(ApiErr::unknown_order_cancel()),
    };
    let placed = if cancel.is_ok() || allow_failure {
        Some(
            world
                .ex
                .place_with_stp(req, stp, now)
                .and_then(|placed| placed_answer(&world.ex, placed, &resp, now)),
        )
    } else {
        // A new order not attempted still counts as an unfilled order.
        let _ = sim.limiter.lock().take_order(now, p.account());
        None
    };
    let outcome = |r: &Result<Value, ApiErr>| if r.is_ok() { "SUCCESS" } else { "FAILURE" };
    let body = |r: &Result<Value, ApiErr>| match r {
        Ok(v) => v.clone(),
        Err(e) => json!({"code": e.code, "msg": e.msg}),
    };
    let data = json!({
        "cancelResult": outcome(&cancel),
        "newOrderResult": placed.as_ref().map(outcome).unwrap_or("NOT_ATTEMPTED"),
        "cancelResponse": body(&cancel),
        "newOrderResponse": placed.as_ref().map(body),
    });
    match (&cancel, &placed) {
        (Ok(_), Some(Ok(_))) => Ok(data),
        (Ok(_), _) | (Err(_), Some(Ok(_))) => {
            Err(ApiErr::new(409, -2021, "Order cancel-replace partially failed.").with_data(data))
        }
        _ => Err(ApiErr::bad(-2022, "Order cancel-replace failed.").with_data(data)),
    }
}

#[cfg(test)]
mod weight_tests {
    use super::*;
    use crate::sim::SimConfig;

    fn prevented_matches(query: &str) -> u64 {
        let sim = Sim::new(SimConfig::default());
        let ep = ENDPOINTS
            .iter()
            .find(|e| e.path == "myPreventedMatches")
            .expect("the endpoint");
        ep.weight_of(&sim, &Params::from_encoded(&[query, ""]).unwrap())
    }

    #[test]
    fn prevented_matches_by_order_cost_20_but_2_for_an_unlisted_symbol() {
        assert_eq!(prevented_matches("symbol=BTCUSDT&orderId=1"), 20);
        assert_eq!(prevented_matches("symbol=BTCUSDT&preventedMatchId=1"), 2);
        assert_eq!(prevented_matches("symbol=NOPEUSDT&orderId=1"), 2);
        assert_eq!(prevented_matches("orderId=1"), 2);
    }
}
