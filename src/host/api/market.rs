//! `market`: market data, from the exchange (charged, may wait for budget) or from
//! the host's streamed state (free).

use std::rc::Rc;

use std::time::Duration;

use mlua::{IntoLuaMulti, Lua, MultiValue, Value};

use super::convert::{depth_table, info_table, Keys};
use super::{duration_ms_up_to, host_function, lua_type, publish, usage, ApiCtx, Args};
use crate::exchange::grid::{self, Rounding};
use crate::exchange::market_cache::MAX_AGE_LIMIT;
use crate::exchange::{Depth, Freshness, Kline, MarketAnswer, MarketData, MarketRequest, SymbolInfo, Trade};

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
        market_function(lua, ctx, "market.ticker", |lua, c, args| {
            Ok(MarketRequest::Ticker {
                symbol: c.symbol_arg(lua, args, 0)?,
            })
        })?,
    )?;

    m.raw_set(
        "book_ticker",
        market_function(lua, ctx, "market.book_ticker", |lua, c, args| {
            Ok(MarketRequest::BookTicker {
                symbol: c.symbol_arg(lua, args, 0)?,
            })
        })?,
    )?;

    m.raw_set(
        "depth",
        market_function(lua, ctx, "market.depth", |lua, c, args| {
            Ok(MarketRequest::Depth {
                symbol: c.symbol_arg(lua, args, 0)?,
                limit: limit_in_range(lua, args, 1, DEFAULT_DEPTH, MAX_DEPTH)?,
            })
        })?,
    )?;

    m.raw_set(
        "klines",
        market_function(lua, ctx, "market.klines", |lua, c, args| {
            let symbol = c.symbol_arg(lua, args, 0)?;
            let interval = args.string(lua, 1, "interval")?;
            if super::super::spec::parse_stream(&format!("kline_{interval}")).is_none() {
                return Err(usage(lua, format!("market.klines: unknown interval '{interval}'")));
            }
            let limit = limit_in_range(lua, args, 2, DEFAULT_KLINES, MAX_KLINES)?;
            Ok(MarketRequest::Klines {
                symbol,
                interval,
                limit,
            })
        })?,
    )?;

    m.raw_set(
        "trades",
        market_function(lua, ctx, "market.trades", |lua, c, args| {
            Ok(MarketRequest::Trades {
                symbol: c.symbol_arg(lua, args, 0)?,
                limit: limit_in_range(lua, args, 1, DEFAULT_TRADES, MAX_TRADES)?,
            })
        })?,
    )?;

    publish(lua, "market", m)
}

/// A market-data call as a Lua function returning `answer, nil` or `nil, err`: `parse` reads the request
/// from the arguments; the trailing options table gives `wait_ms`, `max_age_ms` and `stream`. An answer
/// the process already holds (a live stream's, or a kept one within `max_age_ms`) is returned by a plain
/// function call, without a future, a task or a request; anything else is asked of the venue by an async
/// call, shared with identical requests in flight. Either way Rust hands back positional values (see
/// [`answer_values`]) and Lua builds the answer table: one call instead of a protected store per field.
fn market_function(
    lua: &Lua,
    ctx: &Rc<ApiCtx>,
    func: &'static str,
    parse: impl Fn(&Lua, &ApiCtx, &Args) -> mlua::Result<MarketRequest> + 'static,
) -> mlua::Result<mlua::Function> {
    let prepare = Rc::new(move |lua: &Lua, c: &ApiCtx, args: MultiValue| -> mlua::Result<_> {
        c.guard.check()?;
        let args = Args::new(func, args);
        let request = parse(lua, c, &args)?;
        let (wait, freshness) = market_options(lua, c, &args)?;
        let local = c.venue.market_local(&c.strategy.borrow(), &request, freshness);
        Ok((request, wait, freshness, local))
    });

    let held = {
        let (ctx, prepare) = (ctx.clone(), prepare.clone());
        lua.create_function(move |lua, args: MultiValue| {
            let (_, _, _, local) = prepare(lua, &ctx, args)?;
            match local {
                Some(answer) => answer_values(lua, &ctx.keys, &answer),
                None => Ok(AnswerValues::default()),
            }
        })?
    };

    let asked = {
        let ctx = ctx.clone();
        lua.create_async_function(move |lua, args: MultiValue| {
            let c = ctx.clone();
            let prepared = prepare(&lua, &c, args).and_then(|prepared| {
                if prepared.3.is_none() {
                    // Only a call that goes to the exchange waits; one where Lua cannot wait is refused
                    // before anything is sent.
                    c.check_can_wait(&lua, func)?;
                }
                Ok(prepared)
            });
            async move {
                let (request, wait, freshness, local) = prepared?;
                let result = match local {
                    Some(answer) => Ok(answer),
                    None => {
                        let venue = c.venue.clone();
                        let call = c.market_call(wait);
                        // Waiting is not work: the CPU limit counts only the callback's own running time.
                        c.guard.pause();
                        let result = c
                            .exchange(async move { venue.market_data(&call, request, freshness).await })
                            .await;
                        c.guard.resume();
                        result
                    }
                };
                c.guard.check()?;
                match result {
                    Ok(answer) => answer_values(&lua, &c.keys, &answer),
                    Err(err) => Ok(AnswerValues {
                        age_ms_or_error: Value::Table(c.error_table(&lua, &err)?),
                        ..AnswerValues::default()
                    }),
                }
            }
        })?
    };

    // The held answer is tried first; only a miss pays for the async call. `shape` picks the builder.
    lua.load(
        r#"
        local held, asked = ...
        local unpack = string.unpack
        local function levels(packed, pos, count)
            local out = {}
            for i = 1, count do
                local price, qty
                price, qty, pos = unpack("<dd", packed, pos)
                out[i] = { price, qty }
            end
            return out, pos
        end
        -- A list's `age_ms` and `source` are read through its metatable, so `#`, `ipairs` and `pairs`
        -- see only the rows.
        local setmetatable = setmetatable
        local function with_answer_fields(rows, age_ms, source)
            return setmetatable(rows, { __index = { age_ms = age_ms, source = source } })
        end
        local builders = {
            function(symbol, age_ms, source, price)
                return { symbol = symbol, price = price, age_ms = age_ms, source = source }
            end,
            function(symbol, age_ms, source, bid, bid_qty, ask, ask_qty, update_id, time)
                return { symbol = symbol, bid = bid, bid_qty = bid_qty, ask = ask, ask_qty = ask_qty,
                    update_id = update_id, time = time, age_ms = age_ms, source = source }
            end,
            function(symbol, age_ms, source, update_id, bid_count, ask_count, packed)
                local bids, pos = levels(packed, 1, bid_count)
                local asks = levels(packed, pos, ask_count)
                return { symbol = symbol, update_id = update_id, bids = bids, asks = asks, age_ms = age_ms,
                    source = source }
            end,
            function(_, age_ms, source, count, packed)
                local rows, pos = {}, 1
                for i = 1, count do
                    local open_time, open, high, low, close, volume, close_time
                    open_time, open, high, low, close, volume, close_time, pos = unpack("<i8dddddi8", packed, pos)
                    rows[i] = { open_time = open_time, open = open, high = high, low = low, close = close,
                        volume = volume, close_time = close_time }
                end
                return with_answer_fields(rows, age_ms, source)
            end,
            function(symbol, age_ms, source, count, packed)
                local rows, pos = {}, 1
                for i = 1, count do
                    local id, price, qty, time, buyer_maker
                    id, price, qty, time, buyer_maker, pos = unpack("<i8ddi8B", packed, pos)
                    rows[i] = { symbol = symbol, id = id, price = price, qty = qty, time = time,
                        buyer_maker = buyer_maker == 1 }
                end
                return with_answer_fields(rows, age_ms, source)
            end,
        }
        return function(symbol, ...)
            local shape, age_ms, source, a, b, c, d, e, f = held(symbol, ...)
            if not shape then
                shape, age_ms, source, a, b, c, d, e, f = asked(symbol, ...)
                if not shape then return nil, age_ms end
            end
            return builders[shape](symbol, age_ms, source, a, b, c, d, e, f), nil
        end
        "#,
    )
    .set_name("=market")
    .call((held, asked))
}

/// An answer as positional values for the Lua-side builders: `shape` (1 ticker, 2 quote, 3 depth,
/// 4 klines, 5 trades, the last three packed; nil: no answer), then `age_ms` (or the error), `source` and the fields.
/// The symbol is the caller's own argument (answers are kept per request, so it is the same).
#[derive(Default)]
struct AnswerValues {
    shape: Value,
    age_ms_or_error: Value,
    source: Value,
    fields: [Value; 6],
}

impl IntoLuaMulti for AnswerValues {
    fn into_lua_multi(self, lua: &Lua) -> mlua::Result<MultiValue> {
        let [a, b, c, d, e, f] = self.fields;
        (self.shape, self.age_ms_or_error, self.source, a, b, c, d, e, f).into_lua_multi(lua)
    }
}

fn answer_values(lua: &Lua, keys: &Keys, answer: &MarketAnswer) -> mlua::Result<AnswerValues> {
    let nil = || Value::Nil;
    let (shape, fields) = match &answer.data {
        MarketData::Ticker(t) => (1, [Value::Number(t.price), nil(), nil(), nil(), nil(), nil()]),
        MarketData::Quote(q) => (
            2,
            [
                Value::Number(q.bid),
                Value::Number(q.bid_qty),
                Value::Number(q.ask),
                Value::Number(q.ask_qty),
                Value::Integer(q.update_id as i64),
                Value::Integer(q.time),
            ],
        ),
        MarketData::Depth(d) => (
            3,
            [
                Value::Integer(d.update_id as i64),
                Value::Integer(d.bids.len() as i64),
                Value::Integer(d.asks.len() as i64),
                Value::String(lua.create_string(packed_levels(d))?),
                nil(),
                nil(),
            ],
        ),
        MarketData::Klines(klines) => (4, packed_list(lua, klines, pack_kline)?),
        MarketData::Trades(trades) => (5, packed_list(lua, trades, pack_trade)?),
    };
    Ok(AnswerValues {
        shape: Value::Integer(shape),
        age_ms_or_error: Value::Integer(answer.age_ms as i64),
        source: Value::String(keys.source(answer.source).clone()),
        fields,
    })
}

/// A depth's levels, bids then asks, as little-endian `f64` price and quantity pairs: one Lua string
/// that the Lua-side builder unpacks, instead of a protected store per number from Rust.
fn packed_levels(depth: &Depth) -> Vec<u8> {
    let mut packed = Vec::with_capacity((depth.bids.len() + depth.asks.len()) * 16);
    for (price, qty) in depth.bids.iter().chain(&depth.asks) {
        packed.extend_from_slice(&price.to_le_bytes());
        packed.extend_from_slice(&qty.to_le_bytes());
    }
    packed
}

/// A list's rows packed into one Lua string (see [`pack_kline`], [`pack_trade`]) with their count, for
/// the Lua-side builder to unpack.
fn packed_list<T>(lua: &Lua, rows: &[T], pack: fn(&mut Vec<u8>, &T)) -> mlua::Result<[Value; 6]> {
    let mut packed = Vec::with_capacity(rows.len() * 56);
    for row in rows {
        pack(&mut packed, row);
    }
    let nil = || Value::Nil;
    Ok([
        Value::Integer(rows.len() as i64),
        Value::String(lua.create_string(packed)?),
        nil(),
        nil(),
        nil(),
        nil(),
    ])
}

/// A candle as `string.pack("<i8dddddi8", open_time, open, high, low, close, volume, close_time)`.
fn pack_kline(packed: &mut Vec<u8>, kline: &Kline) {
    packed.extend_from_slice(&kline.open_time.to_le_bytes());
    for value in [kline.open, kline.high, kline.low, kline.close, kline.volume] {
        packed.extend_from_slice(&value.to_le_bytes());
    }
    packed.extend_from_slice(&kline.close_time.to_le_bytes());
}

/// A trade as `string.pack("<i8ddi8B", id, price, qty, time, buyer_maker)`.
fn pack_trade(packed: &mut Vec<u8>, trade: &Trade) {
    packed.extend_from_slice(&(trade.id as i64).to_le_bytes());
    packed.extend_from_slice(&trade.price.to_le_bytes());
    packed.extend_from_slice(&trade.qty.to_le_bytes());
    packed.extend_from_slice(&trade.time.to_le_bytes());
    packed.push(u8::from(trade.buyer_maker));
}

/// `{wait_ms = n, max_age_ms = n, stream = bool}` as the last argument, each optional; `stream`
/// defaults to the strategy's `stream_answers`.
fn market_options(lua: &Lua, c: &ApiCtx, args: &Args) -> mlua::Result<(Option<Duration>, Freshness)> {
    let wait = args.wait_option(lua, &c.keys)?;
    let mut freshness = Freshness {
        max_age: None,
        stream: c.stream_answers.get(),
    };
    if let Some(Value::Table(options)) = args.last() {
        freshness.max_age = max_age_ms(lua, args.func, options.raw_get::<Value>(&c.keys.max_age_ms)?)?;
        match options.raw_get::<Value>(&c.keys.stream)? {
            Value::Nil => {}
            Value::Boolean(allowed) => freshness.stream = allowed,
            other => {
                return Err(usage(
                    lua,
                    format!("{}: stream must be a boolean, got {}", args.func, lua_type(&other)),
                ))
            }
        }
    }
    Ok((wait, freshness))
}

/// Parses a `max_age_ms` option: a number from 0 to a day.
fn max_age_ms(lua: &Lua, func: &str, value: Value) -> mlua::Result<Option<Duration>> {
    if value.is_nil() {
        return Ok(None);
    }
    duration_ms_up_to(&value, MAX_AGE_LIMIT.as_millis() as f64, "a day")
        .map(Some)
        .map_err(|err| usage(lua, format!("{func}: max_age_ms: {err}")))
}
