//! Runs of market events (quotes and trades) delivered to their callbacks in one coroutine resume.
//!
//! A callback in a coroutine of its own costs, per event, a coroutine reset, a resume from Rust,
//! an `xpcall` and the future machinery around them: more than a counting `on_book` itself. A run
//! resumes one coroutine whose Lua loop (see `vm.rs`'s trampoline) asks [`next_event`], a plain C
//! function, for the next event's fields — numbers, and the symbol as an index into a table of
//! interned names, so nothing is allocated and nothing can fail — then builds the callback's table
//! exactly as a single delivery does and calls the callback.
//!
//! Every guarantee of one-callback-per-coroutine holds per event: [`next_event`] gives each
//! callback a fresh budget and restarts its watch (a callback that ran long leaves its hook armed;
//! the next one starts unhooked), and sets the instant its orders are timed from. A callback that
//! waits for the exchange suspends the run with it; the run goes on with the next event once it is
//! done. An error, or a trip, ends the run at that event: the caller hears of it and starts another
//! run for the rest, so no event is lost or delivered twice. After a trip the hook raises on every
//! instruction, so a script cannot keep a run going by catching it, and [`next_event`] hands out
//! nothing more.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::raw::c_int;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use mlua::{ffi, Function, Lua, Table};

use super::limits::Guard;
use crate::exchange::stage_timing;
use crate::exchange::{Quote, Trade};

/// A market event a run delivers.
pub enum RunEvent {
    Book(Quote),
    Trade(Trade),
}

/// Where a run's events come from, one at a time, as the run reaches them.
pub trait MarketRun {
    /// The next event of the run, with when the client read it (`None` in a replay); `None` ends
    /// the run.
    fn next_event(&mut self) -> Option<(RunEvent, Option<Instant>)>;
}

/// Kinds as [`next_event`] returns them to the Lua loop.
const BOOK: i64 = 1;
const TRADE: i64 = 2;

/// Symbols recognised by their `Arc` before hashing: the stream side interns its symbols, so the
/// same few pointers come back.
const RECENT_SYMBOLS: usize = 8;

/// The state [`next_event`] works on: one per VM, shared with Lua as its upvalue.
pub struct RunState {
    guard: Rc<Guard>,
    /// While a market callback runs: when the client read its event (the API's, shared).
    received: Rc<Cell<Option<Instant>>>,
    /// The run's source while a run is under way (see [`RunState::install`]).
    source: Cell<Option<NonNull<dyn MarketRun>>>,
    /// Which kinds have a callback: events of the others are passed over.
    has_book: Cell<bool>,
    has_trade: Cell<bool>,
    /// Symbol → its index in `names` (the Lua table the loop reads names from).
    symbols: RefCell<HashMap<Arc<str>, i64>>,
    recent: RefCell<Vec<(Arc<str>, i64)>>,
    names: Table,
    /// An event whose symbol has no name in Lua yet: the run stops before it and the caller
    /// delivers it the ordinary way (which names the symbol).
    held: Cell<Option<(RunEvent, Option<Instant>)>>,
}

impl RunState {
    pub fn new(lua: &Lua, guard: Rc<Guard>, received: Rc<Cell<Option<Instant>>>) -> mlua::Result<Rc<Self>> {
        let state = Rc::new(RunState {
            guard,
            received,
            source: Cell::new(None),
            has_book: Cell::new(false),
            has_trade: Cell::new(false),
            symbols: RefCell::new(HashMap::new()),
            recent: RefCell::new(Vec::new()),
            names: lua.create_table()?,
            held: Cell::new(None),
        });
        // Lua holds it too: the C function's pointer stays valid as long as the VM that can call it.
        lua.set_app_data(state.clone());
        Ok(state)
    }

    /// Which callbacks the strategy has (known once its file has run).
    pub fn set_callbacks(&self, on_book: bool, on_trade: bool) {
        self.has_book.set(on_book);
        self.has_trade.set(on_trade);
    }

    /// The table of symbol names, by index.
    pub fn names(&self) -> &Table {
        &self.names
    }

    /// The C function the run's Lua loop calls for each event.
    pub fn next_event_function(self: &Rc<Self>, lua: &Lua) -> mlua::Result<Function> {
        let pointer = Rc::as_ptr(self) as *mut std::ffi::c_void;
        // SAFETY: pushes a C closure whose one upvalue is a pointer to this state, which the VM's
        // app data keeps alive as long as the VM.
        unsafe {
            lua.exec_raw::<Function>((), |state| {
                ffi::lua_pushlightuserdata(state, pointer);
                ffi::lua_pushcclosure(state, next_event, 1);
            })
        }
    }

    /// Names `symbol` in Lua (done outside runs, where creating a string may fail safely).
    pub fn name_symbol(&self, symbol: &Arc<str>, name: &mlua::String) -> mlua::Result<()> {
        if self.symbols.borrow().contains_key(symbol) {
            return Ok(());
        }
        let index = self.names.raw_len() as i64 + 1;
        self.names.raw_set(index, name)?;
        self.symbols.borrow_mut().insert(symbol.clone(), index);
        Ok(())
    }

    /// Makes `source` the running run's source until the returned guard drops.
    pub fn install<'a>(&'a self, source: &'a mut dyn MarketRun) -> Installed<'a> {
        let pointer: NonNull<dyn MarketRun + 'a> = NonNull::from(source);
        // SAFETY: only the lifetime is erased; the guard clears the pointer before `'a` ends (the
        // guard lives inside the future that borrows `source`, so it drops first even when that
        // future is dropped unfinished).
        let pointer: NonNull<dyn MarketRun> = unsafe { std::mem::transmute(pointer) };
        self.source.set(Some(pointer));
        Installed { state: self }
    }

    /// The event the last run stopped before, to be delivered the ordinary way.
    pub fn take_held(&self) -> Option<(RunEvent, Option<Instant>)> {
        self.held.take()
    }

    fn symbol_index(&self, symbol: &Arc<str>) -> Option<i64> {
        if let Some((_, index)) = self.recent.borrow().iter().find(|(s, _)| Arc::ptr_eq(s, symbol)) {
            return Some(*index);
        }
        let index = *self.symbols.borrow().get(symbol)?;
        let mut recent = self.recent.borrow_mut();
        if recent.len() < RECENT_SYMBOLS {
            recent.push((symbol.clone(), index));
        }
        Some(index)
    }

    /// Pushes the next event's kind, symbol index and fields onto `state`; returns how many.
    ///
    /// # Safety
    /// `state` is the running coroutine of this VM, inside a C function with the stack space Lua
    /// guarantees one (`LUA_MINSTACK`, 20 slots).
    unsafe fn push_next(&self, state: *mut ffi::lua_State) -> c_int {
        // A tripped callback's run is over whatever the script does.
        if self.guard.tripped().is_some() {
            return 0;
        }
        let Some(mut source) = self.source.get() else {
            return 0;
        };
        loop {
            // SAFETY: installed for the run under way, and only used on this thread.
            let Some((event, received)) = (unsafe { source.as_mut() }).next_event() else {
                return 0;
            };
            let (wanted, symbol) = match &event {
                RunEvent::Book(quote) => (self.has_book.get(), &quote.symbol),
                RunEvent::Trade(trade) => (self.has_trade.get(), &trade.symbol),
            };
            if !wanted {
                continue;
            }
            let Some(index) = self.symbol_index(symbol) else {
                self.held.set(Some((event, received)));
                return 0;
            };
            self.guard.begin_next(state);
            if let Some(received) = received {
                stage_timing::taken(received);
            }
            self.received.set(received);
            match event {
                RunEvent::Book(quote) => {
                    ffi::lua_pushinteger(state, BOOK);
                    ffi::lua_pushinteger(state, index);
                    ffi::lua_pushnumber(state, quote.bid);
                    ffi::lua_pushnumber(state, quote.bid_qty);
                    ffi::lua_pushnumber(state, quote.ask);
                    ffi::lua_pushnumber(state, quote.ask_qty);
                    ffi::lua_pushinteger(state, quote.update_id as i64);
                    ffi::lua_pushinteger(state, quote.time);
                    return 8;
                }
                RunEvent::Trade(trade) => {
                    ffi::lua_pushinteger(state, TRADE);
                    ffi::lua_pushinteger(state, index);
                    ffi::lua_pushinteger(state, trade.id as i64);
                    ffi::lua_pushnumber(state, trade.price);
                    ffi::lua_pushnumber(state, trade.qty);
                    ffi::lua_pushinteger(state, trade.time);
                    ffi::lua_pushboolean(state, trade.buyer_maker as c_int);
                    return 7;
                }
            }
        }
    }
}

/// A run's source, installed; uninstalled on drop.
pub struct Installed<'a> {
    state: &'a RunState,
}

impl Drop for Installed<'_> {
    fn drop(&mut self) {
        self.state.source.set(None);
    }
}

/// `next_event()` for the run's Lua loop: the next event's kind, symbol index and fields, or
/// nothing once the run is over.
unsafe extern "C-unwind" fn next_event(state: *mut ffi::lua_State) -> c_int {
    let run = ffi::lua_touserdata(state, ffi::lua_upvalueindex(1)) as *const RunState;
    if run.is_null() {
        return 0;
    }
    // Nothing here is expected to panic; if it did, unwinding into Lua's C frames must not happen.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: the upvalue points at the VM's `RunState`, alive as long as the VM (its app data).
        unsafe { (*run).push_next(state) }
    }))
    .unwrap_or(0)
}
