//! The backoff state machine: normal → throttled (429) → banned (418).
//!
//! While either deadline lies in the future nothing at all is admitted; the two
//! are tracked apart so a 429 during a ban cannot shorten the ban.

use std::time::Duration;

use rand::Rng;

use super::{BackoffState, LedgerError, Verdict};

/// How much later than the exchange says a wait is taken to end. Our clock and the exchange's
/// disagree by the time-sync error and, over a long wait, by their rates (NTP alone slews a
/// clock by up to 500 ppm). A request even 1 ms early during a ban extends the ban, so a wait
/// ends late, never early: 100 ms plus 0.1 % of its length.
pub(crate) fn resume_margin_ms(wait_ms: i64) -> i64 {
    const FLOOR_MS: i64 = 100;
    FLOOR_MS.saturating_add(wait_ms.max(0) / 1_000)
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Backoff {
    pub throttled_until_ms: i64,
    pub banned_until_ms: i64,
    pub throttled_count: u64,
    pub banned_count: u64,
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

    /// The error a request refused at `now_ms` gets, if a backoff is in force.
    pub fn refusal(&self, now_ms: i64) -> Option<LedgerError> {
        self.active(now_ms).map(|(state, until_ms)| match state {
            BackoffState::Banned => LedgerError::Banned { until_ms },
            _ => LedgerError::Throttled { until_ms },
        })
    }

    /// Applies a verdict; returns whether it started or extended a backoff.
    /// Every wait gets the clock margin; jitter spreads the restart of a crowd of waiters.
    pub fn apply(&mut self, verdict: &Verdict, now_ms: i64, max_jitter: Duration) -> bool {
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
                let until = resume(now_ms.saturating_add(wait_ms));
                self.throttled_until_ms = self.throttled_until_ms.max(until);
                true
            }
            Verdict::Banned { until_ms } => {
                self.banned_count += 1;
                self.banned_until_ms = self.banned_until_ms.max(resume(*until_ms));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_during_a_ban_keeps_the_ban() {
        let mut b = Backoff::default();
        b.apply(&Verdict::Banned { until_ms: 10_000 }, 0, Duration::ZERO);
        b.apply(
            &Verdict::Throttled {
                retry_after: Duration::from_secs(1),
            },
            0,
            Duration::ZERO,
        );
        let end = 10_000 + resume_margin_ms(10_000);
        assert_eq!(end, 10_110, "100 ms and 0.1 % of the wait");
        assert_eq!(b.active(5_000), Some((BackoffState::Banned, end)));
        assert_eq!(b.active(10_000), Some((BackoffState::Banned, end)), "not a ms early");
        assert_eq!(b.active(end), None);
        assert_eq!((b.throttled_count, b.banned_count), (1, 1));
    }

    #[test]
    fn jitter_stays_within_its_bound() {
        for _ in 0..200 {
            let mut b = Backoff::default();
            b.apply(
                &Verdict::Throttled {
                    retry_after: Duration::from_secs(2),
                },
                1_000,
                Duration::from_millis(250),
            );
            let end = 3_000 + resume_margin_ms(2_000);
            assert!(
                (end..=end + 250).contains(&b.throttled_until_ms),
                "{}",
                b.throttled_until_ms
            );
        }
    }
}
