//! Time for the ledger: a monotonic clock for waiting, mapped onto exchange epoch ms.
//!
//! Built on `tokio::time::Instant`, so tests under tokio's paused time are exact.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// The system's wall time in epoch ms (0 if the system clock is set before 1970).
pub fn system_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub trait Clock: Send + Sync + 'static {
    /// Monotonic now, for sleeping.
    fn instant(&self) -> Instant;
    /// Local wall time in epoch ms (before any server offset).
    fn local_ms(&self) -> i64;
}

/// Wall time derived from tokio's clock: epoch ms at creation plus elapsed tokio time.
pub struct TokioClock {
    start: Instant,
    start_ms: i64,
}

impl TokioClock {
    pub fn new() -> Self {
        TokioClock::starting_at(system_ms())
    }

    /// A clock whose wall time reads `start_ms` now (tests pin the epoch with this).
    pub fn starting_at(start_ms: i64) -> Self {
        TokioClock {
            start: Instant::now(),
            start_ms,
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock::new()
    }
}

impl Clock for TokioClock {
    fn instant(&self) -> Instant {
        Instant::now()
    }

    fn local_ms(&self) -> i64 {
        self.start_ms + self.start.elapsed().as_millis() as i64
    }
}

/// Wall time read from the CPU's time-stamp counter: a few nanoseconds per read
/// instead of a clock system call, for the reservation hot path in production.
/// Does not follow tokio's paused time (tests use [`TokioClock`]). Its rate may
/// differ from the wall clock by a few parts per million; the exchange-time offset
/// the client resynchronises periodically absorbs that.
pub struct FastClock {
    clock: quanta::Clock,
    start: quanta::Instant,
    start_ms: i64,
}

impl FastClock {
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        let start = clock.now();
        FastClock {
            clock,
            start,
            start_ms: system_ms(),
        }
    }
}

impl Default for FastClock {
    fn default() -> Self {
        FastClock::new()
    }
}

impl Clock for FastClock {
    fn instant(&self) -> Instant {
        Instant::now()
    }

    fn local_ms(&self) -> i64 {
        self.start_ms + self.clock.now().duration_since(self.start).as_millis() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_clock_tracks_the_wall_clock() {
        let fast = FastClock::new();
        let before = fast.local_ms();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let after = fast.local_ms();
        assert!(after - before >= 29, "{before} -> {after}");
        assert!((after - system_ms()).abs() < 50, "fast {after} vs wall {}", system_ms());
    }
}
