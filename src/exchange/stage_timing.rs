//! Where tick-to-order time goes, stage by stage. Built with the `stage-timing` feature, each stage
//! of the path from a market frame to the order it triggers notes how long after the frame was
//! read it was reached; when the order is written, the notes become one sample, and [`report`]
//! gives percentiles per stage (`cargo bench --bench e2e --features stage-timing -- tick_to_order`).
//! The notes are process-wide, for one strategy trading at a time (the benchmark's case). Without
//! the feature every call is empty and compiles away: the hot path pays nothing.

/// The stages, in the order an order passes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The strategy's thread finished what it was doing before (0 if that was before the frame was
    /// read): not a stage the order passes, but what a late "taken" waited for.
    PreviousWorkDone,
    /// The stream task parsed the frame.
    Parsed,
    /// ... and put its event in the strategies' inboxes.
    Routed,
    /// The strategy's thread took the event to deliver it to Lua.
    Taken,
    /// Lua called the exchange function (`orders.place`).
    Called,
    /// The call's arguments were read from Lua.
    ArgumentsRead,
    /// The order passed the symbol's filters.
    Validated,
    /// Its record was written to the journal.
    Journaled,
    /// The ledger granted its cost.
    Reserved,
    /// Signed and handed to the HTTP client, or written to the WebSocket.
    Written,
}

pub const STAGES: [Stage; 10] = [
    Stage::PreviousWorkDone,
    Stage::Parsed,
    Stage::Routed,
    Stage::Taken,
    Stage::Called,
    Stage::ArgumentsRead,
    Stage::Validated,
    Stage::Journaled,
    Stage::Reserved,
    Stage::Written,
];

/// One stage's percentiles over the orders timed, in µs after the frame was read.
#[derive(Debug, Clone, Copy)]
pub struct StageSummary {
    pub stage: Stage,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    /// The mean over the slowest 1 % of orders (by the time they were written): where the tail's
    /// time went, stage by stage, which per-stage percentiles cannot tell.
    pub slowest_us: f64,
}

// With the feature, `enabled` notes and reports; without it, `disabled` has the same functions,
// empty, so callers need no `cfg` and every call compiles away.
pub use imp::{reached, report, taken, work_done, written};

#[cfg(not(feature = "stage-timing"))]
use disabled as imp;
#[cfg(feature = "stage-timing")]
use enabled as imp;

#[cfg(feature = "stage-timing")]
mod enabled {
    use super::{Stage, StageSummary, STAGES};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;

    static LATEST: [AtomicU64; STAGES.len()] = [const { AtomicU64::new(0) }; STAGES.len()];
    static SAMPLES: parking_lot::Mutex<Vec<[u64; STAGES.len()]>> = parking_lot::Mutex::new(Vec::new());

    /// When the strategy's thread last finished a piece of work (nanoseconds after `EPOCH`).
    static WORK_DONE: AtomicU64 = AtomicU64::new(0);
    static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

    /// `stage` was reached, `since` the frame was read.
    pub fn reached(stage: Stage, since: Instant) {
        LATEST[stage as usize].store(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// The strategy's thread finished a piece of work (an event, a run of events, a control message).
    pub fn work_done() {
        WORK_DONE.store(EPOCH.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// The strategy's thread took the event whose frame was read at `since` (see [`Stage::Taken`]
    /// and [`Stage::PreviousWorkDone`]).
    pub fn taken(since: Instant) {
        reached(Stage::Taken, since);
        let done = *EPOCH + std::time::Duration::from_nanos(WORK_DONE.load(Ordering::Relaxed));
        let after_frame = done.saturating_duration_since(since).as_nanos() as u64;
        LATEST[Stage::PreviousWorkDone as usize].store(after_frame, Ordering::Relaxed);
    }

    /// The order is written: the stages noted since its frame become one sample.
    pub fn written(since: Instant) {
        reached(Stage::Written, since);
        let sample = std::array::from_fn(|i| LATEST[i].load(Ordering::Relaxed));
        SAMPLES.lock().push(sample);
    }

    /// Percentiles per stage over the samples taken since the last report (none without the feature).
    pub fn report() -> Vec<StageSummary> {
        let samples = std::mem::take(&mut *SAMPLES.lock());
        if samples.is_empty() {
            return Vec::new();
        }
        let n = samples.len();
        let written = Stage::Written as usize;
        let mut by_total: Vec<&[u64; STAGES.len()]> = samples.iter().collect();
        by_total.sort_unstable_by_key(|s| std::cmp::Reverse(s[written]));
        let slowest = &by_total[..n.div_ceil(100)];
        STAGES
            .iter()
            .map(|&stage| {
                let mut times: Vec<u64> = samples.iter().map(|s| s[stage as usize]).collect();
                times.sort_unstable();
                let rank = |p: usize| times[(n * p).div_ceil(100).saturating_sub(1)] as f64 / 1000.0;
                StageSummary {
                    stage,
                    p50_us: rank(50),
                    p90_us: rank(90),
                    p99_us: rank(99),
                    slowest_us: slowest.iter().map(|s| s[stage as usize] as f64).sum::<f64>()
                        / slowest.len() as f64
                        / 1000.0,
                }
            })
            .collect()
    }
}

#[cfg(not(feature = "stage-timing"))]
mod disabled {
    use super::{Stage, StageSummary};
    use std::time::Instant;

    #[inline(always)]
    pub fn reached(_: Stage, _: Instant) {}

    #[inline(always)]
    pub fn work_done() {}

    #[inline(always)]
    pub fn taken(_: Instant) {}

    #[inline(always)]
    pub fn written(_: Instant) {}

    pub fn report() -> Vec<StageSummary> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn each_order_written_is_one_sample_of_every_stage_with_the_feature_and_nothing_without() {
        let since = Instant::now();
        for stage in STAGES {
            reached(stage, since);
        }
        written(since);
        let report = report();
        if cfg!(feature = "stage-timing") {
            assert_eq!(report.len(), STAGES.len());
            // Reached in order, so no stage is noted before the one it follows.
            assert!(
                report
                    .windows(2)
                    .all(|w| w[0].p50_us <= w[1].p50_us && w[0].slowest_us <= w[1].slowest_us),
                "{report:?}"
            );
            assert!(super::report().is_empty(), "a report takes the samples");
        } else {
            assert!(report.is_empty(), "{report:?}");
        }
    }
}
