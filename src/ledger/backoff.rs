//! The backoff state machine, per scope: normal → throttled (429) → banned (418).
//!
//! An exchange bans by what it counts (Binance: the client IP), so a back-off is kept per
//! scope: while one is in force, nothing that draws on a pool of that scope is admitted, and
//! everything else goes on. Throttle and ban are tracked apart so a 429 during a ban cannot
//! shorten the ban.

use std::time::Duration;

use rand::Rng;

use super::limits::Scope;
use super::{BackoffState, Cost, LedgerError, Verdict};

/// How much later than the exchange says a wait is taken to end. Our clock and the exchange's
/// disagree by the time-sync error and, over a long wait, by their rates (NTP alone slews a
/// clock by up to 500 ppm). A request even 1 ms early during a ban extends the ban, so a wait
/// ends late, never early: 100 ms plus 0.1 % of its length.
pub(crate) fn resume_margin_ms(wait_ms: i64) -> i64 {
    const FLOOR_MS: i64 = 100;
    FLOOR_MS.saturating_add(wait_ms.max(0) / 1_000)
}

/// One scope's back-off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub throttled_until_ms: i64,
    pub banned_until_ms: i64,
}

impl Backoff {
    /// The state in force at `now_ms` and the exchange time it ends.
    #[inline]
    pub fn active(&self, now_ms: i64) -> Option<(BackoffState, i64)> {
        let resume = self.throttled_until_ms.max(self.banned_until_ms);
        if resume <= now_ms {
            None
        } else if self.banned_until_ms > now_ms {
            Some((BackoffState::Banned, resume))
        } else {
            Some((BackoffState::Throttled, resume))
        }
    }

    /// Extends the deadline of `state` to `until_ms`; returns whether it moved.
    fn extend(&mut self, state: BackoffState, until_ms: i64) -> bool {
        let known = match state {
            BackoffState::Banned => &mut self.banned_until_ms,
            BackoffState::Throttled | BackoffState::Normal => &mut self.throttled_until_ms,
        };
        let later = until_ms > *known;
        *known = (*known).max(until_ms);
        later
    }
}

/// A back-off in force, for status and for the other processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopeBackoff {
    pub scope: Scope,
    pub state: BackoffState,
    pub resume_at_ms: i64,
}

/// Every scope's back-off, and how many 429s and 418s were received.
#[derive(Debug, Clone, Default)]
pub(crate) struct Backoffs {
    /// The latest end of any back-off: none is in force at or after it. A reservation checks
    /// only this while no back-off is in force.
    latest_end_ms: i64,
    /// Few entries (one per scope ever backed off): a list beats a map.
    scopes: Vec<(Scope, Backoff)>,
    pub throttled_count: u64,
    pub banned_count: u64,
}

impl Backoffs {
    /// Whether some scope may be backed off at `now_ms` (one comparison).
    #[inline]
    pub fn any(&self, now_ms: i64) -> bool {
        self.latest_end_ms > now_ms
    }

    /// The back-off in force at `now_ms` on any scope `cost` draws on: the most severe state,
    /// and when the last of them ends.
    #[inline]
    pub fn blocking(&self, cost: &Cost, now_ms: i64) -> Option<(BackoffState, i64)> {
        if !self.any(now_ms) {
            return None;
        }
        self.blocking_scopes(cost, now_ms)
    }

    #[cold]
    fn blocking_scopes(&self, cost: &Cost, now_ms: i64) -> Option<(BackoffState, i64)> {
        let mut found: Option<(BackoffState, i64)> = None;
        for (scope, backoff) in &self.scopes {
            if !cost.draws().iter().any(|d| d.scope() == *scope) {
                continue;
            }
            if let Some((state, resume)) = backoff.active(now_ms) {
                found = Some(match found {
                    None => (state, resume),
                    Some((s, r)) => (severest(s, state), r.max(resume)),
                });
            }
        }
        found
    }

    /// The error a request drawing on `cost`'s pools gets at `now_ms`, if a back-off stops it.
    pub fn refusal(&self, cost: &Cost, now_ms: i64) -> Option<LedgerError> {
        self.blocking(cost, now_ms)
            .map(|(state, until_ms)| LedgerError::backed_off(state, until_ms))
    }

    /// `scope`'s back-off in force at `now_ms`.
    pub fn of_scope(&self, scope: Scope, now_ms: i64) -> Option<(BackoffState, i64)> {
        let (_, backoff) = self.scopes.iter().find(|(s, _)| *s == scope)?;
        backoff.active(now_ms)
    }

    /// Every back-off in force at `now_ms`, by scope.
    pub fn in_force(&self, now_ms: i64) -> impl Iterator<Item = ScopeBackoff> + '_ {
        self.scopes.iter().filter_map(move |(scope, b)| {
            b.active(now_ms).map(|(state, resume_at_ms)| ScopeBackoff {
                scope: *scope,
                state,
                resume_at_ms,
            })
        })
    }

    /// The most severe back-off in force anywhere, and when the last one ends (for a summary).
    pub fn overall(&self, now_ms: i64) -> Option<(BackoffState, i64)> {
        if !self.any(now_ms) {
            return None;
        }
        self.in_force(now_ms).fold(None, |found, b| {
            Some(match found {
                None => (b.state, b.resume_at_ms),
                Some((s, r)) => (severest(s, b.state), r.max(b.resume_at_ms)),
            })
        })
    }

    /// `scope`'s back-off, to fill in (created empty).
    fn of(&mut self, scope: Scope) -> &mut Backoff {
        let i = match self.scopes.iter().position(|(s, _)| *s == scope) {
            Some(i) => i,
            None => {
                self.scopes.push((scope, Backoff::default()));
                self.scopes.len() - 1
            }
        };
        &mut self.scopes[i].1
    }

    /// Extends `scope`'s back-off in `state` to `until_ms` as given (another process's, or a
    /// restored one: the margin is already in it); returns whether it moved.
    pub fn join(&mut self, scope: Scope, state: BackoffState, until_ms: i64) -> bool {
        let moved = self.of(scope).extend(state, until_ms);
        self.latest_end_ms = self.latest_end_ms.max(until_ms);
        moved
    }

    /// Applies a verdict on `scope`; returns whether it started or extended a back-off.
    /// Every wait gets the clock margin; jitter spreads the restart of a crowd of waiters.
    pub fn apply(&mut self, scope: Scope, verdict: &Verdict, now_ms: i64, max_jitter: Duration) -> bool {
        let jitter_ms = match max_jitter.as_millis() as i64 {
            0 => 0,
            max => rand::rng().random_range(0..=max),
        };
        let resume = |exchange_end_ms: i64| {
            let margin = resume_margin_ms(exchange_end_ms.saturating_sub(now_ms));
            exchange_end_ms.saturating_add(margin).saturating_add(jitter_ms)
        };
        match verdict {
            Verdict::Ok => false,
            Verdict::Throttled { retry_after } => {
                self.throttled_count += 1;
                let wait_ms = i64::try_from(retry_after.as_millis()).unwrap_or(i64::MAX / 4);
                self.join(scope, BackoffState::Throttled, resume(now_ms.saturating_add(wait_ms)));
                true
            }
            Verdict::Banned { until_ms } => {
                self.banned_count += 1;
                self.join(scope, BackoffState::Banned, resume(*until_ms));
                true
            }
        }
    }

    /// Each scope's deadlines, for the state file.
    pub fn saved(&self) -> impl Iterator<Item = (Scope, Backoff)> + '_ {
        self.scopes.iter().copied()
    }
}

fn severest(a: BackoffState, b: BackoffState) -> BackoffState {
    if a == BackoffState::Banned || b == BackoffState::Banned {
        BackoffState::Banned
    } else if a == BackoffState::Throttled || b == BackoffState::Throttled {
        BackoffState::Throttled
    } else {
        BackoffState::Normal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::PoolKind;

    const A: Scope = Scope::Ip(0);
    const B: Scope = Scope::Ip(1);

    fn on(scope: Scope) -> Cost {
        Cost::new().with_scoped(scope, PoolKind::RequestWeight, 1)
    }

    #[test]
    fn a_throttle_during_a_ban_keeps_the_ban() {
        let mut b = Backoffs::default();
        b.apply(A, &Verdict::Banned { until_ms: 10_000 }, 0, Duration::ZERO);
        b.apply(
            A,
            &Verdict::Throttled {
                retry_after: Duration::from_secs(1),
            },
            0,
            Duration::ZERO,
        );
        let end = 10_000 + resume_margin_ms(10_000);
        assert_eq!(end, 10_110, "100 ms and 0.1 % of the wait");
        assert_eq!(b.blocking(&on(A), 5_000), Some((BackoffState::Banned, end)));
        assert_eq!(
            b.blocking(&on(A), 10_000),
            Some((BackoffState::Banned, end)),
            "not a ms early"
        );
        assert_eq!(b.blocking(&on(A), end), None);
        assert!(!b.any(end));
        assert_eq!((b.throttled_count, b.banned_count), (1, 1));
    }

    #[test]
    fn a_backoff_stops_only_what_draws_on_its_scope() {
        let mut b = Backoffs::default();
        let throttled = Verdict::Throttled {
            retry_after: Duration::from_secs(2),
        };
        b.apply(A, &throttled, 0, Duration::ZERO);
        let end = 2_000 + resume_margin_ms(2_000);
        assert!(b.any(0));
        assert_eq!(b.blocking(&on(B), 0), None);
        assert_eq!(b.blocking(&on(A), 0), Some((BackoffState::Throttled, end)));
        // An order sent from A draws on A's weight and the account's orders: stopped.
        let order_from_a = on(A).with_scoped(Scope::Account(0), PoolKind::Orders, 1);
        assert_eq!(
            b.refusal(&order_from_a, 0),
            Some(LedgerError::Throttled { until_ms: end })
        );
        let order_from_b = on(B).with_scoped(Scope::Account(0), PoolKind::Orders, 1);
        assert_eq!(b.refusal(&order_from_b, 0), None);
        // A ban on B as well: a cost drawing on both waits for the later end, as banned.
        b.apply(B, &Verdict::Banned { until_ms: 5_000 }, 0, Duration::ZERO);
        let both = on(A).with_scoped(B, PoolKind::RawRequests, 1);
        let ban_end = 5_000 + resume_margin_ms(5_000);
        assert_eq!(b.blocking(&both, 0), Some((BackoffState::Banned, ban_end)));
        assert_eq!(b.overall(0), Some((BackoffState::Banned, ban_end)));
        assert_eq!(b.in_force(end).map(|f| f.scope).collect::<Vec<_>>(), vec![B]);
    }

    #[test]
    fn jitter_stays_within_its_bound() {
        for _ in 0..200 {
            let mut b = Backoffs::default();
            b.apply(
                A,
                &Verdict::Throttled {
                    retry_after: Duration::from_secs(2),
                },
                1_000,
                Duration::from_millis(250),
            );
            let end = 3_000 + resume_margin_ms(2_000);
            let (_, resume) = b.blocking(&on(A), 1_000).unwrap();
            assert!((end..=end + 250).contains(&resume), "{resume}");
        }
    }
}
