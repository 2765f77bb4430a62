//! Pools and their fixed, exchange-aligned windows.
//!
//! A pool counts one kind of unit (weight, orders, raw requests, connections) in
//! the current window of its interval. Windows only move forward: the ledger's
//! notion of "now" is monotonic, so a late reader can never roll a window back
//! and wipe a count the exchange still holds.

use super::limits::{PoolKind, RateLimit};
use super::{Cost, Lane};

/// Units of `kind` that `cost` draws.
#[inline]
pub(crate) fn amount(kind: PoolKind, cost: &Cost) -> u64 {
    u64::from(match kind {
        PoolKind::RequestWeight => cost.weight,
        PoolKind::Orders => cost.orders,
        PoolKind::RawRequests => cost.raw,
        PoolKind::Connections => cost.connections,
    })
}

#[derive(Debug, Clone)]
pub(crate) struct Pool {
    pub limit: RateLimit,
    /// What the market-data lane may fill up to: the limit less the headroom.
    pub market_cap: u64,
    pub window_start: i64,
    pub window_end: i64,
    pub used: u64,
    /// Highest count the exchange itself reported in this window. Counts only
    /// grow within a window (fills aside), so a credit never goes below it.
    pub server_floor: u64,
    pub peak: u64,
    /// How uncertain our view of the exchange's clock is (ms), offset error and transit
    /// included: a window rolls this long after its nominal end, and what was sent this
    /// close to the boundary on either side is carried into the next window, since the
    /// exchange may count it in either.
    pub guard_ms: i64,
    /// Units charged within the guard of the current window's nominal end.
    pub tail: u64,
}

impl Pool {
    pub fn new(limit: RateLimit, market_headroom: f64, now_ms: i64, guard_ms: i64) -> Self {
        // Round the reserved slice up, so even small pools keep room for a cancel.
        let reserved = (limit.limit as f64 * market_headroom).ceil() as u64;
        let mut pool = Pool {
            limit,
            market_cap: limit.limit.saturating_sub(reserved),
            window_start: 0,
            window_end: 0,
            used: 0,
            server_floor: 0,
            peak: 0,
            guard_ms: guard_ms.max(0),
            tail: 0,
        };
        pool.enter(pool.start_at(now_ms));
        pool
    }

    /// Start of the window that `now_ms` belongs to, the guard taken into account.
    #[inline]
    pub fn start_at(&self, now_ms: i64) -> i64 {
        self.limit.interval.window_start(now_ms - self.guard_ms)
    }

    /// Makes the window starting at `start` current; it rolls at its nominal end plus the guard.
    #[inline]
    pub fn enter(&mut self, start: i64) {
        self.window_start = start;
        self.window_end = start + self.limit.interval.millis() + self.guard_ms;
    }

    /// Moves to the window containing `now_ms` if the current one has ended.
    #[inline]
    pub fn roll(&mut self, now_ms: i64) {
        if now_ms >= self.window_end {
            let start = self.start_at(now_ms);
            let follows = start == self.window_end - self.guard_ms;
            self.enter(start);
            self.used = if follows { self.tail } else { 0 };
            self.tail = 0;
            self.server_floor = 0;
        }
    }

    /// Charges units sent at `now_ms`; near the boundary they also count for the next window.
    #[inline]
    pub fn charge_at(&mut self, units: u64, now_ms: i64) {
        if now_ms >= self.window_end - 2 * self.guard_ms {
            self.tail = self.tail.saturating_add(units);
        }
        self.charge(units);
    }

    /// Whether an instant (exchange ms) falls in the current window.
    #[inline]
    pub fn is_current(&self, at_ms: i64) -> bool {
        at_ms >= self.window_start && at_ms < self.window_end
    }

    #[inline]
    pub fn cap(&self, lane: Lane) -> u64 {
        match lane {
            Lane::MarketData => self.market_cap,
            Lane::Cancel | Lane::Order => self.limit.limit,
        }
    }

    #[inline]
    pub fn charge(&mut self, units: u64) {
        self.used = self.used.saturating_add(units);
        self.peak = self.peak.max(self.used);
    }

    /// Gives back units we charged but the exchange did not.
    pub fn refund(&mut self, units: u64) {
        self.used = self.used.saturating_sub(units).max(self.server_floor);
    }

    /// Raises the count to what the exchange reported; never lowers it.
    pub fn raise_to_server(&mut self, server_used: u64) {
        self.server_floor = self.server_floor.max(server_used);
        self.used = self.used.max(server_used);
        self.peak = self.peak.max(self.used);
    }

    /// The exchange lowered its own count (first fill of an order).
    pub fn lower(&mut self, units: u64) {
        self.used = self.used.saturating_sub(units);
        self.server_floor = self.server_floor.saturating_sub(units);
    }
}

/// Sorted, de-duplicated pools: one per (kind, interval), keeping the smallest limit
/// when the same window is announced twice.
pub(crate) fn normalise(mut limits: Vec<RateLimit>) -> Vec<RateLimit> {
    limits.sort_by_key(|l| (l.kind, l.interval.millis(), l.limit));
    limits.dedup_by_key(|l| (l.kind, l.interval.millis()));
    limits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::limits::IntervalUnit;

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
        p.refund(1);
        assert_eq!(p.used, 12);
        p.charge(1);
        p.refund(1);
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
