//! Per-VM resource limits: a budget of work per callback and a memory watch.
//!
//! Work is counted two ways, and either trips: Lua instructions (counted by the hook), and the
//! strategy thread's CPU time while the callback runs (waiting for the exchange excluded). CPU
//! time covers what instructions cannot see: library calls written in C. The hook reads the
//! clock each time it fires, and fires every [`SLOW_HOOK_EVERY`] instructions instead of every
//! [`HOOK_EVERY`] while instructions are expensive (long strings built with `..`); library calls
//! that could run long by themselves are bounded where they run (see [`super::strlib`]).
//!
//! The thread's CPU clock is a system call, too dear to read as each of a million callbacks a
//! second starts, or as an order placed from a callback leaves. A callback starts with a cheap
//! monotonic timestamp and the CPU clock as last read on this VM (read after a callback ends, at
//! most once per [`CPU_CLOCK_REFRESH`]); its CPU time so far is its wall time while that is under
//! [`CPU_CLOCK_REFRESH`], and after that the smaller of its wall time and the CPU time since that
//! reading (the clock is read only then). Both bound it from above, so a runaway is never
//! undercounted: the first overcounts by the time the thread was preempted during the callback,
//! the second by the thread's own work between the reading and the callback's start. A callback
//! resuming after a wait for the exchange starts again the same way.
//!
//! A callback's own coroutine runs without the hook until it has run past a threshold (a hooked
//! interpreter pays for every instruction, see [`super::watchdog`]); then the hook is armed and
//! credited with the instructions the CPU time so far is worth. Coroutines a script creates are
//! hooked from the start (the watchdog only knows the callback's own). The VM's main thread, which
//! runs the file while it loads, is always hooked.
//!
//! A trip must not be swallowable by `pcall`: once tripped, the hook is armed on the callback's
//! coroutine to fire on every instruction and raises each time, and every host function checks
//! the flag first. Every enclosing frame therefore fails at its next instruction, so
//! the callback unwinds to the host however deeply the script nests `pcall`s.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use mlua::{ffi, HookTriggers, Lua, MultiValue, Thread, Value, VmState};

use super::watchdog::{self, HookSpec, Watch, Watching};

/// Instructions between two hook calls while nothing is tripped: a cheap check
/// (well under 1 % of run time) that still bounds a runaway to microseconds.
const HOOK_EVERY: i32 = 10_000;

/// Lua 5.4 instructions per second of work on the reference machine; converts the
/// configured CPU time into an instruction budget (waiting on the exchange is free).
pub const INSTRUCTIONS_PER_SECOND: f64 = 250_000_000.0;

/// CPU time allowed per callback, as a multiple of the configured CPU limit: pure Lua trips on
/// instructions first (the budget is calibrated on the reference machine, so a slower one
/// gets headroom); time is the backstop for work done inside library calls.
pub const CPU_TIME_FACTOR: u32 = 2;

/// Hook period while instructions are expensive: a loop whose every step copies megabytes is
/// checked every few steps rather than every few thousand.
const SLOW_HOOK_EVERY: i32 = 100;

/// Average CPU time per instruction above which the hook switches to [`SLOW_HOOK_EVERY`]
/// (pure Lua runs at a few ns per instruction).
const SLOW_INSTRUCTION: Duration = Duration::from_nanos(200);

/// How long a callback counts its wall time as its CPU time, and how old the VM's CPU clock
/// reading may grow before a callback's end reads it again (at most one read per this interval).
const CPU_CLOCK_REFRESH: Duration = Duration::from_micros(200);

/// Why a callback was cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TripKind {
    Cpu,
    Memory,
}

impl TripKind {
    pub fn describe(self) -> &'static str {
        match self {
            TripKind::Cpu => "CPU limit exceeded (callback ran too long)",
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
    time_limit: Duration,
    /// CPU time the callback spent before its latest wait for the exchange.
    spent: Cell<Duration>,
    /// When the callback last started or resumed running (watchdog nanoseconds, as its watch
    /// counts them), and a reading of the thread's CPU clock taken at or before then (see the
    /// module's notes); `None` while it waits.
    running_since: Cell<Option<(u64, Duration)>>,
    /// The latest CPU clock reading, and when it was taken (watchdog nanoseconds).
    cpu_reading: Cell<(u64, Duration)>,
    /// `spent_now()` at the latest hook, to price the instructions since.
    at_last_hook: Cell<Duration>,
    /// Whether the hook has fired in the current callback (the first firing credits the time before).
    hooked: Cell<bool>,
    watch: Arc<Watch>,
}

impl Guard {
    pub fn new(budget: u64, memory_limit: usize) -> Rc<Guard> {
        let budget = budget.max(HOOK_EVERY as u64);
        let time_limit = Duration::from_secs_f64(budget as f64 / INSTRUCTIONS_PER_SECOND) * CPU_TIME_FACTOR;
        Rc::new(Guard {
            tripped: Cell::new(None),
            used: Cell::new(0),
            budget,
            memory_limit,
            time_limit,
            spent: Cell::new(Duration::ZERO),
            running_since: Cell::new(None),
            cpu_reading: Cell::new((0, Duration::ZERO)),
            at_last_hook: Cell::new(Duration::ZERO),
            hooked: Cell::new(false),
            watch: Watch::new(time_limit),
        })
    }

    /// Starts a callback with a fresh budget.
    pub fn begin(&self) {
        self.tripped.set(None);
        self.used.set(0);
        self.spent.set(Duration::ZERO);
        self.at_last_hook.set(Duration::ZERO);
        self.hooked.set(false);
        self.start_running();
    }

    /// The callback runs from now: a cheap timestamp and the CPU clock as last read, no system call.
    fn start_running(&self) {
        self.running_since
            .set(Some((watchdog::now_ns(), self.cpu_reading.get().1)));
    }

    /// After a callback (or a run of them) ends: reads the CPU clock if the last reading is
    /// [`CPU_CLOCK_REFRESH`] old, so the next callback starts from a recent one without a read.
    pub fn settle(&self) {
        let now = watchdog::now_ns();
        let (read_at, _) = self.cpu_reading.get();
        if read_at == 0 || now.saturating_sub(read_at) > CPU_CLOCK_REFRESH.as_nanos() as u64 {
            self.cpu_reading.set((now, thread_cpu_time()));
        }
    }

    /// Starts the next callback of a run on `state`, the coroutine the run's loop runs in: a fresh
    /// budget, and a watch of its own (unhooked again if the callback before it was armed).
    ///
    /// # Safety
    /// `state` must be the coroutine the run's watch was entered with ([`Guard::watch`]), running
    /// on this thread.
    pub unsafe fn begin_next(&self, state: *mut ffi::lua_State) {
        self.begin();
        let since = self.running_since.get().map_or_else(watchdog::now_ns, |(wall, _)| wall);
        self.watch.restart(state, since);
    }

    /// The callback's code runs on `thread` (a coroutine of this VM, kept alive by the caller)
    /// until the returned guard drops: it runs unhooked until the watchdog arms it.
    pub fn watch(&self, thread: &Thread) -> Watching<'_> {
        // SAFETY: the thread is a live coroutine of this VM on this OS thread; the caller keeps
        // it referenced until the guard drops (see `StrategyVm::run`).
        let since = self.running_since.get().map_or_else(watchdog::now_ns, |(wall, _)| wall);
        unsafe { self.watch.enter(thread.to_pointer() as *mut ffi::lua_State, since) }
    }

    /// The callback waits for the exchange: what the thread does meanwhile is not its work.
    pub fn pause(&self) {
        self.watch.pause();
        if self.running_since.get().is_some() {
            self.spent.set(self.spent_now());
            self.running_since.set(None);
        }
    }

    /// The callback runs again after a wait.
    pub fn resume(&self) {
        self.watch.resume();
        if self.running_since.get().is_none() {
            // As a callback starts: an order placed from a market callback waits a round trip,
            // and the clock read it would cost is on the next order's path.
            self.start_running();
        }
    }

    /// Wall time since the callback last started or resumed running: an upper bound of its CPU
    /// time since, without a system call.
    fn wall_running(&self) -> Duration {
        self.running_since.get().map_or(Duration::ZERO, |(wall, _)| {
            Duration::from_nanos(watchdog::now_ns().saturating_sub(wall))
        })
    }

    /// CPU time the current callback has run so far, bounded from above (see the module's notes).
    /// A clock read it needs also becomes the VM's latest reading.
    fn spent_now(&self) -> Duration {
        let running = self.running_since.get().map_or(Duration::ZERO, |(_, cpu_before)| {
            let wall = self.wall_running();
            if wall <= CPU_CLOCK_REFRESH {
                // Wall time bounds CPU time from above: no clock read (a system call) in a short
                // callback, such as one placing an order.
                return wall;
            }
            let cpu = thread_cpu_time();
            self.cpu_reading.set((watchdog::now_ns(), cpu));
            cpu.saturating_sub(cpu_before).min(wall)
        });
        self.spent.get() + running
    }

    /// Counts `work` instructions' worth of work done outside the interpreter (a library call's
    /// steps) and checks both budgets; false once the callback has tripped.
    pub fn charge(&self, work: u64) -> bool {
        self.used.set(self.used.get().saturating_add(work));
        // The clock is read only once the wall time says the limit could be near.
        let may_be_over = self.spent.get() + self.wall_running() > self.time_limit;
        if self.used.get() > self.budget || (may_be_over && self.spent_now() > self.time_limit) {
            self.trip(TripKind::Cpu);
        }
        self.tripped.get().is_none()
    }

    /// [`Guard::charge`] as a Lua error: a trip raised here unwinds like one raised by the hook.
    pub fn charge_or_raise(&self, work: u64) -> mlua::Result<()> {
        self.charge(work);
        self.check()
    }

    /// The VM's memory limit: nothing one call builds can be larger.
    pub fn memory_limit(&self) -> usize {
        self.memory_limit
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
            // The callback's coroutine may run unhooked: from now on every instruction raises.
            self.watch.arm_now(1);
        }
    }

    /// Hooks a coroutine the script created, for its whole life (the watchdog cannot arm it).
    pub fn hook_coroutine(&self, thread: &Thread) {
        // SAFETY: `thread` is a live coroutine of this VM, referenced by the caller.
        unsafe { self.watch.hook_always(thread.to_pointer() as *mut ffi::lua_State) }
    }

    /// Hooks the coroutine running now (the body of a `coroutine.wrap` does this first).
    pub fn hook_running(&self, lua: &Lua) -> mlua::Result<()> {
        // SAFETY: only sets the running coroutine's hook.
        unsafe { lua.exec_raw::<()>((), |state| self.watch.hook_always(state)) }
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

impl Drop for Guard {
    fn drop(&mut self) {
        self.watch.retire();
    }
}

fn trip_error(kind: TripKind) -> mlua::Error {
    mlua::Error::runtime(kind.describe())
}

/// Installs the instruction hook on `lua`'s main thread, and hands it to the watchdog to arm callbacks with.
pub fn install(lua: &Lua, guard: Rc<Guard>) -> mlua::Result<()> {
    let watch = guard.watch.clone();
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(HOOK_EVERY as u32),
        move |lua, _debug| on_hook(lua, &guard),
    )?;
    let mut spec = None;
    // SAFETY: only reads the main thread's hook settings, just installed.
    unsafe {
        lua.exec_raw::<()>((), |state| {
            spec = ffi::lua_gethook(state).map(|hook| HookSpec {
                hook,
                mask: ffi::lua_gethookmask(state),
                count: HOOK_EVERY,
            });
        })?;
    }
    match spec {
        Some(spec) => {
            watch.set_hook(spec);
            Ok(())
        }
        None => Err(mlua::Error::runtime("the instruction hook did not install")),
    }
}

fn on_hook(lua: &Lua, guard: &Guard) -> mlua::Result<VmState> {
    // Hooks are per coroutine and may have been re-armed for a past trip.
    let count = current_hook_count(lua)?;
    if let Some(kind) = guard.tripped() {
        rearm(lua, 1)?;
        return Err(trip_error(kind));
    }
    let count = count.max(1);
    let spent = guard.spent_now();
    let mut used = guard.used.get() + count as u64;
    if !guard.hooked.replace(true) {
        // Armed late: what ran before counts at the rate the budget was calibrated with.
        used = used.max((spent.as_secs_f64() * INSTRUCTIONS_PER_SECOND) as u64);
    }
    guard.used.set(used);
    let interval = spent.saturating_sub(guard.at_last_hook.get());
    guard.at_last_hook.set(spent);
    // Expensive instructions (each copying megabytes) are watched closely, cheap ones cheaply.
    let every = if interval > SLOW_INSTRUCTION * count as u32 {
        SLOW_HOOK_EVERY
    } else {
        HOOK_EVERY
    };
    if count != every {
        rearm(lua, every)?;
    }
    if guard.used.get() > guard.budget || spent > guard.time_limit {
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

/// CPU time this thread has used (zero if the clock cannot be read, which leaves instructions as the only count).
fn thread_cpu_time() -> Duration {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| Duration::new(t.tv_sec().max(0) as u64, t.tv_nsec().clamp(0, 999_999_999) as u32))
        .unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Burns `cpu` of this thread's CPU time.
    fn spin(cpu: Duration) {
        let start = thread_cpu_time();
        while thread_cpu_time().saturating_sub(start) < cpu {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn a_callback_is_charged_its_runs_and_not_its_waits() {
        let guard = Guard::new(u64::MAX / 2, usize::MAX);
        guard.begin();
        for _ in 0..3 {
            spin(Duration::from_millis(2));
            guard.pause();
            std::thread::sleep(Duration::from_millis(30));
            guard.resume();
        }
        let spent = guard.spent_now();
        assert!(spent >= Duration::from_millis(6), "undercounted: {spent:?}");
        // The waits (90 ms) are not work; the slack is for a preempted test thread.
        assert!(spent < Duration::from_millis(60), "waits were charged: {spent:?}");
    }

    #[test]
    fn a_run_is_never_charged_less_than_the_cpu_it_used_however_old_the_clock_reading() {
        let guard = Guard::new(u64::MAX / 2, usize::MAX);
        // An old reading, then work between it and the callback's start: still an upper bound.
        guard.settle();
        spin(Duration::from_millis(3));
        for run in [Duration::from_micros(50), Duration::from_millis(5)] {
            guard.begin();
            let (cpu_before, wall_before) = (thread_cpu_time(), Instant::now());
            spin(run);
            let (used, wall) = (thread_cpu_time() - cpu_before, wall_before.elapsed());
            let spent = guard.spent_now();
            assert!(spent >= used, "{run:?}: charged {spent:?} for {used:?} of CPU");
            assert!(
                spent <= wall + Duration::from_millis(1),
                "{run:?}: charged {spent:?} in {wall:?}"
            );
            guard.settle();
        }
    }
}
