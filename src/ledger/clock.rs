//! Time for the ledger: a monotonic clock for waiting, mapped onto exchange epoch ms.
//!
//! Built on `tokio::time::Instant`, so tests under tokio's paused time are exact.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

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
        let start_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        TokioClock::starting_at(start_ms)
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
