//! The ledger's compact state behind its one lock: pools, per-strategy counts,
//! backoff, and the waiters parked per lane.
//!
//! Admission order: lanes by priority (Cancel, Order, MarketData), FIFO within a
//! lane. A waiter that does not fit *claims* what it needs: in every pool where it
//! would fit, its units are set aside from those behind it; in every pool where it
//! does not, nobody behind it may take anything. So a large request at the head is
//! never starved by small ones behind it, yet requests that draw on other pools
//! still go ahead.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::oneshot;

use super::backoff::{Backoffs, ScopeBackoff};
use super::limits::{PoolKind, RateLimit};
use super::pools::{normalise, Charges, Pool, PoolIndex};
use super::strategies::{Sid, Strategies};
use super::{Cost, Lane, LedgerError, Permit};

/// Marks a pool claimed whole by a blocked waiter ahead.
const CLAIMED: u64 = u64::MAX;

pub(crate) type Reply = oneshot::Sender<Result<Permit, LedgerError>>;

pub(crate) struct Waiter {
    pub id: u64,
    pub sid: Sid,
    pub cost: Cost,
    /// Exchange ms past which the caller gives up.
    pub deadline_ms: i64,
    /// When the pools that block it will all have reset (or the backoff ends).
    pub room_at_ms: i64,
    pub reply: Reply,
}

/// Whether a cost fits now, and if not, when that may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fit {
    Now,
    Blocked {
        /// The earliest reset among the blocking pools: the next chance.
        next_reset_ms: i64,
        /// The latest reset among them: when every blocking pool has emptied.
        room_at_ms: i64,
    },
}

pub(crate) struct State {
    /// Replaced only by [`State::set_limits`], which keeps `index` and `roll_due_ms` right.
    pub pools: Vec<Pool>,
    /// Where each (scope, kind) pair's pools lie.
    pub index: PoolIndex,
    /// No pool has anything to roll before this exchange time (see [`State::advance`]);
    /// `i64::MIN` makes the next advance look at every pool.
    roll_due_ms: i64,
    pub strategies: Strategies,
    pub backoffs: Backoffs,
    pub market_headroom: f64,
    pub backoff_jitter: Duration,
    lanes: [VecDeque<Waiter>; 3],
    pub waiting: usize,
    next_waiter_id: u64,
    /// Per lane, what blocked waiters of that lane and the ones before it set aside.
    ahead: [Vec<u64>; 3],
    scratch: Vec<u64>,
    /// The earliest instant the waiters' situation can change by itself.
    pub next_wake_ms: Option<i64>,
    seq: u64,
    last_now_ms: i64,
    pub closed: bool,
    /// Bumped on every change worth saving.
    pub generation: u64,
    pub saved_generation: u64,
    pub driver_running: bool,
    pub driver_target_ms: Option<i64>,
    /// Whether some pool is shared with other processes (see `lease`).
    pub shared: bool,
    /// Shared pools: something for the lease keeper to do (more wanted, usage, a backoff).
    pub lease_news: bool,
    /// Shared pools: the exchange's counts seen since the keeper last looked.
    pub server_reports: Vec<super::lease::ServerReport>,
    /// Shared pools: the back-offs this process entered, for the others.
    pub backoff_reports: Vec<ScopeBackoff>,
    /// Which pools are shared (and when to ask for more), for pools announced later.
    pub share_rule: Option<super::lease::ShareRule>,
    /// How the pools are shared, as the lease keeper last said (for `status`; kept here so
    /// `status` takes one lock).
    pub sharing: Option<Box<super::lease::Sharing>>,
}

#[inline]
fn lane_index(lane: Lane) -> usize {
    match lane {
        Lane::Cancel => 0,
        Lane::Order => 1,
        Lane::MarketData => 2,
    }
}

const LANES: [Lane; 3] = [Lane::Cancel, Lane::Order, Lane::MarketData];

impl State {
    pub fn new(limits: Vec<RateLimit>, market_headroom: f64, backoff_jitter: Duration, now_ms: i64) -> Self {
        let pools: Vec<Pool> = normalise(limits)
            .into_iter()
            .map(|l| Pool::new(l, market_headroom, now_ms, 0))
            .collect();
        State {
            strategies: Strategies::new(pools.len()),
            index: PoolIndex::new(&pools),
            pools,
            roll_due_ms: i64::MIN,
            backoffs: Backoffs::default(),
            market_headroom,
            backoff_jitter,
            lanes: Default::default(),
            waiting: 0,
            next_waiter_id: 0,
            ahead: Default::default(),
            scratch: Vec::new(),
            next_wake_ms: None,
            seq: 0,
            last_now_ms: now_ms,
            closed: false,
            generation: 0,
            saved_generation: 0,
            driver_running: false,
            driver_target_ms: None,
            shared: false,
            lease_news: false,
            server_reports: Vec::new(),
            backoff_reports: Vec::new(),
            share_rule: None,
            sharing: None,
        }
    }

    /// Moves the ledger's clock to `now_ms` (never backwards) and rolls windows.
    #[inline]
    pub fn advance(&mut self, now_ms: i64) -> i64 {
        let now = now_ms.max(self.last_now_ms);
        self.last_now_ms = now;
        // Most calls fall inside every window: one comparison instead of one per pool.
        if now >= self.roll_due_ms {
            self.roll_all(now);
        }
        now
    }

    #[inline(never)]
    fn roll_all(&mut self, now_ms: i64) {
        let mut due = i64::MAX;
        for pool in &mut self.pools {
            pool.roll(now_ms);
            due = due.min(pool.roll_due_ms());
        }
        self.roll_due_ms = due;
    }

    /// Moves the clock back after a server-offset correction. Counts of windows we
    /// entered too early are carried into the real current window: the exchange
    /// still holds them somewhere, and overcounting is the safe side.
    pub fn rewind(&mut self, now_ms: i64) {
        if now_ms >= self.last_now_ms {
            return;
        }
        self.last_now_ms = now_ms;
        for pool in &mut self.pools {
            let start = pool.start_at(now_ms);
            if start < pool.window_start {
                pool.enter(start);
            }
        }
        self.roll_due_ms = i64::MIN;
    }

    pub fn now_ms(&self) -> i64 {
        self.last_now_ms
    }

    /// What `cost` draws from which pools now.
    #[inline]
    pub fn charges(&self, cost: &Cost) -> Charges {
        Charges::resolve(&self.index, cost)
    }

    /// A cost no window of some pool could ever hold for this lane.
    pub fn too_large(&self, lane: Lane, charges: &Charges) -> Option<LedgerError> {
        charges.iter().find_map(|(i, units)| {
            let p = &self.pools[i];
            (units > p.limit_cap(lane)).then(|| {
                LedgerError::TooLarge(format!(
                    "{units} {} units against {} per {} for the {lane:?} lane",
                    p.limit.kind,
                    p.limit_cap(lane),
                    p.limit.interval
                ))
            })
        })
    }

    /// Whether `charges` fit with `ahead` set aside (empty slice: nothing set aside).
    #[inline]
    pub fn check(&self, lane: Lane, charges: &Charges, ahead: &[u64]) -> Fit {
        let mut next_reset_ms = i64::MAX;
        let mut room_at_ms = i64::MIN;
        for (i, units) in charges.iter() {
            let p = &self.pools[i];
            let aside = ahead.get(i).copied().unwrap_or(0);
            if aside == CLAIMED || p.used.saturating_add(aside).saturating_add(units) > p.cap(lane) {
                next_reset_ms = next_reset_ms.min(p.window_end);
                room_at_ms = room_at_ms.max(p.window_end);
            }
        }
        if room_at_ms == i64::MIN {
            Fit::Now
        } else {
            Fit::Blocked {
                next_reset_ms,
                room_at_ms,
            }
        }
    }

    /// Takes `cost` (drawing `charges`) from every pool at once and tags it with the strategy.
    #[inline]
    pub fn admit(&mut self, sid: Sid, lane: Lane, cost: Cost, charges: &Charges, now_ms: i64) -> Permit {
        for (i, units) in charges.iter() {
            let p = &mut self.pools[i];
            p.charge_at(units, now_ms);
            self.strategies.charge(sid, i, p, units);
            if let Some(lease) = p.lease {
                if lease.saturating_sub(p.used) < p.refill_below {
                    p.wanted = p.wanted.max(1);
                    p.wanted_full |= lane != Lane::MarketData;
                    self.lease_news = true;
                }
            }
        }
        // Both totals in one pass over the draws (this is the reservation's hot path).
        let (mut weight, mut orders) = (0, 0);
        for draw in cost.draws() {
            match draw.kind() {
                PoolKind::RequestWeight => weight += u64::from(draw.units),
                PoolKind::Orders => orders += u64::from(draw.units),
                PoolKind::RawRequests | PoolKind::Connections => {}
            }
        }
        self.strategies.add_totals(sid, weight, orders);
        self.seq += 1;
        self.generation += 1;
        Permit {
            sid,
            cost,
            lane,
            sent_at_ms: now_ms,
            seq: self.seq,
        }
    }

    /// Undoes an admission whose permit never reached its caller (nothing was sent).
    pub fn unadmit(&mut self, permit: &Permit) {
        let sid = permit.sid;
        for (i, units) in self.charges(&permit.cost).iter() {
            let p = &mut self.pools[i];
            if p.is_current(permit.sent_at_ms) {
                p.uncharge(units, permit.sent_at_ms);
                self.strategies.refund(sid, i, p, units);
            }
        }
        self.strategies
            .refund_total_weight(sid, permit.cost.units_of(PoolKind::RequestWeight));
        self.generation += 1;
    }

    /// Shared pools: records what `charges` lack beyond the leases (with `ahead` set aside).
    pub fn want(&mut self, lane: Lane, charges: &Charges, ahead: &[u64]) {
        for (i, units) in charges.iter() {
            let p = &mut self.pools[i];
            let aside = ahead.get(i).copied().filter(|a| *a != CLAIMED).unwrap_or(0);
            if p.lease.is_some() {
                p.want(lane, units, aside);
                self.lease_news |= p.wanted > 0;
            }
        }
    }

    /// Sets aside what a blocked waiter needs from those behind it.
    fn claim(&self, lane: Lane, charges: &Charges, ahead: &mut [u64]) {
        for (i, units) in charges.iter() {
            let p = &self.pools[i];
            let aside = ahead[i];
            ahead[i] = if aside != CLAIMED && p.used.saturating_add(aside).saturating_add(units) <= p.cap(lane) {
                aside + units
            } else {
                CLAIMED
            };
        }
    }

    /// What a newcomer in `lane` must leave to the waiters before it. Valid right
    /// after [`State::dispatch`].
    pub fn ahead_of(&self, lane: Lane) -> &[u64] {
        if self.waiting == 0 {
            &[]
        } else {
            &self.ahead[lane_index(lane)]
        }
    }

    pub fn push_waiter(&mut self, sid: Sid, lane: Lane, cost: Cost, deadline_ms: i64, reply: Reply) -> u64 {
        self.next_waiter_id += 1;
        let id = self.next_waiter_id;
        self.lanes[lane_index(lane)].push_back(Waiter {
            id,
            sid,
            cost,
            deadline_ms,
            room_at_ms: deadline_ms,
            reply,
        });
        self.waiting += 1;
        id
    }

    /// Removes a waiter that gave up; returns it (when room would have come for it, its cost).
    pub fn remove_waiter(&mut self, lane: Lane, id: u64) -> Option<Waiter> {
        let queue = &mut self.lanes[lane_index(lane)];
        let pos = queue.iter().position(|w| w.id == id)?;
        let waiter = queue.remove(pos)?;
        self.waiting -= 1;
        Some(waiter)
    }

    /// Admits every waiter that fits, in priority then FIFO order; fails those a
    /// backoff outlasts; records what the rest set aside and when to look again.
    pub fn dispatch(&mut self, now_ms: i64) {
        self.next_wake_ms = None;
        if self.waiting == 0 {
            return;
        }
        let mut ahead = std::mem::take(&mut self.scratch);
        ahead.clear();
        ahead.resize(self.pools.len(), 0);
        let mut next_wake: Option<i64> = None;
        for (li, lane) in LANES.into_iter().enumerate() {
            let mut i = 0;
            while i < self.lanes[li].len() {
                let cost = self.lanes[li][i].cost;
                // Backed off: it sets nothing aside (it cannot go), so others go ahead.
                if let Some((state, resume_ms)) = self.backoffs.blocking(&cost, now_ms) {
                    let waiter = &mut self.lanes[li][i];
                    if waiter.deadline_ms < resume_ms {
                        if let Some(w) = self.take_waiter(li, i) {
                            let _ = w.reply.send(Err(LedgerError::backed_off(state, resume_ms)));
                        }
                    } else {
                        waiter.room_at_ms = resume_ms;
                        next_wake = Some(next_wake.map_or(resume_ms, |w| w.min(resume_ms)));
                        i += 1;
                    }
                    continue;
                }
                let charges = self.charges(&cost);
                match self.check(lane, &charges, &ahead) {
                    Fit::Now => {
                        if let Some(w) = self.take_waiter(li, i) {
                            let permit = self.admit(w.sid, lane, cost, &charges, now_ms);
                            if let Err(Ok(unsent)) = w.reply.send(Ok(permit)) {
                                self.unadmit(&unsent);
                            }
                        }
                    }
                    Fit::Blocked {
                        next_reset_ms,
                        room_at_ms,
                    } => {
                        self.lanes[li][i].room_at_ms = room_at_ms;
                        next_wake = Some(next_wake.map_or(next_reset_ms, |w| w.min(next_reset_ms)));
                        if self.shared {
                            self.want(lane, &charges, &ahead);
                        }
                        self.claim(lane, &charges, &mut ahead);
                        i += 1;
                    }
                }
            }
            self.ahead[li].clone_from(&ahead);
        }
        self.scratch = ahead;
        self.next_wake_ms = next_wake;
    }

    fn take_waiter(&mut self, lane: usize, pos: usize) -> Option<Waiter> {
        let w = self.lanes[lane].remove(pos)?;
        self.waiting -= 1;
        Some(w)
    }

    /// Fails every waiter whose cost no longer fits any window (after new limits).
    pub fn fail_oversized(&mut self) {
        for (li, lane) in LANES.into_iter().enumerate() {
            let mut i = 0;
            while i < self.lanes[li].len() {
                match self.too_large(lane, &self.charges(&self.lanes[li][i].cost)) {
                    Some(err) => {
                        if let Some(w) = self.take_waiter(li, i) {
                            let _ = w.reply.send(Err(err));
                        }
                    }
                    None => i += 1,
                }
            }
        }
    }

    /// Fails every waiter with `Closed`.
    pub fn fail_all(&mut self) {
        for queue in &mut self.lanes {
            for w in queue.drain(..) {
                let _ = w.reply.send(Err(LedgerError::Closed));
            }
        }
        self.waiting = 0;
    }

    /// Sets the boundary guard of every pool (see [`Pool::guard_ms`]), keeping current windows.
    pub fn set_guard(&mut self, guard_ms: i64) {
        for pool in &mut self.pools {
            pool.guard_ms = guard_ms.max(0);
            let start = pool.window_start;
            pool.enter(start);
        }
        self.roll_due_ms = i64::MIN;
        self.generation += 1;
    }

    /// Replaces the pools, keeping the counts of windows that still exist.
    pub fn set_limits(&mut self, limits: Vec<RateLimit>) {
        let now = self.last_now_ms;
        let mut old_index = Vec::new();
        let pools: Vec<Pool> = normalise(limits)
            .into_iter()
            .map(|l| {
                let guard_ms = self.pools.first().map_or(0, |p| p.guard_ms);
                let mut pool = Pool::new(l, self.market_headroom, now, guard_ms);
                let old = self.pools.iter().position(|p| p.limit.same_pool(&l));
                if let Some(o) = old {
                    pool.adopt(&self.pools[o]);
                } else if let Some(rule) = &self.share_rule {
                    rule.apply(&mut pool);
                }
                old_index.push(old);
                pool
            })
            .collect();
        self.strategies.remap_pools(&old_index);
        self.index = PoolIndex::new(&pools);
        self.pools = pools;
        self.roll_due_ms = i64::MIN;
        self.generation += 1;
        self.fail_oversized();
    }
}
