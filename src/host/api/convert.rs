//! Domain values as the Lua tables of the API contract.

use std::collections::BTreeMap;

use mlua::{Function, Lua, MultiValue, Table, Value};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use crate::exchange::breaker::BreakerStatus;
use crate::exchange::market_cache::Source;
use crate::exchange::{ApiError, Balance, Depth, Kline, Order, SymbolInfo};
use crate::ledger::LedgerStatus;

/// Keys of the market-data options and answers, interned once per VM
/// (the hot path reads and sets them by reference).
pub struct Keys {
    pub wait_ms: mlua::String,
    pub max_age_ms: mlua::String,
    pub stream: mlua::String,
    /// A market answer's `source` values, in [`SOURCES`] order.
    sources: [mlua::String; 5],
}

const SOURCES: [Source; 5] = [
    Source::Exchange,
    Source::Joined,
    Source::Cache,
    Source::Stale,
    Source::Stream,
];

impl Keys {
    pub fn new(lua: &Lua) -> mlua::Result<Keys> {
        let [exchange, joined, cache, stale, stream] = SOURCES.map(|source| lua.create_string(source.as_str()));
        Ok(Keys {
            wait_ms: lua.create_string("wait_ms")?,
            max_age_ms: lua.create_string("max_age_ms")?,
            stream: lua.create_string("stream")?,
            sources: [exchange?, joined?, cache?, stale?, stream?],
        })
    }

    /// The Lua string of a market answer's `source`.
    pub fn source(&self, source: Source) -> &mlua::String {
        let index = SOURCES.iter().position(|s| *s == source).unwrap_or(0);
        &self.sources[index]
    }
}

/// A table argument's fields, read in one pass over the table (no Lua string made for a name, no call
/// into Lua): the value of each of `names` (nil when absent), and the first key that is none of them.
pub struct Fields {
    names: &'static [&'static str],
    /// In `names` order, then one nil for names that are not among them.
    values: Vec<Value>,
    /// The first key, in the table's own order, that is not one of `names` (as text).
    pub unknown: Option<String>,
}

impl Fields {
    pub fn read(table: &Table, names: &'static [&'static str]) -> mlua::Result<Fields> {
        let mut values = vec![Value::Nil; names.len() + 1];
        let mut unknown = None;
        let read = table.for_each::<Value, Value>(|key, value| {
            let index = match &key {
                Value::String(name) => names.iter().position(|n| n.as_bytes() == &*name.as_bytes()),
                _ => None,
            };
            match index {
                Some(i) => values[i] = value,
                None => {
                    unknown = Some(key.to_string().unwrap_or_default());
                    // Stops the pass: a table of a million junk keys costs no more than one.
                    return Err(mlua::Error::runtime("unknown key"));
                }
            }
            Ok(())
        });
        match read {
            Err(_) if unknown.is_some() => {}
            other => other?,
        }
        Ok(Fields { names, values, unknown })
    }

    /// `table[name]`, nil when absent (a name not among those read for is absent too: a table
    /// holding it was refused for its unknown key).
    pub fn get(&self, name: &str) -> &Value {
        let index = self.names.iter().position(|n| *n == name).unwrap_or(self.names.len());
        &self.values[index]
    }
}

/// `{symbol, update_id, bids = {{price, qty}, ...}, asks = {...}}`
pub fn depth_table(lua: &Lua, depth: &Depth) -> mlua::Result<Table> {
    let level = |lua: &Lua, &(price, qty): &(f64, f64)| -> mlua::Result<Table> {
        let level = lua.create_table_with_capacity(2, 0)?;
        level.raw_set(1, price)?;
        level.raw_set(2, qty)?;
        Ok(level)
    };
    let table = lua.create_table_with_capacity(0, 4)?;
    table.raw_set("symbol", depth.symbol.as_str())?;
    table.raw_set("update_id", depth.update_id)?;
    table.raw_set("bids", list(lua, &depth.bids, level)?)?;
    table.raw_set("asks", list(lua, &depth.asks, level)?)?;
    Ok(table)
}

/// `{open_time, open, high, low, close, volume, close_time}`
pub fn kline_table(lua: &Lua, kline: &Kline) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(0, 10)?;
    table.raw_set("open_time", kline.open_time)?;
    table.raw_set("open", kline.open)?;
    table.raw_set("high", kline.high)?;
    table.raw_set("low", kline.low)?;
    table.raw_set("close", kline.close)?;
    table.raw_set("volume", kline.volume)?;
    table.raw_set("close_time", kline.close_time)?;
    Ok(table)
}

/// The `on_kline` event: the candle plus `symbol`, `interval` and `closed`.
pub fn kline_event_table(lua: &Lua, symbol: &str, interval: &str, kline: &Kline, closed: bool) -> mlua::Result<Table> {
    let table = kline_table(lua, kline)?;
    table.raw_set("symbol", symbol)?;
    table.raw_set("interval", interval)?;
    table.raw_set("closed", closed)?;
    Ok(table)
}

/// The contract's order table, plus `filled_quote`, `commission` and `commission_asset`.
pub fn order_table(lua: &Lua, order: &Order) -> mlua::Result<Table> {
    // Built by Lua from positional values: one call instead of a protected `raw_set` per field.
    let values: Vec<Value> = vec![
        order.id.map_or(Value::Nil, |id| Value::Integer(id as i64)),
        Value::String(lua.create_string(&order.client_id)?),
        Value::String(lua.create_string(&order.symbol)?),
        Value::String(lua.create_string(order.side.as_str())?),
        Value::String(lua.create_string(order.order_type.as_str())?),
        match order.tif {
            Some(tif) => Value::String(lua.create_string(tif.as_str())?),
            None => Value::Nil,
        },
        Value::String(lua.create_string(order.status.as_str())?),
        Value::Number(order.price),
        Value::Number(order.quantity),
        Value::Number(order.filled_qty),
        Value::Number(order.filled_quote),
        Value::Number(order.avg_price),
        Value::Number(order.last_fill_qty),
        Value::Number(order.last_fill_price),
        Value::Number(order.last_commission),
        optional_string(lua, order.commission_asset.as_deref())?,
        optional_string(lua, order.reject_reason.as_deref())?,
        Value::Integer(order.time),
        Value::Integer(order.update_time),
        order.stop_price.map_or(Value::Nil, Value::Number),
        order.list_id.map_or(Value::Nil, |id| Value::Integer(id as i64)),
    ];
    order_constructor(lua)?.call(MultiValue::from_vec(values))
}

/// The order table's field names, in the order `order_table` passes the values.
const ORDER_CONSTRUCTOR: &str = "return function(id, client_id, symbol, side, type, tif, status, price, quantity, \
     filled_qty, filled_quote, avg_price, last_fill_qty, last_fill_price, commission, commission_asset, \
     reject_reason, time, update_time, stop_price, list_id) \
     return { id = id, client_id = client_id, symbol = symbol, side = side, type = type, tif = tif, \
     status = status, price = price, quantity = quantity, filled_qty = filled_qty, filled_quote = filled_quote, \
     avg_price = avg_price, last_fill_qty = last_fill_qty, last_fill_price = last_fill_price, \
     commission = commission, commission_asset = commission_asset, reject_reason = reject_reason, time = time, \
     update_time = update_time, stop_price = stop_price, list_id = list_id } end";

/// The VM's order-table constructor, compiled on first use.
struct OrderConstructor(Function);

fn order_constructor(lua: &Lua) -> mlua::Result<Function> {
    if let Some(made) = lua.app_data_ref::<OrderConstructor>() {
        return Ok(made.0.clone());
    }
    let made: Function = lua.load(ORDER_CONSTRUCTOR).set_name("=runner").eval()?;
    lua.set_app_data(OrderConstructor(made.clone()));
    Ok(made)
}

fn optional_string(lua: &Lua, text: Option<&str>) -> mlua::Result<Value> {
    text.map_or(Ok(Value::Nil), |text| lua.create_string(text).map(Value::String))
}

pub fn list<T>(lua: &Lua, items: &[T], each: impl Fn(&Lua, &T) -> mlua::Result<Table>) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(items.len(), 0)?;
    for (i, item) in items.iter().enumerate() {
        table.raw_set(i + 1, each(lua, item)?)?;
    }
    Ok(table)
}

fn number(value: Decimal) -> f64 {
    value.to_f64().unwrap_or(f64::NAN)
}

/// `{symbol, base, quote, tick_size, step_size, min_qty, max_qty, min_notional, status, ...}`
pub fn info_table(lua: &Lua, info: &SymbolInfo) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(0, 14)?;
    table.raw_set("symbol", info.symbol.as_str())?;
    table.raw_set("base", info.base.as_str())?;
    table.raw_set("quote", info.quote.as_str())?;
    table.raw_set("status", info.status.as_str())?;
    table.raw_set("tick_size", number(info.tick_size))?;
    table.raw_set("step_size", number(info.step_size))?;
    table.raw_set("min_price", number(info.min_price))?;
    table.raw_set("max_price", number(info.max_price))?;
    table.raw_set("min_qty", number(info.min_qty))?;
    table.raw_set("max_qty", number(info.max_qty))?;
    table.raw_set("min_notional", number(info.min_notional))?;
    table.raw_set("max_notional", number(info.max_notional))?;
    table.raw_set("base_precision", info.base_precision)?;
    table.raw_set("quote_precision", info.quote_precision)?;
    Ok(table)
}

/// `{ASSET = {free, locked}, ...}`
pub fn balances_table(lua: &Lua, balances: &BTreeMap<String, Balance>) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(0, balances.len())?;
    for (asset, balance) in balances {
        let entry = lua.create_table_with_capacity(0, 2)?;
        entry.raw_set("free", balance.free)?;
        entry.raw_set("locked", balance.locked)?;
        table.raw_set(asset.as_str(), entry)?;
    }
    Ok(table)
}

/// `{state, resume_at?, pools = {{type, interval, limit, used, resets_at, scope, lease?, backoff, backoff_until?,
/// backoff_http_status?, backoff_secs_left?}, ...}, backoffs = {{scope, scope_name?, state, http_status, until,
/// secs_left}, ...}, mine = {weight, orders}, shared?}`
pub fn ledger_table(lua: &Lua, status: &LedgerStatus) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(0, 6)?;
    table.raw_set("state", status.state.as_str())?;
    table.raw_set("resume_at", status.resume_at_ms)?;
    let pools = list(lua, &status.pools, |lua, pool| {
        let entry = lua.create_table_with_capacity(0, 12)?;
        entry.raw_set("type", pool.kind.as_str())?;
        entry.raw_set("interval", pool.interval.unit.as_str())?;
        entry.raw_set("interval_num", pool.interval.num)?;
        entry.raw_set("limit", pool.limit)?;
        entry.raw_set("used", pool.used)?;
        entry.raw_set("resets_at", pool.resets_at_ms)?;
        entry.raw_set("peak", pool.peak)?;
        entry.raw_set("scope", pool.scope.to_string())?;
        entry.raw_set("lease", pool.lease)?;
        entry.raw_set("scope_name", status.scope_name(pool.scope))?;
        entry.raw_set("backoff", pool.backoff.as_str())?;
        entry.raw_set("backoff_until", pool.backoff_until_ms)?;
        entry.raw_set("backoff_http_status", pool.backoff.http_status())?;
        let left_ms = pool.backoff_until_ms.map(|until| status.left_ms(until));
        entry.raw_set("backoff_secs_left", left_ms.map(|ms| ms as f64 / 1e3))?;
        Ok(entry)
    })?;
    table.raw_set("pools", pools)?;
    let backoffs = list(lua, &status.backoffs(), |lua, backoff| {
        let entry = lua.create_table_with_capacity(0, 6)?;
        entry.raw_set("scope", backoff.scope.to_string())?;
        entry.raw_set("scope_name", backoff.scope_name.as_deref())?;
        entry.raw_set("state", backoff.state.as_str())?;
        entry.raw_set("http_status", backoff.state.http_status())?;
        entry.raw_set("until", backoff.until_ms)?;
        entry.raw_set("secs_left", backoff.left_ms as f64 / 1e3)?;
        Ok(entry)
    })?;
    table.raw_set("backoffs", backoffs)?;
    if let Some(sharing) = &status.sharing {
        let shared = lua.create_table_with_capacity(0, 4)?;
        shared.raw_set("backend", sharing.backend.as_str())?;
        shared.raw_set("group", sharing.group.as_str())?;
        shared.raw_set("connected", sharing.connected)?;
        shared.raw_set("processes", sharing.processes)?;
        table.raw_set("shared", shared)?;
    }
    let mine = lua.create_table_with_capacity(0, 4)?;
    mine.raw_set("weight", status.mine.weight)?;
    mine.raw_set("orders", status.mine.orders)?;
    mine.raw_set("total_weight", status.mine.total_weight)?;
    mine.raw_set("total_orders", status.mine.total_orders)?;
    table.raw_set("mine", mine)?;
    table.raw_set("throttled_count", status.throttled_count)?;
    table.raw_set("banned_count", status.banned_count)?;
    Ok(table)
}

/// `{market_data = {state, retry_after_ms?, calls, failures, times_opened, refused}, orders = ..., ...}`
pub fn breakers_table(lua: &Lua, breakers: &[BreakerStatus]) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(0, breakers.len())?;
    for breaker in breakers {
        let entry = lua.create_table_with_capacity(0, 6)?;
        entry.raw_set("state", breaker.state.as_str())?;
        entry.raw_set("retry_after_ms", breaker.retry_after_ms)?;
        entry.raw_set("calls", breaker.calls)?;
        entry.raw_set("failures", breaker.failures)?;
        entry.raw_set("times_opened", breaker.times_opened)?;
        entry.raw_set("refused", breaker.refused)?;
        table.raw_set(breaker.class.as_str(), entry)?;
    }
    Ok(table)
}

/// The metatable of error tables: `tostring(err)` gives `"<code>: <message>"`.
pub fn error_metatable(lua: &Lua) -> mlua::Result<Table> {
    let meta = lua.create_table()?;
    meta.raw_set(
        "__tostring",
        lua.create_function(|_, err: Table| {
            let code: String = err.raw_get("code")?;
            let message: String = err.raw_get("message")?;
            Ok(format!("{code}: {message}"))
        })?,
    )?;
    Ok(meta)
}

/// `{code, message, retry_after_ms?, exchange_code?}`
pub fn error_table(lua: &Lua, meta: &Table, err: &ApiError) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(0, 4)?;
    table.raw_set("code", err.code.as_str())?;
    table.raw_set("message", err.message.as_str())?;
    table.raw_set("retry_after_ms", err.retry_after_ms)?;
    table.raw_set("exchange_code", err.exchange_code)?;
    table.set_metatable(Some(meta.clone()))?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::{OrderStatus, OrderType, Side, TimeInForce};

    #[test]
    fn breakers_are_keyed_by_their_class() {
        use crate::exchange::breaker::{BreakerState, EndpointClass};
        let lua = Lua::new();
        let status = |class, state, retry_after_ms| BreakerStatus {
            class,
            state,
            retry_after_ms,
            calls: 7,
            failures: 4,
            times_opened: 1,
            refused: 12,
        };
        let table = breakers_table(
            &lua,
            &[
                status(EndpointClass::MarketData, BreakerState::Open, Some(2500)),
                status(EndpointClass::Orders, BreakerState::HalfOpen, None),
            ],
        )
        .unwrap();
        let market: Table = table.get("market_data").unwrap();
        assert_eq!(market.get::<String>("state").unwrap(), "open");
        assert_eq!(market.get::<u64>("retry_after_ms").unwrap(), 2500);
        assert_eq!(market.get::<u32>("failures").unwrap(), 4);
        assert_eq!(market.get::<u64>("refused").unwrap(), 12);
        let orders: Table = table.get("orders").unwrap();
        assert_eq!(orders.get::<String>("state").unwrap(), "half_open");
        assert_eq!(orders.get::<Option<u64>>("retry_after_ms").unwrap(), None);
    }

    #[test]
    fn an_order_table_carries_every_field_under_its_name() {
        let lua = Lua::new();
        let order = Order {
            strategy: "s".into(),
            id: Some(42),
            client_id: "c-1".into(),
            symbol: "BTCUSDT".into(),
            side: Side::Sell,
            order_type: OrderType::Limit,
            tif: Some(TimeInForce::Ioc),
            status: OrderStatus::PartiallyFilled,
            price: 1.5,
            quantity: 2.5,
            filled_qty: 0.5,
            filled_quote: 0.75,
            avg_price: 1.5,
            last_fill_qty: 0.25,
            last_fill_price: 1.25,
            last_commission: 0.001,
            commission_asset: Some("BNB".into()),
            reject_reason: Some("why".into()),
            time: 7,
            update_time: 9,
            stop_price: None,
            list_id: None,
        };
        let table = order_table(&lua, &order).unwrap();
        let text = |k: &str| table.get::<String>(k).unwrap();
        let number = |k: &str| table.get::<f64>(k).unwrap();
        assert_eq!(table.get::<i64>("id").unwrap(), 42);
        assert_eq!(
            [
                text("client_id"),
                text("symbol"),
                text("side"),
                text("type"),
                text("tif"),
                text("status")
            ],
            ["c-1", "BTCUSDT", "SELL", "LIMIT", "IOC", "PARTIALLY_FILLED"]
        );
        assert_eq!(
            [
                number("price"),
                number("quantity"),
                number("filled_qty"),
                number("filled_quote"),
                number("avg_price"),
                number("last_fill_qty"),
                number("last_fill_price"),
                number("commission")
            ],
            [1.5, 2.5, 0.5, 0.75, 1.5, 0.25, 1.25, 0.001]
        );
        assert_eq!([text("commission_asset"), text("reject_reason")], ["BNB", "why"]);
        assert_eq!(
            (
                table.get::<i64>("time").unwrap(),
                table.get::<i64>("update_time").unwrap()
            ),
            (7, 9)
        );
        assert_eq!(
            table.pairs::<Value, Value>().count(),
            19,
            "no field more, no field less"
        );
        // A second table reuses the compiled constructor; absent values stay absent.
        let bare = order_table(
            &lua,
            &Order {
                id: None,
                tif: None,
                commission_asset: None,
                reject_reason: None,
                ..order
            },
        )
        .unwrap();
        assert_eq!(bare.pairs::<Value, Value>().count(), 15);
    }
}
