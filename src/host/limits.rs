//! Per-VM resource limits: an instruction budget per callback and a memory watch.
//!
//! A trip must not be swallowable by `pcall`: once tripped, the hook re-arms itself
//! to fire on every instruction and raises each time, and every host function checks
//! the flag first. Every enclosing frame therefore fails at its next instruction, so
//! the callback unwinds to the host however deeply the script nests `pcall`s.

use std::cell::Cell;
use std::rc::Rc;

use mlua::{ffi, HookTriggers, Lua, MultiValue, Value, VmState};

/// Instructions between two hook calls while nothing is tripped: a cheap check
/// (well under 1 % of run time) that still bounds a runaway to microseconds.
const HOOK_EVERY: i32 = 10_000;

/// Lua 5.4 instructions per second of work on the reference machine; converts the
/// configured CPU time into an instruction budget (waiting on the exchange is free).
pub const INSTRUCTIONS_PER_SECOND: f64 = 250_000_000.0;

/// Why a callback was cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TripKind {
    Cpu,
    Memory,
}

impl TripKind {
    pub fn describe(self) -> &'static str {
        match self {
            TripKind::Cpu => "CPU limit exceeded (callback ran too many instructions)",
            TripKind::Memory => "memory limit exceeded",
        }
    }
}

/// The limits of one VM. Lives on the VM's thread.
pub struct Guard {
    tripped: Cell<Option<TripKind>>,
    used: Cell<u64>,
    budget: u64,
    memory_limit: usize,
}

impl Guard {
    pub fn new(budget: u64, memory_limit: usize) -> Rc<Guard> {
        Rc::new(Guard {
            tripped: Cell::new(None),
            used: Cell::new(0),
            budget: budget.max(HOOK_EVERY as u64),
            memory_limit,
        })
    }

    /// Starts a callback with a fresh budget.
    pub fn begin(&self) {
        self.tripped.set(None);
        self.used.set(0);
    }

    /// Fails when the current callback has tripped; every host function calls this first.
    pub fn check(&self) -> mlua::Result<()> {
        match self.tripped.get() {
            None => Ok(()),
            Some(kind) => Err(trip_error(kind)),
        }
    }

    pub fn trip(&self, kind: TripKind) {
        if self.tripped.get().is_none() {
            self.tripped.set(Some(kind));
        }
    }

    pub fn tripped(&self) -> Option<TripKind> {
        self.tripped.get()
    }

    /// Memory above this is treated as exhausted (a caught allocation failure leaves it lower,
    /// which is why out-of-memory errors trip too).
    fn memory_ceiling(&self) -> usize {
        self.memory_limit - self.memory_limit / 16
    }
}

fn trip_error(kind: TripKind) -> mlua::Error {
    mlua::Error::runtime(kind.describe())
}

/// Installs the instruction hook on `lua` (and every thread it creates).
pub fn install(lua: &Lua, guard: Rc<Guard>) -> mlua::Result<()> {
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(HOOK_EVERY as u32),
        move |lua, _debug| on_hook(lua, &guard),
    )
}

fn on_hook(lua: &Lua, guard: &Guard) -> mlua::Result<VmState> {
    // Hooks are per coroutine and may have been re-armed for a past trip.
    let count = current_hook_count(lua)?;
    if let Some(kind) = guard.tripped() {
        rearm(lua, 1)?;
        return Err(trip_error(kind));
    }
    guard.used.set(guard.used.get() + count.max(1) as u64);
    if count != HOOK_EVERY {
        rearm(lua, HOOK_EVERY)?;
    }
    if guard.used.get() > guard.budget {
        guard.trip(TripKind::Cpu);
    } else if lua.used_memory() > guard.memory_ceiling() {
        // Garbage does not count: only live data that stays near the limit trips.
        lua.gc_collect()?;
        if lua.used_memory() > guard.memory_ceiling() {
            guard.trip(TripKind::Memory);
        }
    }
    if let Some(kind) = guard.tripped() {
        rearm(lua, 1)?;
        return Err(trip_error(kind));
    }
    Ok(VmState::Continue)
}

fn current_hook_count(lua: &Lua) -> mlua::Result<i32> {
    let mut count = 0;
    // SAFETY: only reads the running thread's hook settings.
    unsafe {
        lua.exec_raw::<()>((), |state| {
            count = ffi::lua_gethookcount(state);
        })?;
    }
    Ok(count)
}

/// Keeps the current hook function and mask but changes how often it fires.
fn rearm(lua: &Lua, count: i32) -> mlua::Result<()> {
    // SAFETY: re-installs the hook already set on the running thread, with a new count.
    unsafe {
        lua.exec_raw::<()>((), |state| {
            let hook = ffi::lua_gethook(state);
            let mask = ffi::lua_gethookmask(state);
            ffi::lua_sethook(state, hook, mask, count);
        })
    }
}

/// True when a Lua error value is an allocation failure.
pub fn is_memory_error(value: &Value) -> bool {
    match value {
        Value::Error(err) => is_memory_mlua_error(err),
        Value::String(s) => s.to_str().map(|s| s.starts_with("not enough memory")).unwrap_or(false),
        _ => false,
    }
}

pub fn is_memory_mlua_error(err: &mlua::Error) -> bool {
    match err {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory_mlua_error(cause),
        mlua::Error::WithContext { cause, .. } => is_memory_mlua_error(cause),
        mlua::Error::RuntimeError(msg) => msg.starts_with("not enough memory"),
        _ => false,
    }
}

/// The check that the sandbox's `pcall`, `xpcall` and `coroutine.resume` pass their
/// results through: after a trip, or when what was caught is an out-of-memory error,
/// it raises again instead of letting the script carry on.
pub fn protected_result(guard: &Guard, results: MultiValue) -> mlua::Result<MultiValue> {
    guard.check()?;
    let failed = matches!(results.front(), Some(Value::Boolean(false)));
    if failed && results.get(1).is_some_and(is_memory_error) {
        guard.trip(TripKind::Memory);
        guard.check()?;
    }
    Ok(results)
}
