//! Every endpoint the simulator serves, with its weight declared beside it, and the handlers.
//! REST (`/api/v3/...`) and the WebSocket API share this table: same parameters, same
//! weights, same answers.

use rust_decimal::Decimal;
use serde_json::{json, Value};

use super::engine::{Exchange, NewOrder, Order};
use super::error::ApiErr;
use super::limiter::Charge;
use super::num::d8;
use super::params::Params;
use super::state::Sim;
use crate::exchange::binance::wire::{
    AccountBalance, AvgPrice, BookTicker, ExchangeInfo, Filter, KlineRow, MyTrade, PriceTicker, RateLimitEntry,
    RestTrade, SymbolEntry, Ticker24hr,
};
use crate::exchange::types::{OrderType, Side, TimeInForce};
use crate::ledger::limits::{PoolKind, RateLimit};

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

/// Parameters consumed by authentication, not by handlers (REST sends the key as a header).
pub const REST_SIGNING_PARAMS: [&str; 3] = ["timestamp", "recvWindow", "signature"];
/// The WebSocket API also carries the key as `apiKey`.
pub const WS_SIGNING_PARAMS: [&str; 4] = ["timestamp", "recvWindow", "signature", "apiKey"];

const ORDER_PARAMS: &[&str] = &[
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
    public("aggTrades", "trades.aggregate", &["symbol", "fromId", "startTime", "endTime", "limit"], |_| 4, agg_trades),
    public("klines", "klines", KLINE_PARAMS, |_| 2, klines),
    public("uiKlines", "uiKlines", KLINE_PARAMS, |_| 2, klines),
    public("avgPrice", "avgPrice", &["symbol"], |_| 2, avg_price),
    public("ticker/price", "ticker.price", ONE_OR_MANY_PARAMS, one_or_many_weight, ticker_price),
    public("ticker/bookTicker", "ticker.book", ONE_OR_MANY_PARAMS, one_or_many_weight, book_ticker),
    public("ticker/24hr", "ticker.24hr",
        &["symbol", "symbols", "type", "symbolStatus"], ticker_24hr_weight, ticker_24hr),
    signed("POST", "order", "order.place", Effect::Place, ORDER_PARAMS, |_| 1, place_order),
    signed("POST", "order/test", "order.test", Effect::None, ORDER_PARAMS, test_order_weight, test_order),
    signed("GET", "order", "order.status", Effect::None,
        &["symbol", "orderId", "origClientOrderId"], |_| 4, query_order),
    signed("DELETE", "order", "order.cancel", Effect::Cancel, CANCEL_PARAMS, |_| 1, cancel_order),
    signed("GET", "openOrders", "openOrders.status", Effect::None, &["symbol"], open_orders_weight, open_orders),
    signed("DELETE", "openOrders", "openOrders.cancelAll", Effect::Cancel, &["symbol"], |_| 1, cancel_open_orders),
    signed("GET", "allOrders", "allOrders", Effect::None,
        &["symbol", "orderId", "startTime", "endTime", "limit"], |_| 20, all_orders),
    signed("GET", "account", "account.status", Effect::None, &["omitZeroBalances"], |_| 20, account),
    signed("GET", "myTrades", "myTrades", Effect::None,
        &["symbol", "orderId", "startTime", "endTime", "fromId", "limit"], my_trades_weight, my_trades),
    signed("GET", "rateLimit/order", "account.rateLimits.orders", Effect::None, &[], |_| 40, rate_limit_order),
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

fn symbol_of(ex: &Exchange, p: &Params) -> Result<usize, ApiErr> {
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

/// The last trade's price, else the reference price before any trade.
fn last_price(ex: &Exchange, symbol: usize) -> Decimal {
    let last_trade = ex.markets[symbol].trades.back().map(|t| t.price);
    last_trade.or_else(|| ex.reference_price(symbol)).unwrap_or_default()
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
                order_types: vec!["LIMIT".into(), "LIMIT_MAKER".into(), "MARKET".into()],
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
    Ok(to_json(&ExchangeInfo {
        timezone: "UTC".to_string(),
        server_time: now,
        rate_limits: rate_limit_entries(sim),
        exchange_filters: Vec::new(),
        symbols,
    }))
}

fn depth(sim: &Sim, p: &Params, _: i64) -> Result<Value, ApiErr> {
    let limit = p.limit(100, 5000)?;
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
        .map(|t| RestTrade {
            id: t.id,
            price: d8(t.price),
            qty: d8(t.qty),
            quote_qty: d8(t.price * t.qty),
            time: t.time,
            is_buyer_maker: t.buyer_maker,
            is_best_match: true,
        })
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

fn klines(sim: &Sim, p: &Params, _: i64) -> Result<Value, ApiErr> {
    let interval = p.require("interval")?;
    let ms = super::candles::interval_ms(interval).ok_or_else(|| ApiErr::bad(-1120, "Invalid interval."))?;
    let limit = p.limit(500, 1000)? as usize;
    let (start, end) = (p.int("startTime")?, p.int("endTime")?);
    let world = sim.world.lock();
    let i = symbol_of(&world.ex, p)?;
    let rows: Vec<KlineRow> = world.ex.markets[i]
        .candles
        .query(ms, start, end, limit)
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

fn avg_price(sim: &Sim, p: &Params, now: i64) -> Result<Value, ApiErr> {
    let world = sim.world.lock();
    let i = symbol_of(&world.ex, p)?;
    let m = &world.ex.markets[i];
    let recent = m.candles.since(now - 5 * 60_000).filter(|c| !c.volume.is_zero());
    let price = match &recent {
        Some(c) => c.quote_volume / c.volume,
        None => world.ex.reference_price(i).unwrap_or_default(),
    };
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
            price: d8(last_price(ex, i)),
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

fn ticker_24hr(sim: &Sim, p: &Params, now: i64) -> Result<Value, ApiErr> {
    let mini = match p.get("type") {
        None | Some("FULL") => false,
        Some("MINI") => true,
        Some(_) => return Err(ApiErr::illegal_chars("type", "FULL, MINI")),
    };
    let open_time = now - 86_400_000;
    per_symbol(sim, p, |ex, i| {
        let m = &ex.markets[i];
        let day = m.candles.since(open_time);
        let last = m.trades.back();
        let last_price = last_price(ex, i);
        let (open, high, low, volume, quote_volume, count, first_id, last_id) = match &day {
            Some(c) => (
                c.open,
                c.high,
                c.low,
                c.volume,
                c.quote_volume,
                c.trades,
                c.first_id,
                c.last_id,
            ),
            None => (
                last_price,
                last_price,
                last_price,
                Decimal::ZERO,
                Decimal::ZERO,
                0,
                -1,
                -1,
            ),
        };
        let mut row = Ticker24hr {
            symbol: m.spec.symbol.clone(),
            open_price: d8(open),
            high_price: d8(high),
            low_price: d8(low),
            last_price: d8(last_price),
            volume: d8(volume),
            quote_volume: d8(quote_volume),
            open_time,
            close_time: now,
            first_id,
            last_id,
            count,
            ..Default::default()
        };
        if !mini {
            let (bp, bq) = m.book.best_bid().unwrap_or_default();
            let (ap, aq) = m.book.best_ask().unwrap_or_default();
            let change = last_price - open;
            row.price_change = Some(d8(change));
            row.price_change_percent = Some(if open.is_zero() {
                Decimal::ZERO
            } else {
                (change / open * Decimal::ONE_HUNDRED).round_dp(3)
            });
            row.weighted_avg_price = Some(d8(if volume.is_zero() {
                last_price
            } else {
                quote_volume / volume
            }));
            row.prev_close_price = Some(d8(open));
            row.last_qty = Some(d8(last.map(|t| t.qty).unwrap_or_default()));
            row.bid_price = Some(d8(bp));
            row.bid_qty = Some(d8(bq));
            row.ask_price = Some(d8(ap));
            row.ask_qty = Some(d8(aq));
        }
        to_json(&row)
    })
}

// ---- orders ----

/// Parses and checks an order request's parameters (everything short of the book and balances).
fn new_order(ex: &Exchange, p: &Params) -> Result<(NewOrder, String), ApiErr> {
    let symbol = symbol_of(ex, p)?;
    let side = Side::parse(p.require("side")?).ok_or_else(|| ApiErr::bad(-1117, "Invalid side."))?;
    let kind = match p.require("type")? {
        "STOP_LOSS" | "STOP_LOSS_LIMIT" | "TAKE_PROFIT" | "TAKE_PROFIT_LIMIT" => {
            return Err(ApiErr::bad(-1014, "Unsupported order combination."))
        }
        other => OrderType::parse(other).ok_or_else(|| ApiErr::bad(-1116, "Invalid orderType."))?,
    };
    let tif = match p.get("timeInForce") {
        None => None,
        Some(raw) => Some(TimeInForce::parse(raw).ok_or_else(|| ApiErr::bad(-1115, "Invalid timeInForce."))?),
    };
    let price = p.decimal("price")?;
    let qty = p.decimal("quantity")?;
    let quote_qty = p.decimal("quoteOrderQty")?;
    match kind {
        OrderType::Limit => {
            if tif.is_none() {
                return Err(ApiErr::mandatory("timeInForce"));
            }
            qty.ok_or_else(|| ApiErr::mandatory("quantity"))?;
            price.ok_or_else(|| ApiErr::mandatory("price"))?;
            if quote_qty.is_some() {
                return Err(ApiErr::not_required("quoteOrderQty"));
            }
        }
        OrderType::LimitMaker => {
            qty.ok_or_else(|| ApiErr::mandatory("quantity"))?;
            price.ok_or_else(|| ApiErr::mandatory("price"))?;
            if tif.is_some() {
                return Err(ApiErr::not_required("timeInForce"));
            }
            if quote_qty.is_some() {
                return Err(ApiErr::not_required("quoteOrderQty"));
            }
        }
        OrderType::Market => {
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
                _ => {}
            }
        }
    }
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
        OrderType::Limit | OrderType::Market => "FULL",
        OrderType::LimitMaker => "ACK",
    };
    let resp = match p.get("newOrderRespType") {
        None => default_resp,
        Some(r @ ("ACK" | "RESULT" | "FULL")) => r,
        Some(_) => return Err(ApiErr::illegal_chars("newOrderRespType", "ACK, RESULT, FULL")),
    };
    Ok((
        NewOrder {
            symbol,
            side,
            kind,
            tif,
            price,
            qty,
            quote_qty,
            client_id,
        },
        resp.to_string(),
    ))
}

fn valid_client_id(id: &str) -> bool {
    (1..=36).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b".:/_-".contains(&b))
}

fn place_order(sim: &Sim, p: &Params, now: i64) -> Result<Value, ApiErr> {
    let mut world = sim.world.lock();
    let (req, resp) = new_order(&world.ex, p)?;
    let placed = world.ex.place(req, now)?;
    let ex = &world.ex;
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
            "orderListId": -1,
            "clientOrderId": order.client_id,
            "transactTime": now,
        }));
    }
    let mut wire = ex.order_wire(order, false);
    wire.transact_time = Some(now);
    if resp == "FULL" {
        wire.fills = placed.fills;
    }
    let mut value = to_json(&wire);
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
        (Some(id), _) => ex.order(id),
        (None, Some(cid)) => ex.order_by_client(cid),
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
    Ok(to_json(&ex.order_wire(order, true)))
}

/// The cancel request's own client order id: the one sent, else one made up.
fn cancel_client_id(sent: Option<&str>, order_id: u64) -> String {
    sent.map(str::to_string)
        .unwrap_or_else(|| format!("cancel{order_id:08}"))
}

fn cancel_wire(ex: &Exchange, id: u64, cancel_client_id: String, now: i64) -> Value {
    let Some(o) = ex.order(id) else { return Value::Null };
    let mut wire = ex.order_wire(o, false);
    wire.orig_client_order_id = Some(o.client_id.clone());
    wire.client_order_id = cancel_client_id;
    wire.transact_time = Some(now);
    wire.working_time = None;
    to_json(&wire)
}

fn cancel_order(sim: &Sim, p: &Params, now: i64) -> Result<Value, ApiErr> {
    let mut world = sim.world.lock();
    let symbol = symbol_of(&world.ex, p)?;
    let id = match find_order(&world.ex, symbol, p) {
        Ok(Some(o)) => o.id,
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
        .filter(|o| o.symbol == symbol && o.status.is_open())
        .map(|o| o.id)
        .collect();
    if ids.is_empty() {
        return Err(ApiErr::unknown_order_cancel());
    }
    let mut rows = Vec::with_capacity(ids.len());
    for id in ids {
        let cancel_id = cancel_client_id(None, id);
        world.ex.cancel(symbol, id, &cancel_id, now)?;
        rows.push(cancel_wire(&world.ex, id, cancel_id, now));
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
        .filter(|o| o.status.is_open() && symbol.is_none_or(|s| o.symbol == s))
        .map(|o| to_json(&ex.order_wire(o, true)))
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
        .filter(|o| o.symbol == symbol && from_id.is_none_or(|f| o.id >= f))
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
        .map(|o| to_json(&ex.order_wire(o, true)))
        .collect();
    Ok(Value::Array(rows))
}

fn account(sim: &Sim, p: &Params, _: i64) -> Result<Value, ApiErr> {
    let omit_zero = p.get("omitZeroBalances") == Some("true");
    let world = sim.world.lock();
    let ex = &world.ex;
    let balances: Vec<AccountBalance> = ex
        .balances()
        .iter()
        .filter(|(_, b)| !omit_zero || !(b.free + b.locked).is_zero())
        .map(|(a, b)| AccountBalance {
            asset: a.clone(),
            free: d8(b.free),
            locked: d8(b.locked),
        })
        .collect();
    let rate = "0.00100000";
    Ok(json!({
        "makerCommission": 10,
        "takerCommission": 10,
        "buyerCommission": 0,
        "sellerCommission": 0,
        "commissionRates": {"maker": rate, "taker": rate, "buyer": "0.00000000", "seller": "0.00000000"},
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

fn rate_limit_order(sim: &Sim, _: &Params, now: i64) -> Result<Value, ApiErr> {
    let usage = sim.limiter.lock().usage_entries(now, PoolKind::Orders);
    Ok(Value::Array(
        usage
            .into_iter()
            .map(|(l, count)| to_json(&rate_limit_entry(&l, Some(count))))
            .collect(),
    ))
}
