//! `market`: market data, from the exchange (charged, may wait for budget) or from
//! the host's streamed state (free).

use std::rc::Rc;

use mlua::{Lua, Value};

use super::convert::{self, depth_table, info_table, kline_table, quote_table, ticker_table, trade_table};
use super::{exchange_function, host_function, publish, usage, ApiCtx, Args};
use crate::exchange::grid::{self, Rounding};
use crate::exchange::{CallCtx, SymbolInfo};

const DEFAULT_DEPTH: u32 = 100;
const DEFAULT_BOOK_LEVELS: usize = 20;
const DEFAULT_KLINES: u32 = 100;
const DEFAULT_TRADES: u32 = 100;
/// The exchange's largest `limit` for each call: a larger one is refused here, before anything is sent.
const MAX_DEPTH: u32 = 5000;
const MAX_KLINES: u32 = 1000;
const MAX_TRADES: u32 = 1000;

/// `limit` checked against the exchange's range `1..=max`: a clear Lua error names the range.
fn limit_in_range(lua: &Lua, args: &Args, index: usize, default: u32, max: u32) -> mlua::Result<u32> {
    match args.opt_count(lua, index, "limit")? {
        None => Ok(default),
        Some(limit) if limit <= max => Ok(limit),
        Some(limit) => Err(usage(
            lua,
            format!(
                "bad argument #{} (limit) to '{}': {limit} is out of range, the exchange allows 1 to {max}",
                index + 1,
                args.func
            ),
        )),
    }
}

pub fn register(lua: &Lua, ctx: &Rc<ApiCtx>) -> mlua::Result<()> {
    let m = lua.create_table()?;

    // `market.quote` is hot: Rust returns plain numbers and a Lua wrapper builds the table
    // (cheaper than setting seven fields from Rust).
    let quote_fields = host_function(lua, ctx, "market.quote", |lua, c, args| {
        let symbol = match args.get(0) {
            Value::String(s) => s.to_str()?,
            _ => return Err(args.bad(lua, 0, "symbol", "string")),
        };
        c.check_symbol(lua, args.func, &symbol)?;
        Ok(match c.venue.quote(&symbol) {
            Some(q) => (
                Value::Boolean(true),
                q.bid,
                q.bid_qty,
                q.ask,
                q.ask_qty,
                q.update_id as i64,
                q.time,
            ),
            None => (Value::Nil, 0.0, 0.0, 0.0, 0.0, 0, 0),
        })
    })?;
    let quote: mlua::Function = lua
        .load(
            r#"
            local fields = ...
            return function(symbol, ...)
                local found, bid, bid_qty, ask, ask_qty, update_id, time = fields(symbol, ...)
                if not found then return nil end
                return { symbol = symbol, bid = bid, bid_qty = bid_qty, ask = ask, ask_qty = ask_qty,
                    update_id = update_id, time = time }
            end
            "#,
        )
        .set_name("=market")
        .call(quote_fields)?;
    m.raw_set("quote", quote)?;

    m.raw_set(
        "book",
        host_function(lua, ctx, "market.book", |lua, c, args| {
            let symbol = c.symbol_arg(lua, &args, 0)?;
            let levels = args
                .opt_count(lua, 1, "levels")?
                .map_or(DEFAULT_BOOK_LEVELS, |n| n as usize);
            match c.venue.book(&symbol, levels) {
                Some(depth) => Ok(Value::Table(depth_table(lua, &depth)?)),
                None => Ok(Value::Nil),
            }
        })?,
    )?;

    m.raw_set(
        "info",
        host_function(lua, ctx, "market.info", |lua, c, args| {
            let symbol = args.string(lua, 0, "symbol")?;
            info_table(lua, &c.symbol_info(lua, args.func, &symbol)?)
        })?,
    )?;

    m.raw_set(
        "symbols",
        host_function(lua, ctx, "market.symbols", |lua, c, _| {
            let mut symbols = c.venue.symbols();
            symbols.sort();
            lua.create_sequence_from(symbols)
        })?,
    )?;

    type SymbolRounding = fn(&SymbolInfo, f64) -> Result<f64, grid::GridError>;
    for (name, func, round) in [
        ("round_price", "market.round_price", grid::round_price as SymbolRounding),
        ("round_qty", "market.round_qty", grid::round_qty as SymbolRounding),
    ] {
        m.raw_set(
            name,
            host_function(lua, ctx, func, move |lua, c, args| {
                let symbol = args.string(lua, 0, "symbol")?;
                let value = args.number(lua, 1, "value")?;
                let info = c.symbol_info(lua, func, &symbol)?;
                round(&info, value).map_err(|err| usage(lua, format!("{func}: {err}")))
            })?,
        )?;
    }

    m.raw_set(
        "round_step",
        host_function(lua, ctx, "market.round_step", |lua, _, args| {
            let value = args.number(lua, 0, "value")?;
            let step = args.number(lua, 1, "step")?;
            let mode = args.string(lua, 2, "mode")?;
            let rounding = Rounding::parse(&mode).ok_or_else(|| {
                usage(
                    lua,
                    format!("market.round_step: mode must be \"down\", \"up\" or \"nearest\", got '{mode}'"),
                )
            })?;
            grid::step_from_f64(step)
                .and_then(|step| grid::round_to_step(value, step, rounding))
                .map_err(|err| usage(lua, format!("market.round_step: {err}")))
        })?,
    )?;

    m.raw_set(
        "ticker",
        exchange_function(
            lua,
            ctx,
            "market.ticker",
            symbol_only,
            |venue, call, symbol| async move { venue.ticker(&call, &symbol).await },
            ticker_table,
        )?,
    )?;

    let c = ctx.clone();
    m.raw_set(
        "book_ticker",
        exchange_function(
            lua,
            ctx,
            "market.book_ticker",
            symbol_only,
            |venue, call, symbol| async move { venue.book_ticker(&call, &symbol).await },
            move |lua, q| quote_table(lua, &c.keys, q),
        )?,
    )?;

    m.raw_set(
        "depth",
        exchange_function(
            lua,
            ctx,
            "market.depth",
            symbol_and_limit(DEFAULT_DEPTH, MAX_DEPTH),
            |venue, call, (symbol, limit)| async move { venue.depth(&call, &symbol, limit).await },
            depth_table,
        )?,
    )?;

    m.raw_set(
        "klines",
        exchange_function(
            lua,
            ctx,
            "market.klines",
            |lua, c, args| {
                let symbol = c.symbol_arg(lua, args, 0)?;
                let interval = args.string(lua, 1, "interval")?;
                if super::super::spec::parse_stream(&format!("kline_{interval}")).is_none() {
                    return Err(usage(lua, format!("market.klines: unknown interval '{interval}'")));
                }
                let limit = limit_in_range(lua, args, 2, DEFAULT_KLINES, MAX_KLINES)?;
                Ok(((symbol, interval, limit), c.market_call(args.wait_option(lua)?)))
            },
            |venue, call, (symbol, interval, limit)| async move {
                venue.klines(&call, &symbol, &interval, limit).await
            },
            |lua, k| convert::list(lua, k, kline_table),
        )?,
    )?;

    m.raw_set(
        "trades",
        exchange_function(
            lua,
            ctx,
            "market.trades",
            symbol_and_limit(DEFAULT_TRADES, MAX_TRADES),
            |venue, call, (symbol, limit)| async move { venue.trades(&call, &symbol, limit).await },
            |lua, t| convert::list(lua, t, trade_table),
        )?,
    )?;

    publish(lua, "market", m)
}

/// A lone symbol argument of a market-data call, with its budget context.
fn symbol_only(lua: &Lua, c: &ApiCtx, args: &Args) -> mlua::Result<(String, CallCtx)> {
    Ok((c.symbol_arg(lua, args, 0)?, c.market_call(args.wait_option(lua)?)))
}

/// `(symbol, limit?)` arguments of a market-data call, `default` standing for an absent limit
/// and `max` the exchange's largest.
fn symbol_and_limit(default: u32, max: u32) -> impl Fn(&Lua, &ApiCtx, &Args) -> mlua::Result<((String, u32), CallCtx)> {
    move |lua, c, args| {
        let symbol = c.symbol_arg(lua, args, 0)?;
        let limit = limit_in_range(lua, args, 1, default, max)?;
        Ok(((symbol, limit), c.market_call(args.wait_option(lua)?)))
    }
}
