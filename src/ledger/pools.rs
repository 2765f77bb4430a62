//! Pools and their windows.
//!
//! A pool counts one kind of unit in one scope over its window: fixed windows
//! aligned to the exchange's epoch (what Binance counts), a rolling window (the
//! last interval, kept in [`SLOTS`] slices) or a leaky bucket draining the limit
//! evenly over each interval. Time only moves forward: the ledger's notion of
//! "now" is monotonic, so a late reader can never roll a window back and wipe a
//! count the exchange still holds.

use super::limits::{PoolKey, RateLimit, WindowKind};
use super::{Cost, Lane, MAX_DRAWS};

/// Where each (scope, kind) pair's pools lie: the windows of one pair are neighbours (see
/// [`normalise`]), so a pair is one run of pool indices. Built whenever the pools are, so a
/// draw finds its pools with a compare per pair instead of a scan of every pool.
#[derive(Debug, Clone, Default)]
pub(crate) struct PoolIndex {
    runs: Vec<KeyRun>,
}

#[derive(Debug, Clone, Copy)]
struct KeyRun {
    key: PoolKey,
    start: u32,
    end: u32,
}

impl PoolIndex {
    pub fn new(pools: &[Pool]) -> Self {
        let mut runs: Vec<KeyRun> = Vec::new();
        for (i, pool) in pools.iter().enumerate() {
            let i = i as u32;
            match runs.last_mut() {
                Some(run) if run.key == pool.key && run.end == i => run.end = i + 1,
                _ => runs.push(KeyRun {
                    key: pool.key,
                    start: i,
                    end: i + 1,
                }),
            }
        }
        PoolIndex { runs }
    }

    /// The indices of the pools of `key` (empty when there are none).
    #[inline]
    pub fn pools_of(&self, key: PoolKey) -> std::ops::Range<usize> {
        self.runs
            .iter()
            .find(|r| r.key == key)
            .map_or(0..0, |r| r.start as usize..r.end as usize)
    }
}

/// What one cost draws, matched to the pools once per reservation: runs of neighbouring
/// pools (the windows of one scope and kind) with the units drawn from each, in pool order;
/// one run per draw that has pools. Valid while the pools stay as they are (built and used
/// under one lock).
#[derive(Clone, Copy)]
pub(crate) struct Charges {
    runs: [Run; MAX_DRAWS],
    len: u8,
}

#[derive(Clone, Copy, Default)]
struct Run {
    start: u32,
    end: u32,
    units: u32,
}

impl Charges {
    #[inline]
    pub fn resolve(index: &PoolIndex, cost: &Cost) -> Self {
        let mut charges = Charges {
            runs: [Run::default(); MAX_DRAWS],
            len: 0,
        };
        for draw in cost.draws() {
            let Some(pools) = index.runs.iter().find(|r| r.key == draw.key) else {
                continue;
            };
            // Kept in pool order (an insertion sort of a handful): the first pool a cost
            // does not fit is the one a refusal names.
            let mut at = charges.len as usize;
            while at > 0 && charges.runs[at - 1].start > pools.start {
                charges.runs[at] = charges.runs[at - 1];
                at -= 1;
            }
            charges.runs[at] = Run {
                start: pools.start,
                end: pools.end,
                units: draw.units,
            };
            charges.len += 1;
        }
        charges
    }

    /// Every pool drawn on, as (pool index, units), in pool order.
    #[inline]
    pub fn iter(&self) -> ChargeIter<'_> {
        let runs = &self.runs[..self.len as usize];
        ChargeIter {
            next: runs.first().map_or(0, |r| r.start),
            runs,
        }
    }
}

pub(crate) struct ChargeIter<'a> {
    runs: &'a [Run],
    /// The next pool of `runs[0]`.
    next: u32,
}

impl Iterator for ChargeIter<'_> {
    type Item = (usize, u64);

    #[inline]
    fn next(&mut self) -> Option<(usize, u64)> {
        loop {
            let run = self.runs.first()?;
            if self.next < run.end {
                self.next += 1;
                return Some(((self.next - 1) as usize, u64::from(run.units)));
            }
            self.runs = &self.runs[1..];
            self.next = self.runs.first().map_or(0, |r| r.start);
        }
    }
}

/// Slices a rolling window is kept in. A unit counts until its whole slice has left
/// the window, so at most one slice's length too long: safe, never early.
pub(crate) const SLOTS: usize = 10;

/// What a non-fixed window remembers besides the count.
#[derive(Debug, Clone)]
pub(crate) enum Motion {
    Fixed,
    /// `slots[i % (SLOTS + 1)]` holds the units charged in slice `i`; `head` is the
    /// current slice. (Boxed: the ring would triple the size of every pool.)
    Rolling {
        slot_ms: i64,
        head: i64,
        slots: Box<[u64; SLOTS + 1]>,
    },
    /// The level drains `limit` units per interval; `carry` is the part of a unit
    /// (in units × ms) drained but not yet whole: less than one interval in ms.
    Bucket {
        drained_at_ms: i64,
        carry: u64,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Pool {
    pub limit: RateLimit,
    /// The limit's scope and kind.
    pub key: PoolKey,
    /// What the market-data lane may fill up to: the limit less the headroom.
    pub market_cap: u64,
    /// Start of the current window (rolling: of the span still counted; bucket: 0).
    pub window_start: i64,
    /// When the count next goes down by itself: the fixed window's end, the next
    /// rolling slice, the next unit a bucket drains.
    pub window_end: i64,
    pub used: u64,
    /// Highest count the exchange itself reported in this window. Counts only
    /// grow within a window (fills aside), so a credit never goes below it.
    pub server_floor: u64,
    pub peak: u64,
    /// How uncertain our view of the exchange's clock is (ms), offset error and transit
    /// included: a fixed window rolls this long after its nominal end, and what was sent
    /// this close to the boundary on either side is carried into the next window, since
    /// the exchange may count it in either.
    pub guard_ms: i64,
    /// Units charged within the guard of the current window's nominal end.
    pub tail: u64,
    pub motion: Motion,
    /// For a pool shared with other processes: the slice of the current window this
    /// process holds (see `lease`); `None` for a pool this process owns alone.
    pub lease: Option<u64>,
    /// Shared pools: units this process needs beyond its lease (0: none wanted).
    pub wanted: u64,
    /// Whether what is wanted is for cancels or orders, which may use the whole limit.
    pub wanted_full: bool,
    /// Whether a request waits for what is wanted (not only a lease running low).
    pub wanted_by_request: bool,
    /// Shared pools: ask for more once less than this is left of the lease.
    pub refill_below: u64,
}

/// Far enough to never come, near enough to add to without overflow.
const NEVER: i64 = i64::MAX / 4;

impl Pool {
    pub fn new(limit: RateLimit, market_headroom: f64, now_ms: i64, guard_ms: i64) -> Self {
        // Round the reserved slice up, so even small pools keep room for a cancel.
        let reserved = (limit.limit as f64 * market_headroom).ceil() as u64;
        let interval_ms = limit.interval.millis();
        let motion = match limit.window {
            WindowKind::Fixed => Motion::Fixed,
            WindowKind::Rolling => {
                let slot_ms = (interval_ms / SLOTS as i64).max(1);
                Motion::Rolling {
                    slot_ms,
                    head: now_ms.div_euclid(slot_ms),
                    slots: Box::new([0; SLOTS + 1]),
                }
            }
            WindowKind::Bucket => Motion::Bucket {
                drained_at_ms: now_ms,
                carry: 0,
            },
        };
        let mut pool = Pool {
            limit,
            key: limit.key(),
            market_cap: limit.limit.saturating_sub(reserved),
            window_start: 0,
            window_end: 0,
            used: 0,
            server_floor: 0,
            peak: 0,
            guard_ms: guard_ms.max(0),
            tail: 0,
            motion,
            lease: None,
            wanted: 0,
            wanted_full: false,
            wanted_by_request: false,
            refill_below: 0,
        };
        match pool.motion {
            Motion::Fixed => pool.enter(pool.start_at(now_ms)),
            Motion::Rolling { .. } | Motion::Bucket { .. } => pool.roll(now_ms),
        }
        pool
    }

    /// Start of the fixed window that `now_ms` belongs to, the guard taken into account.
    #[inline]
    pub fn start_at(&self, now_ms: i64) -> i64 {
        self.limit.interval.window_start(now_ms - self.guard_ms)
    }

    /// Makes the fixed window starting at `start` current; it rolls at its nominal end plus the guard.
    #[inline]
    pub fn enter(&mut self, start: i64) {
        self.window_start = start;
        self.window_end = start + self.limit.interval.millis() + self.guard_ms;
    }

    /// Lets time pass up to `now_ms`: a fixed window that ended resets, a rolling
    /// window drops the slices that left it, a bucket drains.
    #[inline]
    pub fn roll(&mut self, now_ms: i64) {
        // The common case, inline: a fixed window before its end has nothing to do.
        if now_ms >= self.window_end || !matches!(self.motion, Motion::Fixed) {
            self.roll_on(now_ms);
        }
    }

    /// The first instant at which [`Pool::roll`] may change anything, right after a roll:
    /// a fixed window's end, a rolling window's next slice; a bucket drains all the time.
    #[inline]
    pub fn roll_due_ms(&self) -> i64 {
        match self.motion {
            Motion::Fixed | Motion::Rolling { .. } => self.window_end,
            Motion::Bucket { .. } => i64::MIN,
        }
    }

    #[inline(never)]
    fn roll_on(&mut self, now_ms: i64) {
        match &mut self.motion {
            Motion::Fixed => {
                if now_ms >= self.window_end {
                    let start = self.start_at(now_ms);
                    let follows = start == self.window_end - self.guard_ms;
                    self.enter(start);
                    self.used = if follows { self.tail } else { 0 };
                    self.tail = 0;
                    self.server_floor = 0;
                    if self.lease.is_some() {
                        // A lease is for one window; the next one is leased anew.
                        self.lease = Some(0);
                        self.wanted = 0;
                        self.wanted_by_request = false;
                    }
                }
            }
            Motion::Rolling { slot_ms, head, slots } => {
                let now_slot = now_ms.div_euclid(*slot_ms);
                if now_slot > *head {
                    // Slices head+1..=now_slot are new: empty their ring cells (what they
                    // held left the window), at most the whole ring.
                    let first = (*head + 1).max(now_slot - SLOTS as i64);
                    for slice in first..=now_slot {
                        let cell = &mut slots[slice.rem_euclid(SLOTS as i64 + 1) as usize];
                        self.used = self.used.saturating_sub(*cell);
                        *cell = 0;
                    }
                    *head = now_slot;
                    self.server_floor = self.server_floor.min(self.used);
                }
                self.window_start = (*head - SLOTS as i64) * *slot_ms;
                self.window_end = (*head + 1) * *slot_ms;
            }
            Motion::Bucket { drained_at_ms, carry } => {
                let interval_ms = self.limit.interval.millis().max(1) as u128;
                let limit = u128::from(self.limit.limit.max(1));
                if now_ms > *drained_at_ms {
                    let flowed = (now_ms - *drained_at_ms) as u128 * limit + u128::from(*carry);
                    let drained = u64::try_from(flowed / interval_ms).unwrap_or(u64::MAX);
                    // Below `interval_ms`, an i64.
                    *carry = (flowed % interval_ms) as u64;
                    *drained_at_ms = now_ms;
                    self.used = self.used.saturating_sub(drained);
                    if self.used == 0 {
                        *carry = 0;
                    }
                    self.server_floor = self.server_floor.min(self.used);
                }
                self.window_start = 0;
                self.window_end = if self.used == 0 {
                    NEVER
                } else {
                    // The next whole unit has drained once carry reaches one interval.
                    let ms = (interval_ms - u128::from(*carry)).div_ceil(limit).max(1);
                    now_ms
                        .max(*drained_at_ms)
                        .saturating_add(i64::try_from(ms).unwrap_or(NEVER))
                };
            }
        }
    }

    /// Charges units sent at `now_ms`; near a fixed window's boundary they also count
    /// for the next window.
    #[inline]
    pub fn charge_at(&mut self, units: u64, now_ms: i64) {
        match &mut self.motion {
            Motion::Fixed => {
                if now_ms >= self.window_end - 2 * self.guard_ms {
                    self.tail = self.tail.saturating_add(units);
                }
            }
            Motion::Rolling { head, slots, .. } => {
                let cell = &mut slots[head.rem_euclid(SLOTS as i64 + 1) as usize];
                *cell = cell.saturating_add(units);
            }
            Motion::Bucket { .. } => {}
        }
        self.charge(units);
        if let Motion::Bucket { .. } = self.motion {
            // Draining restarts its clock from a non-empty level.
            self.roll(now_ms);
        }
    }

    /// Whether an instant (exchange ms) falls in the span the count still holds.
    #[inline]
    pub fn is_current(&self, at_ms: i64) -> bool {
        match self.motion {
            Motion::Fixed | Motion::Rolling { .. } => at_ms >= self.window_start && at_ms < self.window_end,
            // What a bucket still holds may date from any time; giving back never takes
            // it below empty.
            Motion::Bucket { drained_at_ms, .. } => at_ms <= drained_at_ms,
        }
    }

    /// What `lane` may fill the window up to, whatever is leased.
    #[inline]
    pub fn limit_cap(&self, lane: Lane) -> u64 {
        match lane {
            Lane::MarketData => self.market_cap,
            Lane::Cancel | Lane::Order => self.limit.limit,
        }
    }

    /// What `lane` may fill the window up to now: a shared pool also stops at its lease.
    #[inline]
    pub fn cap(&self, lane: Lane) -> u64 {
        let cap = self.limit_cap(lane);
        match self.lease {
            Some(lease) => cap.min(lease),
            None => cap,
        }
    }

    /// Notes that `units` more for `lane` would not fit the lease although they fit the limit.
    pub fn want(&mut self, lane: Lane, units: u64, aside: u64) {
        let Some(lease) = self.lease else { return };
        let after = self.used.saturating_add(aside).saturating_add(units);
        if after > lease && after <= self.limit_cap(lane) {
            self.wanted = self.wanted.max(after - lease);
            self.wanted_full |= lane != Lane::MarketData;
            self.wanted_by_request = true;
        }
    }

    #[inline]
    pub fn charge(&mut self, units: u64) {
        self.used = self.used.saturating_add(units);
        self.peak = self.peak.max(self.used);
    }

    /// Takes back units charged at `sent_at_ms` (rolling: from the slice they went to).
    pub fn uncharge(&mut self, units: u64, sent_at_ms: i64) {
        let mut units = units.min(self.used);
        if let Motion::Rolling { slot_ms, head, slots } = &mut self.motion {
            let slice = sent_at_ms.div_euclid(*slot_ms);
            if slice > *head - SLOTS as i64 - 1 && slice <= *head {
                let cell = &mut slots[slice.rem_euclid(SLOTS as i64 + 1) as usize];
                units = units.min(*cell);
                *cell -= units;
            } else {
                units = 0;
            }
        }
        self.used -= units;
    }

    /// Gives back units we charged at `sent_at_ms` but the exchange did not; never
    /// below what the exchange itself reported.
    pub fn refund(&mut self, units: u64, sent_at_ms: i64) {
        let above_floor = self.used.saturating_sub(self.server_floor);
        self.uncharge(units.min(above_floor), sent_at_ms);
    }

    /// Raises the count to what the exchange reported; never lowers it.
    pub fn raise_to_server(&mut self, server_used: u64) {
        self.server_floor = self.server_floor.max(server_used);
        if server_used > self.used {
            let extra = server_used - self.used;
            if let Motion::Rolling { head, slots, .. } = &mut self.motion {
                let cell = &mut slots[head.rem_euclid(SLOTS as i64 + 1) as usize];
                *cell = cell.saturating_add(extra);
            }
            self.used = server_used;
        }
        self.peak = self.peak.max(self.used);
    }

    /// The exchange lowered its own count (first fill of an order).
    pub fn lower(&mut self, units: u64) {
        let mut left = units.min(self.used);
        if let Motion::Rolling { head, slots, .. } = &mut self.motion {
            // Newest slices first: they are the ones that would count longest.
            let mut slice = *head;
            let mut taken = 0;
            while left > taken && slice > *head - SLOTS as i64 - 1 {
                let cell = &mut slots[slice.rem_euclid(SLOTS as i64 + 1) as usize];
                let take = (*cell).min(left - taken);
                *cell -= take;
                taken += take;
                slice -= 1;
            }
            left = taken;
        }
        self.used -= left;
        self.server_floor = self.server_floor.saturating_sub(units);
    }

    /// Takes over the counts of `prev`, the same pool under its previous limit.
    pub fn adopt(&mut self, prev: &Pool) {
        self.window_start = prev.window_start;
        self.window_end = prev.window_end;
        self.used = prev.used;
        self.server_floor = prev.server_floor;
        self.peak = prev.peak;
        self.tail = prev.tail;
        self.motion = prev.motion.clone();
        self.lease = prev.lease;
        self.wanted = prev.wanted;
        self.wanted_full = prev.wanted_full;
        self.wanted_by_request = prev.wanted_by_request;
        self.refill_below = prev.refill_below;
    }
}

/// Sorted, de-duplicated pools: one per (scope, kind, window kind, interval), keeping
/// the smallest limit when the same window is announced twice.
pub(crate) fn normalise(mut limits: Vec<RateLimit>) -> Vec<RateLimit> {
    // By kind, then scope (so the windows a draw takes from are neighbours, see `Charges`),
    // then window length: the shortest window of a kind comes first, as status shows it.
    limits.sort_by_key(|l| (l.key(), l.interval.millis(), l.window, l.limit));
    limits.dedup_by_key(|l| (l.scope, l.kind, l.window, l.interval.millis()));
    limits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::limits::{IntervalUnit, PoolKind};

    #[test]
    fn market_cap_keeps_a_rounded_up_slice() {
        let p = Pool::new(
            RateLimit::new(PoolKind::RequestWeight, IntervalUnit::Minute, 1, 6000),
            0.05,
            0,
            0,
        );
        assert_eq!(p.market_cap, 5700);
        let small = Pool::new(
            RateLimit::new(PoolKind::Connections, IntervalUnit::Minute, 5, 10),
            0.05,
            0,
            0,
        );
        assert_eq!(small.market_cap, 9);
    }

    #[test]
    fn roll_resets_only_at_the_window_end() {
        let mut p = Pool::new(
            RateLimit::new(PoolKind::RequestWeight, IntervalUnit::Second, 10, 100),
            0.0,
            12_345,
            0,
        );
        assert_eq!((p.window_start, p.window_end), (10_000, 20_000));
        p.charge(40);
        p.roll(19_999);
        assert_eq!(p.used, 40);
        p.roll(20_000);
        assert_eq!((p.used, p.window_start), (0, 20_000));
        assert_eq!(p.peak, 40);
    }

    #[test]
    fn a_guard_rolls_late_and_carries_what_was_sent_near_the_boundary() {
        let mut p = Pool::new(
            RateLimit::new(PoolKind::RequestWeight, IntervalUnit::Second, 10, 100),
            0.0,
            10_150,
            100,
        );
        assert_eq!((p.window_start, p.window_end), (10_000, 20_100));
        p.charge_at(50, 12_000);
        p.charge_at(7, 19_950);
        // Our clock may be ahead: this may still land in the old window, so no roll yet.
        p.roll(20_050);
        p.charge_at(3, 20_050);
        assert_eq!(p.used, 60);
        p.roll(20_100);
        assert_eq!(
            (p.window_start, p.used),
            (20_000, 10),
            "only the boundary's units carry over"
        );
        // A window with no use in between: nothing can land in the new one.
        p.charge_at(4, 29_990);
        p.roll(45_000);
        assert_eq!((p.window_start, p.used), (40_000, 0));
    }

    #[test]
    fn refund_never_goes_below_the_server_count() {
        let mut p = Pool::new(
            RateLimit::new(PoolKind::RequestWeight, IntervalUnit::Minute, 1, 100),
            0.0,
            0,
            0,
        );
        p.charge(10);
        p.raise_to_server(12);
        p.refund(1, 0);
        assert_eq!(p.used, 12);
        p.charge(1);
        p.refund(1, 0);
        assert_eq!(p.used, 12);
    }

    #[test]
    fn duplicate_windows_keep_the_smaller_limit() {
        let l = normalise(vec![
            RateLimit::new(PoolKind::RequestWeight, IntervalUnit::Minute, 1, 6000),
            RateLimit::new(PoolKind::RequestWeight, IntervalUnit::Second, 60, 1200),
        ]);
        assert_eq!(
            l,
            vec![RateLimit::new(PoolKind::RequestWeight, IntervalUnit::Second, 60, 1200)]
        );
    }
}
