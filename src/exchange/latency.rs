//! Tick-to-order latency as the runner itself sees it: from the moment the client read the market
//! frame behind a callback to the moment the order that callback placed was written to the
//! exchange's socket. Recorded per strategy, over its most recent orders.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How many of the latest samples the figures cover.
pub const RECENT: usize = 1024;

/// The market event a call was made for: when it arrived, and where its order's latency goes.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub received: Instant,
    pub samples: Arc<LatencySamples>,
}

impl Trigger {
    /// The order for this event has reached `stage` (timed with the `stage-timing` feature).
    pub fn reached(&self, stage: super::stage_timing::Stage) {
        super::stage_timing::reached(stage, self.received);
    }

    /// The order is on the wire now.
    pub fn order_written(&self) {
        super::stage_timing::written(self.received);
        self.samples.record(self.received.elapsed());
    }
}

/// The latest [`RECENT`] samples of one strategy.
#[derive(Default)]
pub struct LatencySamples {
    recent: Mutex<VecDeque<Duration>>,
    /// Every sample also goes here once the strategy is named (the metrics' histogram).
    histogram: std::sync::OnceLock<metrics::Histogram>,
}

/// Percentiles of the recent samples (nearest rank).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LatencySummary {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl std::fmt::Debug for LatencySamples {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencySamples")
            .field("recent", &self.recent.lock().len())
            .finish_non_exhaustive()
    }
}

impl LatencySamples {
    /// Also records every later sample into `histogram` (set once).
    pub fn report_to(&self, histogram: metrics::Histogram) {
        let _ = self.histogram.set(histogram);
    }

    pub fn record(&self, latency: Duration) {
        if let Some(histogram) = self.histogram.get() {
            histogram.record(latency);
        }
        let mut recent = self.recent.lock();
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(latency);
    }

    /// `None` before the first sample.
    pub fn summary(&self) -> Option<LatencySummary> {
        let mut sorted: Vec<Duration> = self.recent.lock().iter().copied().collect();
        sorted.sort_unstable();
        let rank = |p: usize| sorted[(sorted.len() * p).div_ceil(100).saturating_sub(1)];
        let max = *sorted.last()?;
        Some(LatencySummary {
            count: sorted.len(),
            p50: rank(50),
            p99: rank(99),
            max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn percentiles_are_nearest_rank_over_the_recent_samples() {
        let samples = LatencySamples::default();
        assert_eq!(samples.summary(), None);
        for n in (1..=100).rev() {
            samples.record(us(n));
        }
        let summary = samples.summary().unwrap();
        assert_eq!(
            (summary.count, summary.p50, summary.p99, summary.max),
            (100, us(50), us(99), us(100))
        );
        // Only the latest RECENT count: a burst of fast orders pushes the old slow ones out.
        for _ in 0..RECENT {
            samples.record(us(3));
        }
        let summary = samples.summary().unwrap();
        assert_eq!((summary.count, summary.p99, summary.max), (RECENT, us(3), us(3)));
    }

    #[test]
    fn a_trigger_records_the_time_since_its_event_arrived() {
        let samples = Arc::new(LatencySamples::default());
        let received = Instant::now();
        let trigger = Trigger {
            received,
            samples: samples.clone(),
        };
        trigger.order_written();
        let summary = samples.summary().unwrap();
        assert_eq!(summary.count, 1);
        assert!(summary.max <= received.elapsed());
    }
}
