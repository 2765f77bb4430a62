//! The shared ledger of the exchange's limits.
//!
//! Every request to an exchange reserves its [`Cost`] here first, atomically across
//! every pool it touches; responses are reconciled back with [`Ledger::observe`].
//! While the exchange has asked us to back off (429) or banned the IP (418),
//! nothing that draws on a pool of that scope (that IP group) is admitted; the
//! other scopes go on.
//!
//! One lock guards a compact state (see `state`): the uncontended path takes it
//! once, touches a handful of integers and allocates nothing. Waiters park per
//! lane and are woken exactly when a window that blocks them resets (a single
//! driver task sleeps until then), or at once when budget is credited back or
//! the limits change. Nothing polls.

mod admission;
mod backoff;
pub mod clock;
mod driver;
pub(crate) mod lease;
pub mod limits;
mod persist;
mod pools;
pub mod shared;
mod status;
mod strategies;

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use admission::{Fit, State};
pub use backoff::ScopeBackoff;
pub use persist::Autosave;
use pools::Charges;
use strategies::Sid;

pub use clock::{Clock, FastClock, TokioClock};
pub use limits::{Interval, IntervalUnit, PoolKey, PoolKind, RateLimit, Scope, WindowKind};

/// Priority classes; earlier lanes go first when budget frees up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Lane {
    Cancel,
    Order,
    MarketData,
}

/// One pool a request draws on (by scope and kind; every window of that pair) and how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Draw {
    pub key: PoolKey,
    pub units: u32,
}

impl Draw {
    pub fn scope(&self) -> Scope {
        self.key.scope()
    }

    pub fn kind(&self) -> PoolKind {
        self.key.kind()
    }
}

/// Most pools one request can draw on. Binance's dearest request draws on three
/// (weight, raw requests, orders); per-endpoint and per-instrument venues add two.
pub const MAX_DRAWS: usize = 6;

/// What one request draws from the pools: up to [`MAX_DRAWS`] (scope, kind, units),
/// inline, so building and checking a cost never allocates. The venue adapter maps
/// each request to its cost; the ledger matches draws to pools by scope and kind.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cost {
    draws: [Draw; MAX_DRAWS],
    len: u8,
}

const NO_DRAW: Draw = Draw {
    key: PoolKey::new(Scope::Ip(0), PoolKind::RequestWeight),
    units: 0,
};

impl Cost {
    /// Draws on nothing.
    pub const fn new() -> Self {
        Cost {
            draws: [NO_DRAW; MAX_DRAWS],
            len: 0,
        }
    }

    /// Adds `units` of `kind` in the kind's usual scope ([`PoolKind::default_scope`]).
    pub const fn with(self, kind: PoolKind, units: u32) -> Self {
        self.with_scoped(kind.default_scope(), kind, units)
    }

    /// Adds `units` of `kind` counted by `scope` (summed with an earlier draw on the same pool).
    ///
    /// # Panics
    /// When a cost would draw on more than [`MAX_DRAWS`] pools: a venue adapter's mapping
    /// is wrong, not its input.
    pub const fn with_scoped(mut self, scope: Scope, kind: PoolKind, units: u32) -> Self {
        if units == 0 {
            return self;
        }
        let key = PoolKey::new(scope, kind);
        let mut i = 0;
        while i < self.len as usize {
            let d = &mut self.draws[i];
            if d.key.const_eq(key) {
                d.units = d.units.saturating_add(units);
                return self;
            }
            i += 1;
        }
        assert!(
            (self.len as usize) < MAX_DRAWS,
            "a cost draws on more pools than MAX_DRAWS"
        );
        self.draws[self.len as usize] = Draw { key, units };
        self.len += 1;
        self
    }

    /// The pools drawn on, each once.
    #[inline]
    pub fn draws(&self) -> &[Draw] {
        &self.draws[..self.len as usize]
    }

    /// Units drawn from the pools of this scope and kind.
    #[inline]
    pub fn units(&self, scope: Scope, kind: PoolKind) -> u64 {
        self.units_in(PoolKey::new(scope, kind))
    }

    /// Units drawn from the pools of this key.
    #[inline]
    pub fn units_in(&self, key: PoolKey) -> u64 {
        self.draws()
            .iter()
            .find(|d| d.key == key)
            .map_or(0, |d| u64::from(d.units))
    }

    /// Units of `kind` drawn, whatever the scope.
    pub fn units_of(&self, kind: PoolKind) -> u64 {
        self.draws()
            .iter()
            .filter(|d| d.kind() == kind)
            .map(|d| u64::from(d.units))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The same draws, with those on `from`'s pools moved to `to`'s (e.g. another egress IP).
    pub fn rescoped(self, from: Scope, to: Scope) -> Cost {
        self.draws().iter().fold(Cost::new(), |cost, d| {
            let scope = if d.scope() == from { to } else { d.scope() };
            cost.with_scoped(scope, d.kind(), d.units)
        })
    }
}

impl Default for Cost {
    fn default() -> Self {
        Cost::new()
    }
}

impl std::fmt::Debug for Cost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.draws().iter().map(|d| (d.scope(), d.kind(), d.units)))
            .finish()
    }
}

/// The boundary guard the runner uses (see [`Ledger::set_boundary_guard`]): well above the
/// error of a server-time sync plus a request's transit, small next to any window.
pub const BOUNDARY_GUARD: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// Fraction of every window the market-data lane may never take, so cancels
    /// and orders always fit. Default 0.05.
    pub market_headroom: f64,
    /// Upper bound of random extra wait added after a Retry-After, so a crowd of
    /// waiters does not hit the exchange at the same instant. Default 250 ms.
    pub backoff_jitter: Duration,
    /// Where windows and backoff state persist; `None` keeps them in memory only.
    pub state_dir: Option<PathBuf>,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            market_headroom: 0.05,
            backoff_jitter: Duration::from_millis(250),
            state_dir: None,
        }
    }
}

/// Budget held for one request. Pass it to [`Ledger::observe`] with the response, of the
/// ledger that granted it.
#[derive(Debug, Clone)]
pub struct Permit {
    /// The strategy, as the granting ledger numbers it.
    sid: Sid,
    pub cost: Cost,
    pub lane: Lane,
    /// Exchange time (ms) at which the budget was granted, i.e. the send time.
    pub sent_at_ms: i64,
    /// Orders the newest observation by send time.
    pub seq: u64,
}

/// How the exchange judged a response, translated by the venue adapter.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Ok,
    /// 429: wait this long before anything else is sent.
    Throttled {
        retry_after: Duration,
    },
    /// 418: the IP is banned until this exchange time (ms).
    Banned {
        until_ms: i64,
    },
}

/// The exchange's own count of a pool's current window, from a response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerUsage {
    /// Whose count it is (the IP's weight, an account's orders).
    pub scope: Scope,
    pub kind: PoolKind,
    pub interval: Interval,
    pub used: u64,
}

/// A response, as the ledger needs to see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub usage: Vec<ServerUsage>,
    pub verdict: Verdict,
    /// Whom a 429/418 in `verdict` stops: the scope the exchange counts back-offs by (Binance:
    /// the egress IP group the request left from). Every request drawing on a pool of this
    /// scope waits it out; the other scopes go on.
    pub scope: Scope,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackoffState {
    Normal,
    Throttled,
    Banned,
}

impl BackoffState {
    pub fn as_str(self) -> &'static str {
        match self {
            BackoffState::Normal => "normal",
            BackoffState::Throttled => "throttled",
            BackoffState::Banned => "banned",
        }
    }

    /// The answer that starts this state: 429 (throttled) or 418 (banned); `None` for normal.
    pub fn http_status(self) -> Option<u16> {
        match self {
            BackoffState::Normal => None,
            BackoffState::Throttled => Some(429),
            BackoffState::Banned => Some(418),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolStatus {
    pub scope: Scope,
    pub window: WindowKind,
    pub kind: PoolKind,
    pub interval: Interval,
    pub limit: u64,
    pub used: u64,
    /// Exchange time (ms) at which the count next goes down by itself (a fixed
    /// window's end).
    pub resets_at_ms: i64,
    /// Highest `used` seen in any window since start.
    pub peak: u64,
    /// For a pool shared with other processes: the slice of the window this process holds
    /// (`used` is this process's own use).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<u64>,
    /// The back-off in force on this pool's scope (`Normal`: none); a venue may add its own, e.g.
    /// an account's hold on new orders after "too many new orders".
    pub backoff: BackoffState,
    /// When that back-off ends (exchange ms); how long that is from now, see
    /// [`LedgerStatus::left_ms`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_until_ms: Option<i64>,
}

/// One scope's back-off in force, as a status shows it (see [`LedgerStatus::backoffs`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopeBackoffStatus {
    pub scope: Scope,
    /// What the venue calls the scope (an IP group's or an account's name), when it names it.
    pub scope_name: Option<String>,
    /// `Throttled` (after a 429) or `Banned` (after a 418).
    pub state: BackoffState,
    /// When it ends (exchange ms).
    pub until_ms: i64,
    /// How long until it ends, from the time of the status (ms).
    pub left_ms: i64,
}

/// What one strategy spent in the current windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StrategyUsage {
    pub weight: u64,
    pub orders: u64,
    /// Everything since start.
    pub total_weight: u64,
    pub total_orders: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerStatus {
    /// Exchange time (ms) of this status: what the times left in it count from.
    pub now_ms: i64,
    /// The most severe back-off in force on any scope (each pool says whether its own is).
    pub state: BackoffState,
    /// When the last back-off in force ends.
    pub resume_at_ms: Option<i64>,
    pub pools: Vec<PoolStatus>,
    /// What the venue calls the scopes it names (an IP group's or an account's name), each
    /// scope once; see [`LedgerStatus::scope_name`]. The ledger itself names none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scope_names: Vec<(Scope, String)>,
    pub mine: StrategyUsage,
    /// 429s and 418s received since start (should stay 0).
    pub throttled_count: u64,
    pub banned_count: u64,
    /// How the pools are shared with other processes; `None` when this process owns them alone.
    /// (Boxed: most processes share nothing, and a status is returned by value often.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sharing: Option<Box<lease::Sharing>>,
}

impl LedgerStatus {
    /// What the venue calls `scope`, when it names it.
    pub fn scope_name(&self, scope: Scope) -> Option<&str> {
        self.scope_names
            .iter()
            .find(|(named, _)| *named == scope)
            .map(|(_, name)| name.as_str())
    }

    /// Names `scope` (a later name replaces an earlier one).
    pub fn name_scope(&mut self, scope: Scope, name: &str) {
        match self.scope_names.iter_mut().find(|(named, _)| *named == scope) {
            Some((_, known)) => name.clone_into(known),
            None => self.scope_names.push((scope, name.to_owned())),
        }
    }

    /// How long from the time of this status until `until_ms` (exchange ms), never below 0.
    pub fn left_ms(&self, until_ms: i64) -> i64 {
        until_ms.saturating_sub(self.now_ms).max(0)
    }

    /// Each scope with a back-off in force, once, in the pools' order: which IP group (or other
    /// scope) is stopped, why and until when, while the others go on.
    pub fn backoffs(&self) -> Vec<ScopeBackoffStatus> {
        let mut found: Vec<ScopeBackoffStatus> = Vec::new();
        for pool in &self.pools {
            let Some(until_ms) = pool.backoff_until_ms else {
                continue;
            };
            if pool.backoff == BackoffState::Normal || found.iter().any(|b| b.scope == pool.scope) {
                continue;
            }
            found.push(ScopeBackoffStatus {
                scope: pool.scope,
                scope_name: self.scope_name(pool.scope).map(str::to_owned),
                state: pool.backoff,
                until_ms,
                left_ms: self.left_ms(until_ms),
            });
        }
        found
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LedgerError {
    #[error("budget exhausted; next room at exchange time {until_ms} ms, past the wait deadline")]
    RateLimited { until_ms: i64 },
    #[error("the exchange asked us to back off until exchange time {until_ms} ms")]
    Throttled { until_ms: i64 },
    #[error("the IP is banned until exchange time {until_ms} ms")]
    Banned { until_ms: i64 },
    #[error("a single request costs more than a pool's whole window ({0})")]
    TooLarge(String),
    #[error("the ledger is closed")]
    Closed,
}

impl LedgerError {
    /// The refusal of a request stopped by a back-off in `state` until `until_ms`.
    pub(crate) fn backed_off(state: BackoffState, until_ms: i64) -> Self {
        match state {
            BackoffState::Banned => LedgerError::Banned { until_ms },
            BackoffState::Throttled | BackoffState::Normal => LedgerError::Throttled { until_ms },
        }
    }
}

/// The ledger. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    offset_ms: AtomicI64,
    state_dir: Option<PathBuf>,
    /// Tells the driver task that the next instant to look again may be earlier.
    wake_driver: Notify,
    /// Serialises writers of the state file (the tmp name is shared).
    save_lock: Mutex<()>,
    /// Woken when a shared pool wants more lease or has news for the other processes.
    keeper: std::sync::OnceLock<Arc<Notify>>,
}

impl Inner {
    /// Exchange time as the clock reads it now (before the monotonic clamp).
    #[inline]
    fn exchange_now(&self) -> i64 {
        self.clock.local_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Wakes the lease keeper of a shared ledger when there is news for it.
    fn tell_keeper(&self, st: &mut State) {
        if st.lease_news {
            if let Some(keeper) = self.keeper.get() {
                st.lease_news = false;
                keeper.notify_one();
            }
        }
    }

    /// Wakes the driver if the waiters' next chance moved earlier than its alarm.
    fn nudge_driver(&self, st: &State) {
        if st.waiting == 0 || !st.driver_running {
            return;
        }
        if let Some(next) = st.next_wake_ms {
            if st.driver_target_ms.is_none_or(|t| next < t) {
                self.wake_driver.notify_one();
            }
        }
    }
}

/// Who a reservation is for: a name to intern, or an id a handle already holds.
#[derive(Clone, Copy)]
enum Who<'a> {
    Name(&'a str),
    Id(Sid),
}

enum Attempt {
    Done(Result<Permit, LedgerError>),
    Wait {
        reply: oneshot::Receiver<Result<Permit, LedgerError>>,
        id: u64,
        deadline: Instant,
    },
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl Ledger {
    /// Builds a ledger with these pools (the venue adapter's defaults until the
    /// exchange announces its own). Restores persisted state from
    /// `config.state_dir` when present and still current.
    pub fn new(limits: Vec<RateLimit>, config: LedgerConfig, clock: Arc<dyn Clock>) -> Self {
        let headroom = if (0.0..1.0).contains(&config.market_headroom) {
            config.market_headroom
        } else {
            tracing::warn!(
                market_headroom = config.market_headroom,
                "market_headroom must lie in [0, 1); using the default"
            );
            LedgerConfig::default().market_headroom
        };
        let now = clock.local_ms();
        let mut state = State::new(limits, headroom, config.backoff_jitter, now);
        if let Some(dir) = &config.state_dir {
            persist::restore(&mut state, dir, now);
        }
        Ledger {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                clock,
                offset_ms: AtomicI64::new(0),
                state_dir: config.state_dir,
                wake_driver: Notify::new(),
                save_lock: Mutex::new(()),
                keeper: std::sync::OnceLock::new(),
            }),
        }
    }

    /// A handle for one strategy: reserves without looking its name up each time.
    pub fn handle(&self, strategy: &str) -> LedgerHandle {
        let sid = self.inner.state.lock().strategies.intern(strategy);
        LedgerHandle {
            ledger: self.clone(),
            sid,
            name: Arc::from(strategy),
        }
    }

    /// Replaces the pool definitions (e.g. after `exchangeInfo`), keeping counts of
    /// windows that still match.
    pub fn set_limits(&self, limits: Vec<RateLimit>) {
        let local = self.inner.exchange_now();
        let mut st = self.inner.state.lock();
        let now = st.advance(local);
        st.set_limits(limits);
        st.dispatch(now);
        self.inner.nudge_driver(&st);
    }

    /// How far our clock may be off the exchange's for a request, offset error and transit
    /// included (zero until set). Windows then roll this much after their nominal end, and
    /// what is sent this close to a boundary counts in both windows, so a request the
    /// exchange files in the other window than we did cannot take it over its limit.
    pub fn set_boundary_guard(&self, guard: Duration) {
        let local = self.inner.exchange_now();
        let mut st = self.inner.state.lock();
        st.set_guard(millis(guard));
        let now = st.advance(local);
        st.dispatch(now);
        self.inner.nudge_driver(&st);
    }

    /// The pools as configured now.
    pub fn limits(&self) -> Vec<RateLimit> {
        self.inner.state.lock().pools.iter().map(|p| p.limit).collect()
    }

    /// Exchange time minus local time, in ms (from the exchange's time endpoint).
    pub fn set_server_offset_ms(&self, offset_ms: i64) {
        self.inner.offset_ms.store(offset_ms, Ordering::Relaxed);
        let now = self.inner.exchange_now();
        let mut st = self.inner.state.lock();
        st.rewind(now);
        let now = st.advance(now);
        st.dispatch(now);
        self.inner.nudge_driver(&st);
    }

    /// Current exchange time in ms.
    pub fn now_ms(&self) -> i64 {
        self.inner.exchange_now()
    }

    /// Waits up to `wait` for room in every pool `cost` touches, then takes it all
    /// at once. FIFO within a lane; higher lanes first. Fails at once during a
    /// backoff or ban whose end lies past the deadline.
    pub async fn reserve(&self, strategy: &str, lane: Lane, cost: Cost, wait: Duration) -> Result<Permit, LedgerError> {
        self.reserve_as(Who::Name(strategy), lane, cost, wait).await
    }

    /// Reserves only if the budget is there now.
    pub fn try_reserve(&self, strategy: &str, lane: Lane, cost: Cost) -> Result<Permit, LedgerError> {
        match self.attempt(Who::Name(strategy), lane, cost, Duration::ZERO) {
            Attempt::Done(result) => result,
            // Unreachable with a zero wait; refuse rather than block.
            Attempt::Wait { .. } => Err(LedgerError::RateLimited {
                until_ms: self.now_ms(),
            }),
        }
    }

    async fn reserve_as(&self, who: Who<'_>, lane: Lane, cost: Cost, wait: Duration) -> Result<Permit, LedgerError> {
        let (reply, id, deadline) = match self.attempt(who, lane, cost, wait) {
            Attempt::Done(result) => return result,
            Attempt::Wait { reply, id, deadline } => (reply, id, deadline),
        };
        let mut waiting = ParkedWaiter {
            ledger: self,
            lane,
            id,
            reply,
            settled: false,
        };
        tokio::select! {
            biased;
            result = &mut waiting.reply => {
                waiting.settled = true;
                result.unwrap_or(Err(LedgerError::Closed))
            }
            _ = tokio::time::sleep_until(deadline) => waiting.give_up(),
        }
    }

    /// Admits `cost` at once; a shared ledger's keeper then learns what the pools hold.
    fn admit_now(&self, st: &mut State, sid: Sid, lane: Lane, cost: Cost, charges: &Charges, now: i64) -> Attempt {
        let permit = st.admit(sid, lane, cost, charges, now);
        if st.shared {
            self.inner.tell_keeper(st);
        }
        Attempt::Done(Ok(permit))
    }

    /// The synchronous part of a reservation: admit now, refuse now, or park.
    fn attempt(&self, who: Who<'_>, lane: Lane, cost: Cost, wait: Duration) -> Attempt {
        let local = self.inner.exchange_now();
        let mut st = self.inner.state.lock();
        if st.closed {
            return Attempt::Done(Err(LedgerError::Closed));
        }
        let sid = match who {
            Who::Name(name) => st.strategies.intern(name),
            Who::Id(sid) => sid,
        };
        let now = st.advance(local);
        let charges = st.charges(&cost);
        // The common case first: nobody waiting, no back-off, room in every pool (so the cost
        // is not too large either). The rest of this function decides the same way, slower.
        if st.waiting == 0 && !st.backoffs.any(now) && st.check(lane, &charges, &[]) == Fit::Now {
            return self.admit_now(&mut st, sid, lane, cost, &charges, now);
        }
        if let Some(err) = st.too_large(lane, &charges) {
            return Attempt::Done(Err(err));
        }
        let wait_ms = millis(wait);
        if let Some((state, resume_ms)) = st.backoffs.blocking(&cost, now) {
            if wait.is_zero() || resume_ms > now.saturating_add(wait_ms) {
                return Attempt::Done(Err(LedgerError::backed_off(state, resume_ms)));
            }
        } else {
            if st.waiting > 0 {
                // Waiters first: admit whoever fits, so the newcomer sees what they set aside.
                st.dispatch(now);
            }
            match st.check(lane, &charges, st.ahead_of(lane)) {
                Fit::Now => return self.admit_now(&mut st, sid, lane, cost, &charges, now),
                Fit::Blocked { room_at_ms, .. } => {
                    if st.shared {
                        let ahead = st.ahead_of(lane).to_vec();
                        st.want(lane, &charges, &ahead);
                        self.inner.tell_keeper(&mut st);
                    }
                    if wait.is_zero() {
                        return Attempt::Done(Err(LedgerError::RateLimited { until_ms: room_at_ms }));
                    }
                }
            }
        }
        let (tx, reply) = oneshot::channel();
        let id = st.push_waiter(sid, lane, cost, now.saturating_add(wait_ms), tx);
        st.dispatch(now);
        if st.shared {
            self.inner.tell_keeper(&mut st);
        }
        if !st.driver_running {
            st.driver_running = true;
            st.driver_target_ms = None;
            tokio::spawn(driver::run(self.inner.clone()));
        } else {
            self.inner.nudge_driver(&st);
        }
        let start = self.inner.clock.instant();
        let deadline = start
            .checked_add(wait)
            .unwrap_or_else(|| start + Duration::from_secs(100 * 365 * 86_400));
        Attempt::Wait { reply, id, deadline }
    }

    /// Reconciles with a response: raises local counts to the server's (never
    /// lowered by an older response) and enters backoff or ban on a 429 or 418.
    pub fn observe(&self, permit: &Permit, observation: &Observation) {
        let mut guard = self.inner.state.lock();
        let st = &mut *guard;
        // No clock read: the permit was granted after its pools rolled to its send
        // time, so a pool whose window starts later has moved on, and a pool not yet
        // rolled past it only holds a window that the next roll resets anyway.
        for usage in &observation.usage {
            let window_ms = usage.interval.millis();
            let of_key = st.index.pools_of(PoolKey::new(usage.scope, usage.kind));
            for pool in &mut st.pools[of_key] {
                // A response sent in an earlier window says nothing about this one.
                if pool.limit.interval.millis() == window_ms && pool.is_current(permit.sent_at_ms) {
                    if pool.lease.is_some() {
                        // The exchange counts every process: the shared count is raised, not ours.
                        st.server_reports.push(lease::ServerReport {
                            limit: pool.limit,
                            window_start_ms: pool.window_start,
                            used: usage.used,
                        });
                        st.lease_news = true;
                        continue;
                    }
                    if usage.used > pool.used {
                        st.generation += 1;
                    }
                    pool.raise_to_server(usage.used);
                }
            }
        }
        if observation.verdict != Verdict::Ok {
            let now = st.advance(self.inner.exchange_now());
            self.apply_verdict(st, observation.scope, &observation.verdict, now);
        }
        if st.shared {
            self.inner.tell_keeper(st);
        }
    }

    fn apply_verdict(&self, st: &mut State, scope: Scope, verdict: &Verdict, now: i64) {
        if st.backoffs.apply(scope, verdict, now, st.backoff_jitter) {
            let (state, resume_ms) = st.backoffs.of_scope(scope, now).unwrap_or((BackoffState::Normal, now));
            tracing::warn!(
                state = state.as_str(),
                %scope,
                resume_at_ms = resume_ms,
                "exchange asked to back off; nothing is sent from this scope until then"
            );
            st.generation += 1;
            if st.shared {
                st.backoff_reports.push(ScopeBackoff {
                    scope,
                    state,
                    resume_at_ms: resume_ms,
                });
                st.lease_news = true;
                self.inner.tell_keeper(st);
            }
            st.dispatch(now);
            self.inner.nudge_driver(st);
        }
    }

    /// Gives back up to `units` of `kind` the exchange did not charge (Binance's successful
    /// order calls cost no weight), from every pool of that kind the permit drew on. Only
    /// counts of the window the request was sent in are lowered, never below what the
    /// exchange itself reported. Call it once per permit.
    pub fn credit(&self, permit: &Permit, kind: PoolKind, units: u32) {
        if permit.cost.units_of(kind) == 0 || units == 0 {
            return;
        }
        let local = self.inner.exchange_now();
        let mut guard = self.inner.state.lock();
        let st = &mut *guard;
        let now = st.advance(local);
        let sid = permit.sid;
        for (i, pool) in st.pools.iter_mut().enumerate() {
            if pool.limit.kind != kind {
                continue;
            }
            let back = u64::from(units).min(permit.cost.units_in(pool.key));
            if back > 0 && pool.is_current(permit.sent_at_ms) {
                pool.refund(back, permit.sent_at_ms);
                st.strategies.refund(sid, i, pool, back);
            }
        }
        if kind == PoolKind::RequestWeight {
            let back = u64::from(units).min(permit.cost.units_of(kind));
            st.strategies.refund_total_weight(sid, back);
        }
        st.generation += 1;
        st.dispatch(now);
        self.inner.nudge_driver(st);
    }

    /// An order of the account `scope` got its first fill: the exchange lowers that
    /// account's unfilled-order count.
    pub fn order_filled(&self, scope: Scope, count: u32) {
        let local = self.inner.exchange_now();
        let mut st = self.inner.state.lock();
        let now = st.advance(local);
        for pool in &mut st.pools {
            if pool.limit.kind == PoolKind::Orders && pool.limit.scope == scope {
                pool.lower(u64::from(count));
            }
        }
        st.generation += 1;
        st.dispatch(now);
        self.inner.nudge_driver(&st);
    }

    /// A 429/418 for `scope` learned outside a request/response pair (e.g. a WebSocket error frame).
    pub fn enter_backoff(&self, scope: Scope, verdict: &Verdict) {
        let local = self.inner.exchange_now();
        let mut st = self.inner.state.lock();
        let now = st.advance(local);
        self.apply_verdict(&mut st, scope, verdict, now);
    }

    pub fn status(&self, strategy: &str) -> LedgerStatus {
        let local = self.inner.exchange_now();
        let mut st = self.inner.state.lock();
        let now = st.advance(local);
        let sid = st.strategies.lookup(strategy);
        status::build(&st, sid, now)
    }

    /// Writes windows and backoff state to the state dir (no-op without one).
    pub fn save(&self) -> std::io::Result<()> {
        let Some(dir) = &self.inner.state_dir else {
            return Ok(());
        };
        let _writer = self.inner.save_lock.lock();
        let (snapshot, generation) = {
            let st = self.inner.state.lock();
            (persist::snapshot(&st), st.generation)
        };
        persist::write(dir, &snapshot)?;
        self.inner.state.lock().saved_generation = generation;
        Ok(())
    }

    /// Whether anything changed since the last successful save.
    fn unsaved(&self) -> bool {
        let st = self.inner.state.lock();
        st.generation != st.saved_generation
    }

    /// Saves every `every` while something changed, and once more when the returned
    /// handle is stopped or dropped, so a crash loses at most one interval.
    pub fn spawn_autosave(&self, every: Duration) -> Autosave {
        persist::spawn_autosave(self.clone(), every)
    }

    /// Refuses everything from now on, fails every waiter with `Closed`, and saves.
    pub fn close(&self) -> std::io::Result<()> {
        {
            let mut st = self.inner.state.lock();
            st.closed = true;
            st.fail_all();
        }
        self.inner.wake_driver.notify_one();
        self.save()
    }
}

/// A reservation parked in its lane. Dropping it (the caller gave up) removes it,
/// and returns any budget granted but never handed over.
struct ParkedWaiter<'a> {
    ledger: &'a Ledger,
    lane: Lane,
    id: u64,
    reply: oneshot::Receiver<Result<Permit, LedgerError>>,
    settled: bool,
}

impl ParkedWaiter<'_> {
    /// The deadline passed. Room that came at this very instant still counts.
    fn give_up(&mut self) -> Result<Permit, LedgerError> {
        self.settled = true;
        let inner = &self.ledger.inner;
        let local = inner.exchange_now();
        let mut st = inner.state.lock();
        let now = st.advance(local);
        st.dispatch(now);
        if let Ok(result) = self.reply.try_recv() {
            return result;
        }
        let removed = st.remove_waiter(self.lane, self.id);
        // Those it held back may fit now.
        st.dispatch(now);
        inner.nudge_driver(&st);
        let (room_at_ms, refusal) = match removed {
            Some(w) => (w.room_at_ms, st.backoffs.refusal(&w.cost, now)),
            None => (now, None),
        };
        Err(refusal.unwrap_or(LedgerError::RateLimited { until_ms: room_at_ms }))
    }
}

impl Drop for ParkedWaiter<'_> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let inner = &self.ledger.inner;
        let local = inner.exchange_now();
        let mut st = inner.state.lock();
        let now = st.advance(local);
        if st.remove_waiter(self.lane, self.id).is_none() {
            if let Ok(Ok(unsent)) = self.reply.try_recv() {
                st.unadmit(&unsent);
            }
        }
        st.dispatch(now);
        inner.nudge_driver(&st);
    }
}

/// One strategy's view of the ledger, with its name interned once.
#[derive(Clone)]
pub struct LedgerHandle {
    ledger: Ledger,
    sid: Sid,
    name: Arc<str>,
}

impl LedgerHandle {
    pub fn strategy(&self) -> &Arc<str> {
        &self.name
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// As [`Ledger::reserve`], for this handle's strategy.
    pub async fn reserve(&self, lane: Lane, cost: Cost, wait: Duration) -> Result<Permit, LedgerError> {
        self.ledger.reserve_as(Who::Id(self.sid), lane, cost, wait).await
    }

    /// As [`Ledger::try_reserve`], for this handle's strategy.
    pub fn try_reserve(&self, lane: Lane, cost: Cost) -> Result<Permit, LedgerError> {
        match self.ledger.attempt(Who::Id(self.sid), lane, cost, Duration::ZERO) {
            Attempt::Done(result) => result,
            Attempt::Wait { .. } => Err(LedgerError::RateLimited {
                until_ms: self.ledger.now_ms(),
            }),
        }
    }

    pub fn status(&self) -> LedgerStatus {
        self.ledger.status(&self.name)
    }
}

#[cfg(test)]
mod tests;
