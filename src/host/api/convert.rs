//! Domain values as the Lua tables of the API contract.

use std::collections::BTreeMap;

use mlua::{Lua, Table};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use crate::exchange::{ApiError, Balance, Depth, Kline, Order, Quote, SymbolInfo, Ticker, Trade};
use crate::ledger::LedgerStatus;

/// Keys of the per-event tables, interned once per VM (the hot path sets them by reference).
pub struct Keys {
    symbol: mlua::String,
    bid: mlua::String,
    bid_qty: mlua::String,
    ask: mlua::String,
    ask_qty: mlua::String,
    update_id: mlua::String,
    time: mlua::String,
}

impl Keys {
    pub fn new(lua: &Lua) -> mlua::Result<Keys> {
        Ok(Keys {
            symbol: lua.create_string("symbol")?,
            bid: lua.create_string("bid")?,
            bid_qty: lua.create_string("bid_qty")?,
            ask: lua.create_string("ask")?,
            ask_qty: lua.create_string("ask_qty")?,
            update_id: lua.create_string("update_id")?,
            time: lua.create_string("time")?,
        })
    }
}

/// `{symbol, bid, bid_qty, ask, ask_qty, update_id, time}` (as `on_book` and `market.quote` give it).
pub fn quote_table(lua: &Lua, keys: &Keys, quote: &Quote) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(0, 7)?;
    table.raw_set(&keys.symbol, lua.create_string(&*quote.symbol)?)?;
    table.raw_set(&keys.bid, quote.bid)?;
    table.raw_set(&keys.bid_qty, quote.bid_qty)?;
    table.raw_set(&keys.ask, quote.ask)?;
    table.raw_set(&keys.ask_qty, quote.ask_qty)?;
    table.raw_set(&keys.update_id, quote.update_id)?;
    table.raw_set(&keys.time, quote.time)?;
    Ok(table)
}

pub fn ticker_table(lua: &Lua, ticker: &Ticker) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(0, 2)?;
    table.raw_set("symbol", ticker.symbol.as_str())?;
    table.raw_set("price", ticker.price)?;
    Ok(table)
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

/// `{symbol, id, price, qty, time, buyer_maker}`
pub fn trade_table(lua: &Lua, trade: &Trade) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(0, 6)?;
    table.raw_set("symbol", &*trade.symbol)?;
    table.raw_set("id", trade.id)?;
    table.raw_set("price", trade.price)?;
    table.raw_set("qty", trade.qty)?;
    table.raw_set("time", trade.time)?;
    table.raw_set("buyer_maker", trade.buyer_maker)?;
    Ok(table)
}

/// The contract's order table, plus `filled_quote`, `commission` and `commission_asset`.
pub fn order_table(lua: &Lua, order: &Order) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(0, 20)?;
    table.raw_set("id", order.id)?;
    table.raw_set("client_id", order.client_id.as_str())?;
    table.raw_set("symbol", order.symbol.as_str())?;
    table.raw_set("side", order.side.as_str())?;
    table.raw_set("type", order.order_type.as_str())?;
    table.raw_set("tif", order.tif.map(|t| t.as_str()))?;
    table.raw_set("status", order.status.as_str())?;
    table.raw_set("price", order.price)?;
    table.raw_set("quantity", order.quantity)?;
    table.raw_set("filled_qty", order.filled_qty)?;
    table.raw_set("filled_quote", order.filled_quote)?;
    table.raw_set("avg_price", order.avg_price)?;
    table.raw_set("last_fill_qty", order.last_fill_qty)?;
    table.raw_set("last_fill_price", order.last_fill_price)?;
    table.raw_set("commission", order.last_commission)?;
    table.raw_set("commission_asset", order.commission_asset.as_deref())?;
    table.raw_set("reject_reason", order.reject_reason.as_deref())?;
    table.raw_set("time", order.time)?;
    table.raw_set("update_time", order.update_time)?;
    Ok(table)
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

/// `{state, resume_at?, pools = {{type, interval, limit, used, resets_at}, ...}, mine = {weight, orders}}`
pub fn ledger_table(lua: &Lua, status: &LedgerStatus) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(0, 6)?;
    table.raw_set("state", status.state.as_str())?;
    table.raw_set("resume_at", status.resume_at_ms)?;
    let pools = list(lua, &status.pools, |lua, pool| {
        let entry = lua.create_table_with_capacity(0, 7)?;
        entry.raw_set("type", pool.kind.as_str())?;
        entry.raw_set("interval", pool.interval.unit.as_str())?;
        entry.raw_set("interval_num", pool.interval.num)?;
        entry.raw_set("limit", pool.limit)?;
        entry.raw_set("used", pool.used)?;
        entry.raw_set("resets_at", pool.resets_at_ms)?;
        entry.raw_set("peak", pool.peak)?;
        Ok(entry)
    })?;
    table.raw_set("pools", pools)?;
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
