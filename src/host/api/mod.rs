//! The strategy API: one file per Lua module, each with a `register` function.
//!
//! Every host function is built by [`host_function`] or [`exchange_function`], which check the
//! VM's trip flag first, so nothing a script does after a caught trip reaches the host.
//! Expected exchange failures return `nil, err`; programming mistakes raise an error that
//! says where and what.

pub(crate) mod account;
pub(crate) mod clock;
pub(crate) mod convert;
pub(crate) mod ledger;
pub mod log;
pub(crate) mod market;
pub(crate) mod orders;
pub(crate) mod timer;

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::ffi::c_void;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlua::{Function, IntoLuaMulti, Lua, MultiValue, Table, Value};

use super::calls::Calls;
use super::limits::Guard;
use super::stats::Stats;
use super::timers::TimerApi;
use crate::exchange::latency::Trigger;
use crate::exchange::stage_timing::{self, Stage};
use crate::exchange::{ApiError, CallCtx, ErrorCode, StrategyId, SymbolInfo, Venue};
use convert::Keys;
// Where the strategy API's modules have always found them.
pub use super::lua_values::{duration_ms, duration_ms_up_to, lua_type};

/// What every API function of one VM shares.
pub struct ApiCtx {
    pub venue: Arc<dyn Venue>,
    /// Runs exchange calls on the strategy's thread; `None` when only checking a file.
    pub calls: Option<Calls>,
    pub guard: Rc<Guard>,
    pub strategy: RefCell<StrategyId>,
    pub market_wait: Cell<Duration>,
    /// The strategy's `stream_answers`: market-data calls may be answered from live streams by default.
    pub stream_answers: Cell<bool>,
    pub order_wait: Cell<Duration>,
    /// While a market callback runs: when the client read its event.
    pub market_event_received: Rc<Cell<Option<Instant>>>,
    pub stats: Arc<Stats>,
    pub timers: Rc<TimerApi>,
    pub keys: Keys,
    /// The coroutine the host runs the current callback in: the only place an exchange call can
    /// wait (see [`ApiCtx::check_can_wait`]).
    pub callback_thread: Cell<*const c_void>,
    /// Bounds how much this strategy writes to the log.
    pub log_budget: RefCell<log::LogBudget>,
    known_symbols: RefCell<HashSet<String>>,
    error_meta: Table,
}

impl Drop for ApiCtx {
    fn drop(&mut self) {
        self.log_budget.borrow_mut().flush(&self.strategy());
    }
}

impl ApiCtx {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        lua: &Lua,
        venue: Arc<dyn Venue>,
        calls: Option<Calls>,
        guard: Rc<Guard>,
        strategy: StrategyId,
        stats: Arc<Stats>,
        timers: Rc<TimerApi>,
    ) -> mlua::Result<Rc<ApiCtx>> {
        Ok(Rc::new(ApiCtx {
            venue,
            calls,
            guard,
            strategy: RefCell::new(strategy),
            market_wait: Cell::new(super::spec::DEFAULT_MARKET_WAIT),
            stream_answers: Cell::new(false),
            order_wait: Cell::new(super::spec::DEFAULT_ORDER_WAIT),
            market_event_received: Rc::new(Cell::new(None)),
            stats,
            timers,
            keys: Keys::new(lua)?,
            callback_thread: Cell::new(std::ptr::null()),
            log_budget: RefCell::new(log::LogBudget::new()),
            known_symbols: RefCell::new(HashSet::new()),
            error_meta: convert::error_metatable(lua)?,
        }))
    }

    pub fn strategy(&self) -> StrategyId {
        self.strategy.borrow().clone()
    }

    /// Budget context for a market-data call; `wait` overrides the strategy's default.
    pub fn market_call(&self, wait: Option<Duration>) -> CallCtx {
        CallCtx::new(self.strategy(), wait.unwrap_or(self.market_wait.get()))
    }

    /// Budget context for an order call; an order placed from a market callback records its
    /// tick-to-order latency.
    pub fn order_call(&self, wait: Option<Duration>) -> CallCtx {
        CallCtx {
            trigger: self.market_event_received.get().map(|received| Trigger {
                received,
                samples: Arc::clone(&self.stats.tick_to_order),
            }),
            ..CallCtx::new(self.strategy(), wait.unwrap_or(self.order_wait.get()))
        }
    }

    /// Runs an exchange call on the strategy's thread, seen through even if the callback is cut
    /// short (see [`Calls`]); waiting blocks only this coroutine.
    pub async fn exchange<T, F>(&self, future: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, ApiError>> + Send + 'static,
    {
        let Some(calls) = &self.calls else {
            return Err(ApiError::new(ErrorCode::Stopped, "not connected to an exchange"));
        };
        calls.run(future).await
    }

    /// An exchange call waits for its answer by yielding the callback's coroutine. Anywhere else
    /// (while the file loads, in a coroutine the strategy created, in a function run by
    /// `string.gsub`/`table.sort`, in a metamethod the collector runs) it cannot wait, and a call
    /// started there would be sent while Lua is told it failed. Refused before anything is sent.
    pub fn check_can_wait(&self, lua: &Lua, func: &str) -> mlua::Result<()> {
        if self.calls.is_none() {
            // Only checking a file: nothing can be sent, the call answers `stopped`.
            return Ok(());
        }
        let current = lua.current_thread().to_pointer();
        let in_callback = current == self.callback_thread.get();
        // SAFETY: a thread's pointer is its `lua_State`, alive while `current`'s thread runs this
        // function; `lua_isyieldable` only reads its call counter.
        let yieldable = in_callback && unsafe { mlua::ffi::lua_isyieldable(current as *mut mlua::ffi::lua_State) != 0 };
        if in_callback && yieldable {
            return Ok(());
        }
        Err(usage(
            lua,
            format!(
                "{func}: exchange calls can only be made from a callback's own code, where it can wait \
                 (not while the file loads, not inside a coroutine the strategy created or a function called by \
                 string.gsub/table.sort or a metamethod); nothing was sent"
            ),
        ))
    }

    /// `value, nil` on success, `nil, err` on an expected failure. Checks the trip flag
    /// again: a trip cannot happen while waiting, but a stop may have been requested.
    pub fn reply<T>(
        &self,
        lua: &Lua,
        result: Result<T, ApiError>,
        build: impl FnOnce(&Lua, &T) -> mlua::Result<Table>,
    ) -> mlua::Result<(Value, Value)> {
        self.guard.check()?;
        match result {
            Ok(value) => Ok((Value::Table(build(lua, &value)?), Value::Nil)),
            Err(err) => Ok((Value::Nil, Value::Table(self.error_table(lua, &err)?))),
        }
    }

    /// An error's Lua table (with the error metatable).
    pub fn error_table(&self, lua: &Lua, err: &ApiError) -> mlua::Result<Table> {
        convert::error_table(lua, &self.error_meta, err)
    }

    /// A symbol argument that must name a listed symbol.
    pub fn symbol_arg(&self, lua: &Lua, args: &Args, index: usize) -> mlua::Result<String> {
        let symbol = args.string(lua, index, "symbol")?;
        self.check_symbol(lua, args.func, &symbol)?;
        Ok(symbol)
    }

    pub fn check_symbol(&self, lua: &Lua, func: &str, symbol: &str) -> mlua::Result<()> {
        if self.known_symbols.borrow().contains(symbol) {
            return Ok(());
        }
        if self.venue.symbol(symbol).is_none() {
            return Err(usage(lua, format!("{func}: unknown symbol '{symbol}'")));
        }
        self.known_symbols.borrow_mut().insert(symbol.to_owned());
        Ok(())
    }

    pub fn symbol_info(&self, lua: &Lua, func: &str, symbol: &str) -> mlua::Result<SymbolInfo> {
        self.venue
            .symbol(symbol)
            .ok_or_else(|| usage(lua, format!("{func}: unknown symbol '{symbol}'")))
    }
}

/// A host function as a Lua function: checks the trip flag, then runs `body` on the call's arguments.
pub fn host_function<R: IntoLuaMulti>(
    lua: &Lua,
    ctx: &Rc<ApiCtx>,
    func: &'static str,
    body: impl Fn(&Lua, &ApiCtx, Args) -> mlua::Result<R> + 'static,
) -> mlua::Result<Function> {
    let ctx = ctx.clone();
    lua.create_function(move |lua, args: MultiValue| {
        ctx.guard.check()?;
        body(lua, &ctx, Args::new(func, args))
    })
}

/// A charged exchange call as a Lua function returning `value, nil` or `nil, err`: `parse` checks the
/// arguments and picks the budget context, `request` runs as its own task (so waiting for budget
/// blocks only the calling coroutine), `build` turns the answer into a table.
pub fn exchange_function<P, T, Fut>(
    lua: &Lua,
    ctx: &Rc<ApiCtx>,
    func: &'static str,
    parse: impl Fn(&Lua, &ApiCtx, &Args) -> mlua::Result<(P, CallCtx)> + 'static,
    request: impl Fn(Arc<dyn Venue>, CallCtx, P) -> Fut + 'static,
    build: impl Fn(&Lua, &T) -> mlua::Result<Table> + 'static,
) -> mlua::Result<Function>
where
    T: Send + 'static,
    Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
{
    let ctx = ctx.clone();
    let build = Rc::new(build);
    lua.create_async_function(move |lua, args: MultiValue| {
        let c = ctx.clone();
        let build = build.clone();
        let started = (|| -> mlua::Result<Fut> {
            let received = c.market_event_received.get();
            if let Some(at) = received {
                stage_timing::reached(Stage::Called, at);
            }
            c.guard.check()?;
            let args = Args::new(func, args);
            let (params, call) = parse(&lua, &c, &args)?;
            if let Some(at) = received {
                stage_timing::reached(Stage::ArgumentsRead, at);
            }
            c.check_can_wait(&lua, func)?;
            Ok(request(c.venue.clone(), call, params))
        })();
        async move {
            let request = started?;
            // Waiting is not work: the CPU limit counts only the callback's own running time.
            c.guard.pause();
            let result = c.exchange(request).await;
            c.guard.resume();
            c.reply(&lua, result, |lua, value| build(lua, value))
        }
    })
}

/// A programming mistake: a Lua error prefixed with the script's `file:line:`.
pub fn usage(lua: &Lua, message: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::runtime(format!("{}{message}", location(lua)))
}

/// `file:line: ` of the innermost script frame (skipping host and mlua frames).
pub(crate) fn location(lua: &Lua) -> String {
    for level in 1..8 {
        let found = lua.inspect_stack(level, |debug| {
            let source = debug.source();
            let is_file = source.source.as_deref().is_some_and(|s| s.starts_with('@'));
            match (is_file, source.short_src, debug.current_line()) {
                (true, Some(src), Some(line)) => Some(format!("{src}:{line}: ")),
                _ => None,
            }
        });
        match found {
            Some(Some(location)) => return location,
            Some(None) => continue,
            None => break,
        }
    }
    String::new()
}

/// The arguments of one API call, for clear "bad argument" errors.
pub struct Args {
    pub func: &'static str,
    values: MultiValue,
}

impl Args {
    pub fn new(func: &'static str, values: MultiValue) -> Args {
        Args { func, values }
    }

    /// The raw argument values.
    pub fn into_values(self) -> MultiValue {
        self.values
    }

    pub fn get(&self, index: usize) -> &Value {
        self.values.get(index).unwrap_or(&Value::Nil)
    }

    pub fn bad(&self, lua: &Lua, index: usize, name: &str, expected: &str) -> mlua::Error {
        let got = lua_type(self.get(index));
        usage(
            lua,
            format!(
                "bad argument #{} ({name}) to '{}': {expected} expected, got {got}",
                index + 1,
                self.func
            ),
        )
    }

    pub fn string(&self, lua: &Lua, index: usize, name: &str) -> mlua::Result<String> {
        match self.get(index) {
            Value::String(s) => Ok(s.to_string_lossy()),
            _ => Err(self.bad(lua, index, name, "string")),
        }
    }

    pub fn number(&self, lua: &Lua, index: usize, name: &str) -> mlua::Result<f64> {
        match self.get(index) {
            Value::Integer(i) => Ok(*i as f64),
            Value::Number(n) => Ok(*n),
            _ => Err(self.bad(lua, index, name, "number")),
        }
    }

    /// An optional positive count (a limit); a trailing options table counts as absent.
    pub fn opt_count(&self, lua: &Lua, index: usize, name: &str) -> mlua::Result<Option<u32>> {
        match self.get(index) {
            Value::Nil | Value::Table(_) => Ok(None),
            Value::Integer(i) if *i > 0 => Ok(u32::try_from(*i).ok()),
            Value::Number(n) if *n >= 1.0 && n.fract() == 0.0 && *n <= u32::MAX as f64 => Ok(Some(*n as u32)),
            _ => Err(self.bad(lua, index, name, "positive integer")),
        }
    }

    /// The last argument, if any (where options tables go).
    pub fn last(&self) -> Option<&Value> {
        self.values.back()
    }

    /// `{wait_ms = n}` as the last argument, if given.
    pub fn wait_option(&self, lua: &Lua, keys: &Keys) -> mlua::Result<Option<Duration>> {
        let Some(Value::Table(options)) = self.values.back() else {
            return Ok(None);
        };
        wait_ms(lua, self.func, options.raw_get::<Value>(&keys.wait_ms)?)
    }
}

/// Parses a `wait_ms` option value.
pub fn wait_ms(lua: &Lua, func: &str, value: Value) -> mlua::Result<Option<Duration>> {
    match value {
        Value::Nil => Ok(None),
        other => duration_ms(&other)
            .map(Some)
            .map_err(|err| usage(lua, format!("{func}: wait_ms: {err}"))),
    }
}

/// Registers every module of the API into `lua`'s globals.
pub fn register_all(lua: &Lua, ctx: &Rc<ApiCtx>) -> mlua::Result<()> {
    market::register(lua, ctx)?;
    orders::register(lua, ctx)?;
    account::register(lua, ctx)?;
    ledger::register(lua, ctx)?;
    clock::register(lua, ctx)?;
    timer::register(lua, ctx)?;
    log::register(lua, ctx)?;
    Ok(())
}

/// Publishes a module as a read-only global.
pub fn publish(lua: &Lua, name: &str, module: Table) -> mlua::Result<()> {
    lua.globals()
        .raw_set(name, super::sandbox::read_only(lua, name, module)?)
}
