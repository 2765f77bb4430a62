//! One loaded strategy: its sandboxed VM, validated declaration and callbacks, and the
//! calls into it. Built the same way for running, reloading and `runner check`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use mlua::{ChunkMode, Function, IntoLuaMulti, Lua, Thread, ThreadStatus, Value};
use parking_lot::Mutex;

use super::api::{self, convert, ApiCtx};
use super::calls::Calls;
use super::error::LoadError;
use super::inbox::Event;
use super::limits::{self, Guard, TripKind};
use super::market_run::{MarketRun, RunEvent, RunState};
use super::require::{self, LoadedFiles};
use super::sandbox::{self, error_text};
use super::spec::{self, Callbacks, StrategyMeta};
use super::state_table::{StateError, StateValue};
use super::stats::Stats;
use super::timers::{TimerApi, Timers};
use crate::exchange::Venue;

/// Everything a VM is built from.
pub struct VmOptions<'a> {
    pub venue: Arc<dyn Venue>,
    /// Runs exchange calls on the strategy's thread; `None` when only checking.
    pub calls: Option<Calls>,
    pub stdlib_dir: &'a Path,
    pub memory_limit: usize,
    pub instruction_budget: u64,
    pub stats: Arc<Stats>,
    /// The strategy's host-owned timers; `None` when only checking.
    pub timers: Option<Rc<Timers>>,
    pub known_symbol: &'a dyn Fn(&str) -> bool,
    /// `state` as handed over by the previous version or restored from disk.
    pub state: Option<StateValue>,
}

/// How one callback went.
#[derive(Debug, Clone, PartialEq)]
pub enum CallOutcome {
    Done,
    /// A Lua error: message and traceback.
    Failed(String),
    /// Cut short by a limit (possibly after the script tried to catch it).
    Tripped(TripKind),
}

pub struct StrategyVm {
    lua: Lua,
    pub meta: StrategyMeta,
    callbacks: Callbacks,
    trampoline: Trampoline,
    /// A finished coroutine kept for the next callback (creating one per event costs more).
    spare: RefCell<Option<Thread>>,
    /// Interned symbol strings for `on_book` (bounded by the subscribed symbols).
    symbols: RefCell<HashMap<Arc<str>, mlua::String>>,
    /// What a run of market events works with (see [`StrategyVm::deliver_run`]).
    runs: Rc<RunState>,
    guard: Rc<Guard>,
    api: Rc<ApiCtx>,
    files: LoadedFiles,
}

impl StrategyVm {
    /// Loads and validates the strategy file at `path` in a fresh VM.
    pub fn load(path: &Path, options: VmOptions<'_>) -> Result<StrategyVm, LoadError> {
        let source = require::read_source(path).map_err(|message| LoadError::Read {
            path: path.to_path_buf(),
            message,
        })?;
        let provisional: Rc<str> = spec::default_name(path).into();
        let guard = Guard::new(options.instruction_budget, options.memory_limit);
        let lua_err = |err: mlua::Error| LoadError::from_lua(&err);
        let lua = sandbox::new_vm(&guard, options.memory_limit).map_err(lua_err)?;
        let timers = TimerApi::new(options.timers.clone());
        let api = ApiCtx::new(
            &lua,
            options.venue.clone(),
            options.calls.clone(),
            guard.clone(),
            Arc::from(&*provisional),
            options.stats.clone(),
            timers,
        )
        .map_err(lua_err)?;
        api::register_all(&lua, &api).map_err(lua_err)?;
        let state = options
            .state
            .unwrap_or_else(StateValue::empty)
            .to_lua(&lua)
            .map_err(lua_err)?;
        lua.globals().raw_set("state", state).map_err(lua_err)?;
        let files: LoadedFiles = Arc::new(Mutex::new(vec![path.to_path_buf()]));
        let roots = vec![require::strategy_folder(path), options.stdlib_dir.to_path_buf()];
        require::install(&lua, roots, files.clone()).map_err(lua_err)?;
        let runs = RunState::new(&lua, guard.clone(), api.market_event_received.clone()).map_err(lua_err)?;
        let trampoline = make_trampoline(&lua, &runs).map_err(lua_err)?;

        guard.begin();
        let returned = lua
            .load(source)
            .set_name(format!("@{}", path.display()))
            .set_mode(ChunkMode::Text)
            .into_function()
            .and_then(|chunk| chunk.call::<Value>(()))
            .map_err(|err| match guard.tripped() {
                Some(kind) => LoadError::Lua(format!("{}: {} while loading", path.display(), kind.describe())),
                None => lua_err(err),
            })?;
        let (mut meta, callbacks) = spec::validate(path, returned, options.known_symbol)?;
        runs.set_callbacks(callbacks.on_book.is_some(), callbacks.on_trade.is_some());
        meta.files = files.lock().clone();
        *api.strategy.borrow_mut() = Arc::from(meta.name.as_str());
        api.market_wait.set(meta.max_wait);
        api.stream_answers.set(meta.stream_answers);
        api.order_wait.set(meta.order_wait);
        Ok(StrategyVm {
            lua,
            meta,
            callbacks,
            trampoline,
            spare: RefCell::new(None),
            symbols: RefCell::new(HashMap::new()),
            runs,
            guard,
            api,
            files,
        })
    }

    /// This VM is now the running version (its held-back timer calls take effect).
    pub fn activate(&self) {
        self.api.timers.activate();
    }

    /// While a market callback runs: when the client read its event (orders placed are timed from it).
    pub fn set_market_event_received(&self, received: Option<std::time::Instant>) {
        self.api.market_event_received.set(received);
    }

    pub fn files(&self) -> Vec<PathBuf> {
        self.files.lock().clone()
    }

    /// The live list of files this VM has loaded, shared.
    pub fn loaded_files(&self) -> LoadedFiles {
        self.files.clone()
    }

    pub fn lua(&self) -> &Lua {
        &self.lua
    }

    /// Delivers one event to its callback; `None` when the strategy does not handle it.
    pub async fn deliver(&self, event: &Event) -> Option<CallOutcome> {
        let lua = &self.lua;
        let (callback, arg) = match event {
            Event::Book(quote) => {
                let callback = self.callbacks.on_book.as_ref()?;
                let symbol = match self.symbol_string(&quote.symbol) {
                    Ok(symbol) => symbol,
                    Err(err) => return Some(self.classify(Err(err))),
                };
                // The quote table is built by Lua inside the coroutine: far cheaper than
                // seven protected `raw_set`s from Rust.
                let args = (
                    callback.clone(),
                    symbol,
                    quote.bid,
                    quote.bid_qty,
                    quote.ask,
                    quote.ask_qty,
                    quote.update_id as i64,
                    quote.time,
                );
                self.guard.begin();
                let result = self.run(&self.trampoline.book, args).await;
                return Some(self.classify(result));
            }
            Event::Depth(symbol) => (
                self.callbacks.on_depth.as_ref()?,
                lua.create_string(&**symbol).map(Value::String),
            ),
            Event::Trade(trade) => {
                let callback = self.callbacks.on_trade.as_ref()?;
                let symbol = match self.symbol_string(&trade.symbol) {
                    Ok(symbol) => symbol,
                    Err(err) => return Some(self.classify(Err(err))),
                };
                // Built by Lua from positional values, as `on_book`'s quote is.
                let args = (
                    callback.clone(),
                    symbol,
                    trade.id as i64,
                    trade.price,
                    trade.qty,
                    trade.time,
                    trade.buyer_maker,
                );
                self.guard.begin();
                let result = self.run(&self.trampoline.trade, args).await;
                return Some(self.classify(result));
            }
            Event::Kline {
                symbol,
                interval,
                kline,
                closed,
            } => (
                self.callbacks.on_kline.as_ref()?,
                convert::kline_event_table(lua, symbol, interval, kline, *closed).map(Value::Table),
            ),
            Event::Order(order) => (
                self.callbacks.on_order.as_ref()?,
                convert::order_table(lua, order).map(Value::Table),
            ),
            Event::Timer(name) => (
                self.callbacks.on_timer.as_ref()?,
                lua.create_string(&**name).map(Value::String),
            ),
        };
        Some(match arg {
            Ok(arg) => self.invoke(callback, arg).await,
            Err(err) => self.classify(Err(err)),
        })
    }

    /// Delivers the market events `source` yields, in order, each to its callback (`on_book`,
    /// `on_trade`), in as few coroutine resumes as it can: normally one for the whole run (see
    /// [`super::market_run`]). Returns at the first callback that fails or trips, with its outcome
    /// (the events after it stay with `source`: call again for them), or [`CallOutcome::Done`] once
    /// `source` has nothing more.
    pub async fn deliver_run(&self, source: &mut dyn MarketRun) -> CallOutcome {
        loop {
            let (on_book, on_trade) = (self.callbacks.on_book.clone(), self.callbacks.on_trade.clone());
            let installed = self.runs.install(&mut *source);
            self.guard.begin();
            let result = self.run(&self.trampoline.run, (on_book, on_trade)).await;
            self.guard.settle();
            drop(installed);
            let outcome = self.classify(result);
            if outcome != CallOutcome::Done {
                return outcome;
            }
            // The run stopped before an event whose symbol Lua has no name for yet: delivered the
            // ordinary way (which names it), then the run goes on.
            let Some((event, received)) = self.runs.take_held() else {
                return CallOutcome::Done;
            };
            let event = match event {
                RunEvent::Book(quote) => Event::Book(quote),
                RunEvent::Trade(trade) => Event::Trade(trade),
            };
            self.set_market_event_received(received);
            match self.deliver(&event).await {
                None | Some(CallOutcome::Done) => {}
                Some(outcome) => return outcome,
            }
        }
    }

    pub async fn on_start(&self) -> Option<CallOutcome> {
        Some(self.invoke(self.callbacks.on_start.as_ref()?, ()).await)
    }

    pub async fn on_reload(&self) -> Option<CallOutcome> {
        Some(self.invoke(self.callbacks.on_reload.as_ref()?, ()).await)
    }

    pub async fn on_stop(&self, reason: &str) -> Option<CallOutcome> {
        Some(self.invoke(self.callbacks.on_stop.as_ref()?, reason).await)
    }

    /// Runs `callback(args)` as a coroutine with a fresh instruction budget.
    pub async fn invoke(&self, callback: &Function, args: impl IntoLuaMulti) -> CallOutcome {
        self.guard.begin();
        let result = self.run(&self.trampoline.call, (callback.clone(), args)).await;
        self.guard.settle();
        self.classify(result)
    }

    /// Runs `entry(args)` in a coroutine. Most callbacks never wait, so the coroutine is
    /// first resumed directly; only when it yields (an exchange call is pending) is it
    /// handed to mlua's async driver, which resumes it as the call completes.
    async fn run(&self, entry: &Function, args: impl IntoLuaMulti) -> mlua::Result<(bool, Value)> {
        let spare = self.spare.borrow_mut().take();
        let thread = match spare {
            Some(thread) => {
                thread.reset(entry.clone())?;
                thread
            }
            None => self.lua.create_thread(entry.clone())?,
        };
        self.api.callback_thread.set(thread.to_pointer());
        let watching = self.guard.watch(&thread);
        let first = thread.resume::<(bool, Value)>(args);
        match thread.status() {
            ThreadStatus::Resumable => {
                let mut waiting = thread.into_async::<(bool, Value)>(())?;
                // Declared after `waiting`, so dropped before it, even when the callback is cut
                // short: the watch ends while the coroutine is still referenced.
                let _watching = watching;
                (&mut waiting).await
            }
            ThreadStatus::Finished => {
                *self.spare.borrow_mut() = Some(thread);
                first
            }
            _ => first,
        }
    }

    fn symbol_string(&self, symbol: &Arc<str>) -> mlua::Result<mlua::String> {
        if let Some(interned) = self.symbols.borrow().get(symbol) {
            return Ok(interned.clone());
        }
        let interned = self.lua.create_string(&**symbol)?;
        self.runs.name_symbol(symbol, &interned)?;
        self.symbols.borrow_mut().insert(symbol.clone(), interned.clone());
        Ok(interned)
    }

    fn classify(&self, result: mlua::Result<(bool, Value)>) -> CallOutcome {
        let failure = match result {
            Ok((true, _)) => None,
            Ok((false, message)) => {
                if limits::is_memory_error(&message) {
                    self.guard.trip(TripKind::Memory);
                }
                Some(message.to_string().unwrap_or_else(|_| message.type_name().to_owned()))
            }
            Err(err) => {
                if limits::is_memory_mlua_error(&err) {
                    self.guard.trip(TripKind::Memory);
                }
                Some(error_text(&err))
            }
        };
        match (self.guard.tripped(), failure) {
            (Some(kind), _) => CallOutcome::Tripped(kind),
            (None, Some(message)) => CallOutcome::Failed(message),
            (None, None) => CallOutcome::Done,
        }
    }

    /// A copy of the `state` global (what cannot be kept is reported in `warnings`; a cycle or an
    /// oversized state is an error).
    pub fn state(&self, warnings: &mut Vec<String>) -> Result<StateValue, StateError> {
        match self.lua.globals().raw_get::<Value>("state") {
            Ok(value @ Value::Table(_)) => StateValue::from_lua(&value, warnings),
            Ok(other) => {
                warnings.push(format!("state was replaced by a {}; nothing kept", other.type_name()));
                Ok(StateValue::empty())
            }
            Err(err) => {
                warnings.push(format!("state could not be read ({err}); nothing kept"));
                Ok(StateValue::empty())
            }
        }
    }

    pub fn used_memory(&self) -> usize {
        self.lua.used_memory()
    }
}

/// Entry points of callback coroutines: `call(f, ...)` runs `f(...)` under `xpcall`,
/// turning an error into its message plus a traceback (so failures are logged with where
/// they happened); `book(f, symbol, bid, ...)` builds the quote table first.
struct Trampoline {
    call: Function,
    book: Function,
    trade: Function,
    /// `run(on_book, on_trade)`: delivers a run of market events (see [`super::market_run`]).
    run: Function,
}

fn make_trampoline(lua: &Lua, runs: &Rc<RunState>) -> mlua::Result<Trampoline> {
    let handler = lua.create_function(|lua, err: Value| {
        let message = match &err {
            Value::Error(e) => error_text(e),
            other => other.to_string().unwrap_or_else(|_| other.type_name().to_owned()),
        };
        lua.traceback(Some(&message), 1)
    })?;
    let (call, book, trade, run) = lua
        .load(
            r#"
            local xpcall, handler, next_event, names = ...
            local function call(f, ...) return xpcall(f, handler, ...) end
            local function book(f, symbol, bid, bid_qty, ask, ask_qty, update_id, time)
                return xpcall(f, handler, { symbol = symbol, bid = bid, bid_qty = bid_qty, ask = ask,
                    ask_qty = ask_qty, update_id = update_id, time = time })
            end
            local function trade(f, symbol, id, price, qty, time, buyer_maker)
                return xpcall(f, handler, { symbol = symbol, id = id, price = price, qty = qty, time = time,
                    buyer_maker = buyer_maker })
            end
            -- The tables are built as `book` and `trade` build them; kinds as market_run.rs numbers them.
            local function deliver(on_book, on_trade)
                local kind, s, a, b, c, d, e, f = next_event()
                while kind do
                    if kind == 1 then
                        on_book({ symbol = names[s], bid = a, bid_qty = b, ask = c, ask_qty = d,
                            update_id = e, time = f })
                    else
                        on_trade({ symbol = names[s], id = a, price = b, qty = c, time = d, buyer_maker = e })
                    end
                    kind, s, a, b, c, d, e, f = next_event()
                end
            end
            local function run(on_book, on_trade) return xpcall(deliver, handler, on_book, on_trade) end
            return call, book, trade, run
            "#,
        )
        .set_name("=trampoline")
        .call::<(Function, Function, Function, Function)>((
            lua.named_registry_value::<Function>(sandbox::RAW_XPCALL)?,
            handler,
            runs.next_event_function(lua)?,
            runs.names().clone(),
        ))?;
    Ok(Trampoline { call, book, trade, run })
}
