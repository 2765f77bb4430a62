//! Local order books kept in sync by the documented procedure: buffer diff events,
//! fetch a REST snapshot, drop events it already covers, require the first kept
//! event to straddle `lastUpdateId + 1`, then require `U == previous u + 1`;
//! any gap throws the book away and starts over. Pure state, no I/O.

use std::collections::BTreeMap;
use std::str::FromStr;

use rust_decimal::Decimal;

use crate::exchange::grid::to_f64;
use crate::exchange::types::Depth;

use crate::exchange::binance::wire::{DepthSnapshot, DepthUpdateEvent};

/// Diff events kept while waiting for a snapshot; older ones are dropped beyond this
/// (the snapshot will be newer than them anyway, or the sync restarts).
const MAX_BUFFERED: usize = 4096;

/// A depth diff event with exact decimals.
#[derive(Debug, Clone, PartialEq)]
pub struct DepthDiff {
    pub first_update_id: u64,
    pub last_update_id: u64,
    pub bids: Vec<(Decimal, Decimal)>,
    pub asks: Vec<(Decimal, Decimal)>,
}

impl DepthDiff {
    /// `None` when a level is not a decimal pair.
    pub fn from_wire(event: &DepthUpdateEvent<'_>) -> Option<Self> {
        let levels = |side: &[[&str; 2]]| -> Option<Vec<(Decimal, Decimal)>> {
            side.iter()
                .map(|[p, q]| Some((Decimal::from_str(p).ok()?, Decimal::from_str(q).ok()?)))
                .collect()
        };
        Some(DepthDiff {
            first_update_id: event.first_update_id,
            last_update_id: event.u,
            bids: levels(&event.b)?,
            asks: levels(&event.a)?,
        })
    }
}

/// Bids (best first) and asks (best first) with exact decimals.
pub type ExactLevels = (Vec<(Decimal, Decimal)>, Vec<(Decimal, Decimal)>);

/// What happened to a diff event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffOutcome {
    /// Held until a snapshot arrives; `needs_snapshot` when none has been asked for yet.
    Buffered { needs_snapshot: bool },
    /// Already covered by the book; ignored.
    Stale,
    /// Applied: the book changed.
    Applied,
    /// A sequence gap: the book was discarded; fetch a new snapshot.
    Gap,
}

/// What happened to a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotOutcome {
    /// The book is live.
    Synced,
    /// The snapshot is older than the buffered events (or they do not connect): fetch again.
    Refetch,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Levels {
    bids: BTreeMap<Decimal, Decimal>,
    asks: BTreeMap<Decimal, Decimal>,
}

impl Levels {
    fn apply(&mut self, diff: &DepthDiff) {
        for (side, updates) in [(&mut self.bids, &diff.bids), (&mut self.asks, &diff.asks)] {
            for &(price, qty) in updates {
                if qty.is_zero() {
                    side.remove(&price);
                } else {
                    side.insert(price, qty);
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Buffering {
        buffer: Vec<DepthDiff>,
        snapshot_requested: bool,
    },
    Synced {
        levels: Levels,
        last_update_id: u64,
        /// The first event after the snapshot straddles it rather than following it exactly.
        awaiting_first: bool,
    },
}

/// One symbol's local book and its synchronisation state.
#[derive(Debug, Clone, PartialEq)]
pub struct BookSync {
    symbol: String,
    state: State,
}

impl BookSync {
    pub fn new(symbol: impl Into<String>) -> Self {
        BookSync {
            symbol: symbol.into(),
            state: State::Buffering {
                buffer: Vec::new(),
                snapshot_requested: false,
            },
        }
    }

    #[cfg(test)]
    pub fn is_synced(&self) -> bool {
        matches!(self.state, State::Synced { .. })
    }

    /// Throws the book away (e.g. the stream reconnected and events were missed).
    pub fn reset(&mut self) {
        self.state = State::Buffering {
            buffer: Vec::new(),
            snapshot_requested: false,
        };
    }

    /// Marks that a snapshot fetch is under way, so only one is asked for.
    pub fn snapshot_requested(&mut self) {
        if let State::Buffering { snapshot_requested, .. } = &mut self.state {
            *snapshot_requested = true;
        }
    }

    /// Marks that the snapshot fetch failed, so the next event asks again.
    pub fn snapshot_failed(&mut self) {
        if let State::Buffering { snapshot_requested, .. } = &mut self.state {
            *snapshot_requested = false;
        }
    }

    pub fn on_diff(&mut self, diff: DepthDiff) -> DiffOutcome {
        match &mut self.state {
            State::Buffering {
                buffer,
                snapshot_requested,
            } => {
                if buffer.len() >= MAX_BUFFERED {
                    buffer.remove(0);
                }
                buffer.push(diff);
                DiffOutcome::Buffered {
                    needs_snapshot: !*snapshot_requested,
                }
            }
            State::Synced {
                levels,
                last_update_id,
                awaiting_first,
            } => {
                if diff.last_update_id <= *last_update_id {
                    return DiffOutcome::Stale;
                }
                let connects = if *awaiting_first {
                    diff.first_update_id <= *last_update_id + 1
                } else {
                    diff.first_update_id == *last_update_id + 1
                };
                if !connects {
                    self.state = State::Buffering {
                        buffer: vec![diff],
                        snapshot_requested: false,
                    };
                    return DiffOutcome::Gap;
                }
                levels.apply(&diff);
                *last_update_id = diff.last_update_id;
                *awaiting_first = false;
                DiffOutcome::Applied
            }
        }
    }

    pub fn on_snapshot(&mut self, snapshot: &DepthSnapshot) -> SnapshotOutcome {
        let State::Buffering { buffer, .. } = &mut self.state else {
            // A late snapshot for a book that is already live: the live book is newer.
            return SnapshotOutcome::Synced;
        };
        let snapshot_id = snapshot.last_update_id;
        if buffer
            .first()
            .is_some_and(|first| snapshot_id + 1 < first.first_update_id)
        {
            self.snapshot_failed();
            return SnapshotOutcome::Refetch;
        }
        let mut levels = Levels::default();
        levels.bids.extend(
            snapshot
                .bids
                .iter()
                .map(|[p, q]| (*p, *q))
                .filter(|(_, q)| !q.is_zero()),
        );
        levels.asks.extend(
            snapshot
                .asks
                .iter()
                .map(|[p, q]| (*p, *q))
                .filter(|(_, q)| !q.is_zero()),
        );
        let buffered = std::mem::take(buffer);
        self.state = State::Synced {
            levels,
            last_update_id: snapshot_id,
            awaiting_first: true,
        };
        let mut pending = buffered.into_iter();
        while let Some(diff) = pending.next() {
            if self.on_diff(diff) == DiffOutcome::Gap {
                // The buffered events do not connect to this snapshot: keep them and start over.
                if let State::Buffering { buffer, .. } = &mut self.state {
                    buffer.extend(pending);
                }
                return SnapshotOutcome::Refetch;
            }
        }
        SnapshotOutcome::Synced
    }

    /// The top `levels` of each side, or `None` while not in sync.
    pub fn depth(&self, levels: usize) -> Option<Depth> {
        let State::Synced {
            levels: book,
            last_update_id,
            ..
        } = &self.state
        else {
            return None;
        };
        let level = |(p, q): (&Decimal, &Decimal)| (to_f64(*p), to_f64(*q));
        Some(Depth {
            symbol: self.symbol.clone(),
            update_id: *last_update_id,
            bids: book.bids.iter().rev().take(levels).map(level).collect(),
            asks: book.asks.iter().take(levels).map(level).collect(),
        })
    }

    /// The top `levels` with exact decimals (for comparing against a snapshot).
    pub fn exact_levels(&self, levels: usize) -> Option<ExactLevels> {
        let State::Synced { levels: book, .. } = &self.state else {
            return None;
        };
        Some((
            book.bids.iter().rev().take(levels).map(|(p, q)| (*p, *q)).collect(),
            book.asks.iter().take(levels).map(|(p, q)| (*p, *q)).collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn diff(first: u64, last: u64, bids: &[(&str, &str)], asks: &[(&str, &str)]) -> DepthDiff {
        let conv = |v: &[(&str, &str)]| v.iter().map(|(p, q)| (d(p), d(q))).collect();
        DepthDiff {
            first_update_id: first,
            last_update_id: last,
            bids: conv(bids),
            asks: conv(asks),
        }
    }

    fn snapshot(id: u64) -> DepthSnapshot {
        DepthSnapshot {
            last_update_id: id,
            bids: vec![[d("100"), d("1")], [d("99"), d("2")]],
            asks: vec![[d("101"), d("1")], [d("102"), d("3")]],
        }
    }

    #[test]
    fn buffers_then_syncs_dropping_stale_events() {
        let mut book = BookSync::new("BTCUSDT");
        assert_eq!(
            book.on_diff(diff(5, 8, &[("100", "9")], &[])),
            DiffOutcome::Buffered { needs_snapshot: true }
        );
        book.snapshot_requested();
        assert_eq!(
            book.on_diff(diff(9, 11, &[("99", "0")], &[("101", "4")])),
            DiffOutcome::Buffered { needs_snapshot: false }
        );
        assert_eq!(
            book.on_diff(diff(12, 12, &[], &[("103", "1")])),
            DiffOutcome::Buffered { needs_snapshot: false }
        );
        assert!(book.depth(5).is_none(), "no book before the snapshot");

        // Snapshot at 10: event 5..8 is stale, 9..11 straddles 11, then 12 follows.
        assert_eq!(book.on_snapshot(&snapshot(10)), SnapshotOutcome::Synced);
        let depth = book.depth(10).unwrap();
        assert_eq!(depth.update_id, 12);
        assert_eq!(
            depth.bids,
            vec![(100.0, 1.0)],
            "99 removed by a zero quantity; the stale 100→9 ignored"
        );
        assert_eq!(depth.asks, vec![(101.0, 4.0), (102.0, 3.0), (103.0, 1.0)]);

        assert_eq!(book.on_diff(diff(11, 12, &[("1", "1")], &[])), DiffOutcome::Stale);
        assert_eq!(book.on_diff(diff(13, 14, &[("100.5", "2")], &[])), DiffOutcome::Applied);
        assert_eq!(book.depth(1).unwrap().bids, vec![(100.5, 2.0)]);
    }

    #[test]
    fn a_gap_discards_the_book_and_resyncs() {
        let mut book = BookSync::new("BTCUSDT");
        book.on_diff(diff(11, 11, &[], &[]));
        assert_eq!(book.on_snapshot(&snapshot(10)), SnapshotOutcome::Synced);
        assert_eq!(book.on_diff(diff(12, 13, &[], &[])), DiffOutcome::Applied);
        // 14 is missing.
        assert_eq!(book.on_diff(diff(15, 16, &[("98", "1")], &[])), DiffOutcome::Gap);
        assert!(book.depth(5).is_none(), "out of sync after a gap");
        assert_eq!(
            book.on_diff(diff(17, 17, &[], &[])),
            DiffOutcome::Buffered { needs_snapshot: true }
        );
        // A snapshot taken at 16 resumes from the buffered 17.
        assert_eq!(book.on_snapshot(&snapshot(16)), SnapshotOutcome::Synced);
        assert_eq!(book.depth(5).unwrap().update_id, 17);
    }

    #[test]
    fn a_snapshot_older_than_the_buffer_is_refetched() {
        let mut book = BookSync::new("BTCUSDT");
        book.on_diff(diff(20, 22, &[], &[]));
        book.snapshot_requested();
        assert_eq!(book.on_snapshot(&snapshot(10)), SnapshotOutcome::Refetch);
        assert!(!book.is_synced());
        // The next event asks for a new snapshot.
        assert_eq!(
            book.on_diff(diff(23, 23, &[], &[])),
            DiffOutcome::Buffered { needs_snapshot: true }
        );
        assert_eq!(book.on_snapshot(&snapshot(21)), SnapshotOutcome::Synced);
        assert_eq!(book.depth(1).unwrap().update_id, 23);
    }

    #[test]
    fn first_event_must_straddle_the_snapshot() {
        let mut book = BookSync::new("BTCUSDT");
        assert_eq!(book.on_snapshot(&snapshot(10)), SnapshotOutcome::Synced);
        // Nothing buffered: the next event must contain 11.
        assert_eq!(book.on_diff(diff(13, 14, &[], &[])), DiffOutcome::Gap);
        let mut book = BookSync::new("BTCUSDT");
        assert_eq!(book.on_snapshot(&snapshot(10)), SnapshotOutcome::Synced);
        assert_eq!(book.on_diff(diff(9, 12, &[], &[])), DiffOutcome::Applied);
    }

    #[test]
    fn reset_drops_the_book() {
        let mut book = BookSync::new("BTCUSDT");
        book.on_snapshot(&snapshot(10));
        assert!(book.is_synced());
        book.reset();
        assert!(book.depth(1).is_none());
    }
}
