//! Arms the instruction hook of a callback that runs long, so callbacks that finish quickly run
//! without one.
//!
//! While Lua 5.4 has any hook set, the interpreter calls into the hook machinery before every
//! instruction (to count), which makes compute-heavy code about 3× slower even when the hook
//! itself fires once per 10 000 instructions. So a callback starts unhooked; one process-wide
//! watchdog thread looks at the running callbacks every [`TICK`], and once one has run (waits for
//! the exchange excluded) past its threshold, it asks that strategy's thread to install the hook
//! on the callback's coroutine. From then on [`super::limits`] counts and trips as before.
//!
//! The ask is a signal ([`ARM_SIGNAL`]) sent to the strategy's OS thread: its handler runs on that
//! thread and calls `lua_sethook`, which Lua documents as safe to call asynchronously from a
//! signal handler (that is how the stand-alone `lua` stops a script on Ctrl-C). Calling it from
//! the watchdog thread itself would race with the interpreter: `lua_sethook` walks the running
//! coroutine's call frames, which the interpreter frees as it shrinks them.
//!
//! The process installs a handler for [`ARM_SIGNAL`] (ignored by default, unused by the runtime)
//! when the first VM is built.

use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use mlua::ffi;
use nix::sys::pthread::{pthread_kill, pthread_self, Pthread};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use parking_lot::Mutex;

/// The signal that asks a strategy's thread to arm its running callback's hook.
pub const ARM_SIGNAL: Signal = Signal::SIGURG;

/// How often the watchdog looks at the running callbacks: the most a threshold is overrun by.
const TICK: Duration = Duration::from_millis(2);

/// How long the watchdog keeps ticking with no callback seen before it sleeps until one starts.
/// Waking it is a system call and an interrupt to another core, so while a strategy trades it is
/// not paid as each callback (the one that places an order among them) starts.
const PARK_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Run time after which a callback's hook is armed, at most (a smaller CPU limit lowers it).
pub const MAX_THRESHOLD: Duration = Duration::from_millis(10);

/// How the hook is installed on a coroutine: the function, event mask and instruction count.
#[derive(Clone, Copy)]
pub struct HookSpec {
    pub hook: ffi::lua_Hook,
    pub mask: std::os::raw::c_int,
    pub count: std::os::raw::c_int,
}

/// One VM as the watchdog sees it. Shared between the VM's thread and the watchdog.
pub struct Watch {
    threshold: u64,
    /// Nanoseconds since [`epoch`] at which the running callback would have started had it never
    /// waited; 0 while no callback runs (or while it waits for the exchange).
    running_since: AtomicU64,
    /// Run time banked by a callback that is waiting.
    ran_before_wait: AtomicU64,
    /// Set by the signal handler once the running callback's hook is armed.
    armed: AtomicBool,
    /// The VM's OS thread.
    thread: AtomicU64,
    /// The running callback's coroutine; null outside callbacks.
    target: AtomicPtr<ffi::lua_State>,
    hook: OnceLock<HookSpec>,
    /// False once the VM is gone (its thread may then end): held while signalling it. The watchdog
    /// may hold the last `Arc` for a moment, so the VM's side clears it ([`Watch::retire`]).
    alive: Mutex<bool>,
}

/// The watches of every VM in the process, and the watchdog's thread.
struct Watchdog {
    watches: Mutex<Vec<Weak<Watch>>>,
    thread: std::thread::Thread,
    /// True while the watchdog sleeps with no callback running (a starting callback wakes it).
    parked: AtomicBool,
    /// Set as a callback starts, cleared by each scan: callbacks ran since the last one.
    active: AtomicBool,
}

static WATCHDOG: OnceLock<Watchdog> = OnceLock::new();

thread_local! {
    /// The watch of the callback running on this thread, for the signal handler.
    static CURRENT: Cell<*const Watch> = const { Cell::new(ptr::null()) };
}

/// The clock callbacks are timed with, and when it started: read as each callback starts (a million
/// times a second on a busy stream), so the CPU's time-stamp counter where it is usable (a few ns,
/// against tens for the OS's clock even without a system call); quanta falls back to the OS's
/// monotonic clock where it is not.
fn clock() -> &'static (quanta::Clock, quanta::Instant) {
    static CLOCK: OnceLock<(quanta::Clock, quanta::Instant)> = OnceLock::new();
    CLOCK.get_or_init(|| {
        let clock = quanta::Clock::new();
        let epoch = clock.now();
        (clock, epoch)
    })
}

/// Nanoseconds since the process's watchdog epoch (monotonic; cheap, no system call).
pub fn now_ns() -> u64 {
    let (clock, epoch) = clock();
    // Never 0, which means "not running".
    (clock.now().duration_since(*epoch).as_nanos() as u64).max(1)
}

/// `pthread_t` kept in an atomic (an integer of at most 64 bits on Linux; `u64` itself on some targets).
#[allow(clippy::unnecessary_cast)]
fn thread_id(thread: Pthread) -> u64 {
    thread as u64
}

#[allow(clippy::unnecessary_cast)]
fn pthread(id: u64) -> Pthread {
    id as Pthread
}

/// Starts the watchdog thread now (on the calling thread's CPUs) if it is not running yet.
pub fn start() {
    watchdog();
}

fn watchdog() -> &'static Watchdog {
    WATCHDOG.get_or_init(|| {
        install_handler();
        let thread = std::thread::Builder::new()
            .name("lua-watchdog".into())
            .spawn(watch_loop)
            .expect("the watchdog thread starts");
        Watchdog {
            watches: Mutex::new(Vec::new()),
            thread: thread.thread().clone(),
            parked: AtomicBool::new(false),
            active: AtomicBool::new(false),
        }
    })
}

fn install_handler() {
    let action = SigAction::new(SigHandler::Handler(on_arm_signal), SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: the handler only reads this thread's `CURRENT` (a const-initialised thread local
    // without destructor) and atomics, and calls `lua_sethook`, which Lua allows from a signal
    // handler. Failing to install is impossible for a valid, catchable signal.
    unsafe { sigaction(ARM_SIGNAL, &action) }.expect("the watchdog's signal handler installs");
}

extern "C" fn on_arm_signal(_: std::os::raw::c_int) {
    let watch = CURRENT.with(Cell::get);
    if watch.is_null() {
        return;
    }
    // SAFETY: `CURRENT` points at a live watch while a callback runs on this thread (it is
    // cleared before the callback's guard lets go of it).
    let watch = unsafe { &*watch };
    let target = watch.target.load(Ordering::Relaxed);
    if let (false, Some(spec)) = (target.is_null(), watch.hook.get()) {
        // SAFETY: `target` is the running callback's coroutine, alive while `CURRENT` is set;
        // this runs on its own thread, interrupting it as a signal does in the stand-alone `lua`.
        unsafe { arm_if_unhooked(target, spec) };
        watch.armed.store(true, Ordering::Relaxed);
    }
}

/// Installs `spec` on `state` unless a hook is already there (the limits may have re-armed it
/// to fire on every instruction after a trip).
///
/// # Safety
/// `state` must be a live coroutine of a VM on the calling thread.
unsafe fn arm_if_unhooked(state: *mut ffi::lua_State, spec: &HookSpec) {
    if ffi::lua_gethook(state).is_none() {
        ffi::lua_sethook(state, Some(spec.hook), spec.mask, spec.count);
    }
}

fn watch_loop() {
    let idle_ticks_before_park = (PARK_AFTER_IDLE.as_millis() / TICK.as_millis()).max(1);
    let mut idle_ticks = 0;
    loop {
        std::thread::sleep(TICK);
        let Some(dog) = WATCHDOG.get() else { continue };
        let running = dog.scan();
        if running || dog.active.swap(false, Ordering::Relaxed) {
            idle_ticks = 0;
            continue;
        }
        idle_ticks += 1;
        if idle_ticks >= idle_ticks_before_park {
            idle_ticks = 0;
            // Nothing runs: sleep until a callback starts. Announce first, then look again, so a
            // callback that started meanwhile is either seen here or sees `parked` and wakes us.
            dog.parked.store(true, Ordering::SeqCst);
            if dog.scan() {
                dog.parked.store(false, Ordering::SeqCst);
            } else {
                while dog.parked.load(Ordering::SeqCst) {
                    std::thread::park();
                }
            }
        }
    }
}

impl Watchdog {
    /// Signals the threads whose callbacks ran past their threshold unarmed; true if any callback runs.
    fn scan(&self) -> bool {
        let now = now_ns();
        let mut any_running = false;
        self.watches.lock().retain(|weak| {
            let Some(watch) = weak.upgrade() else { return false };
            let since = watch.running_since.load(Ordering::SeqCst);
            if since == 0 {
                return true;
            }
            any_running = true;
            if now.saturating_sub(since) >= watch.threshold && !watch.armed.load(Ordering::Relaxed) {
                let alive = watch.alive.lock();
                if *alive {
                    let thread = pthread(watch.thread.load(Ordering::Relaxed));
                    // The thread is alive: its VM, whose drop clears `alive` under this lock, lives on it.
                    // A signal that lands after the callback ended finds nothing to arm.
                    let _ = pthread_kill(thread, ARM_SIGNAL);
                }
            }
            true
        });
        any_running
    }
}

impl Watch {
    /// A watch for a VM whose callbacks may run for `time_limit`.
    pub fn new(time_limit: Duration) -> Arc<Watch> {
        let threshold = (time_limit / 4).min(MAX_THRESHOLD);
        let watch = Arc::new(Watch {
            threshold: threshold.as_nanos() as u64,
            running_since: AtomicU64::new(0),
            ran_before_wait: AtomicU64::new(0),
            armed: AtomicBool::new(false),
            thread: AtomicU64::new(0),
            target: AtomicPtr::new(ptr::null_mut()),
            hook: OnceLock::new(),
            alive: Mutex::new(true),
        });
        watchdog().watches.lock().push(Arc::downgrade(&watch));
        watch
    }

    /// The hook to arm callbacks with (set once, when the VM's limits are installed).
    pub fn set_hook(&self, spec: HookSpec) {
        let _ = self.hook.set(spec);
    }

    /// A callback started running at `since` ([`now_ns`]) on `state`, a coroutine of this VM on
    /// the calling thread; it is watched until the returned guard drops.
    ///
    /// # Safety
    /// `state` must stay alive until the guard drops (or the thread's next callback starts).
    pub unsafe fn enter(&self, state: *mut ffi::lua_State, since: u64) -> Watching<'_> {
        // A coroutine reused from an earlier callback may still carry that callback's hook (or
        // the one every new coroutine gets).
        ffi::lua_sethook(state, None, 0, 0);
        self.armed.store(false, Ordering::Relaxed);
        self.ran_before_wait.store(0, Ordering::Relaxed);
        self.thread.store(thread_id(pthread_self()), Ordering::Relaxed);
        self.target.store(state, Ordering::Relaxed);
        let previous = CURRENT.with(|current| current.replace(self));
        self.start_running(since.max(1));
        Watching { watch: self, previous }
    }

    /// The next callback of a run starts at `since` on `state`, the coroutine already watched:
    /// its own threshold, and no hook until it too runs long.
    ///
    /// # Safety
    /// `state` must be the watched coroutine, running on the calling thread.
    pub unsafe fn restart(&self, state: *mut ffi::lua_State, since: u64) {
        self.start_running(since.max(1));
        self.ran_before_wait.store(0, Ordering::Relaxed);
        // The hook is only ever set on this coroutine by the signal handler (which runs on this
        // thread and sets `armed` before returning) or after a trip (which ends the run). A signal
        // landing after this arms the new callback early: harmless, the limits count from its start.
        if self.armed.load(Ordering::Relaxed) {
            self.armed.store(false, Ordering::Relaxed);
            ffi::lua_sethook(state, None, 0, 0);
        }
    }

    /// Marks the callback running since `since` and wakes the watchdog if it sleeps.
    fn start_running(&self, since: u64) {
        self.running_since.store(since, Ordering::SeqCst);
        let dog = watchdog();
        // Written only when it changes: callbacks on many threads do not fight over the line.
        if !dog.active.load(Ordering::Relaxed) {
            dog.active.store(true, Ordering::Relaxed);
        }
        if dog.parked.load(Ordering::SeqCst) && dog.parked.swap(false, Ordering::SeqCst) {
            dog.thread.unpark();
        }
    }

    /// The running callback waits for the exchange: its run time stops counting.
    pub fn pause(&self) {
        let since = self.running_since.swap(0, Ordering::SeqCst);
        if since != 0 {
            self.ran_before_wait
                .store(now_ns().saturating_sub(since), Ordering::Relaxed);
        }
    }

    /// The callback runs again after a wait.
    pub fn resume(&self) {
        if !self.target.load(Ordering::Relaxed).is_null() && self.running_since.load(Ordering::Relaxed) == 0 {
            self.start_running(
                now_ns()
                    .saturating_sub(self.ran_before_wait.load(Ordering::Relaxed))
                    .max(1),
            );
        }
    }

    /// The VM is going away (called on its thread): its thread is never signalled again.
    pub fn retire(&self) {
        *self.alive.lock() = false;
    }

    /// Installs the hook on `state` for good (a coroutine the script created).
    ///
    /// # Safety
    /// `state` must be a live coroutine of this VM on the calling thread.
    pub unsafe fn hook_always(&self, state: *mut ffi::lua_State) {
        if let Some(spec) = self.hook.get() {
            arm_if_unhooked(state, spec);
        }
    }

    /// Arms the running callback's hook at once with `count` (after a trip: every frame must
    /// fail at its next instruction).
    pub fn arm_now(&self, count: std::os::raw::c_int) {
        let target = self.target.load(Ordering::Relaxed);
        if let (false, Some(spec)) = (target.is_null(), self.hook.get()) {
            // SAFETY: `target` is the running callback's coroutine, on this thread.
            unsafe { ffi::lua_sethook(target, Some(spec.hook), spec.mask, count) };
        }
    }
}

/// A callback being watched; dropping it (the callback returned or was dropped) stops the watch.
pub struct Watching<'a> {
    watch: &'a Watch,
    previous: *const Watch,
}

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        self.watch.running_since.store(0, Ordering::SeqCst);
        CURRENT.with(|current| current.set(self.previous));
        self.watch.target.store(ptr::null_mut(), Ordering::Relaxed);
    }
}
