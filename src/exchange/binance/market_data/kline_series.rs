//! Candles kept from the kline streams, so that `market.klines` can be answered without a request.
//!
//! A series starts unseeded: a stream delivers only the current candle, so the history comes from one
//! REST answer (any `klines` request the process makes for that symbol and interval). From then on
//! every stream update replaces the open candle or appends the next one. Anything that could leave a
//! hole — a reconnect, a candle skipped — unseeds the series until the next REST answer.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::exchange::types::Kline;

/// The most candles one series keeps (the exchange's largest `limit`).
pub const MAX_CANDLES: usize = 1000;
/// Stream updates kept while unseeded, to merge with the REST answer that seeds the series.
const PENDING: usize = 4;

#[derive(Default)]
struct Series {
    candles: VecDeque<Kline>,
    seeded: bool,
    /// Stream candles received while unseeded (newest last).
    pending: VecDeque<Kline>,
}

impl Series {
    fn unseed(&mut self) {
        self.seeded = false;
        self.candles.clear();
        self.pending.clear();
    }

    fn update(&mut self, kline: Kline) {
        if !self.seeded {
            if let Some(same) = self.pending.iter_mut().find(|k| k.open_time == kline.open_time) {
                *same = kline;
            } else {
                self.pending.push_back(kline);
                if self.pending.len() > PENDING {
                    self.pending.pop_front();
                }
            }
            return;
        }
        match self.candles.back_mut() {
            Some(last) if last.open_time == kline.open_time => *last = kline,
            Some(last) if kline.open_time < last.open_time => {}
            Some(last) if kline.open_time == last.close_time + 1 => self.push(kline),
            // A candle was missed: the history has a hole until the next REST answer.
            _ => self.unseed(),
        }
    }

    fn push(&mut self, kline: Kline) {
        self.candles.push_back(kline);
        if self.candles.len() > MAX_CANDLES {
            self.candles.pop_front();
        }
    }

    /// Takes a REST answer (oldest first, ending with the current candle) as the history; stream
    /// candles of the same open time replace its rows when they are at least as far along (a candle's
    /// volume only grows), newer ones follow it.
    fn seed(&mut self, rows: &[Kline]) {
        let Some(first) = rows.first() else {
            return;
        };
        let mut candles: VecDeque<Kline> = rows.iter().copied().collect();
        let pending = std::mem::take(&mut self.pending);
        for kline in pending.into_iter().filter(|k| k.open_time >= first.open_time) {
            match candles.iter_mut().find(|k| k.open_time == kline.open_time) {
                Some(row) if kline.volume >= row.volume => *row = kline,
                Some(_) => {}
                None => match candles.back() {
                    Some(last) if kline.open_time == last.close_time + 1 => candles.push_back(kline),
                    _ => {}
                },
            }
        }
        while candles.len() > MAX_CANDLES {
            candles.pop_front();
        }
        self.candles = candles;
        self.seeded = true;
    }
}

/// A series' key: symbol and interval.
type SeriesKey = (Arc<str>, Arc<str>);

/// Every tracked series, by symbol and interval.
#[derive(Default)]
pub struct KlineSeries {
    series: Mutex<HashMap<SeriesKey, Series>>,
}

impl KlineSeries {
    /// Starts keeping candles of `symbol` at `interval` (its kline stream was subscribed).
    pub fn track(&self, symbol: &str, interval: &str) {
        self.series
            .lock()
            .entry((Arc::from(symbol), Arc::from(interval)))
            .or_default();
    }

    pub fn untrack(&self, symbol: &str, interval: &str) {
        self.series.lock().remove(&(Arc::from(symbol), Arc::from(interval)));
    }

    /// A stream update of the current candle.
    pub fn update(&self, symbol: &str, interval: &str, kline: Kline) {
        if let Some(series) = series_of(&mut self.series.lock(), symbol, interval) {
            series.update(kline);
        }
    }

    /// A REST answer for a tracked series.
    pub fn seed(&self, symbol: &str, interval: &str, rows: &[Kline]) {
        if let Some(series) = series_of(&mut self.series.lock(), symbol, interval) {
            series.seed(rows);
        }
    }

    /// The stream that fed this series (re)connected or dropped: updates may have been missed.
    pub fn unseed(&self, symbol: &str, interval: &str) {
        if let Some(series) = series_of(&mut self.series.lock(), symbol, interval) {
            series.unseed();
        }
    }

    /// The last `limit` candles, oldest first, if the series is seeded and holds that many.
    pub fn latest(&self, symbol: &str, interval: &str, limit: usize) -> Option<Vec<Kline>> {
        let mut all = self.series.lock();
        let series = series_of(&mut all, symbol, interval)?;
        if !series.seeded || series.candles.len() < limit || limit == 0 {
            return None;
        }
        Some(
            series
                .candles
                .iter()
                .skip(series.candles.len() - limit)
                .copied()
                .collect(),
        )
    }
}

/// The tracked series of `symbol` at `interval`. Tracked series are few (one per subscribed kline
/// stream): a scan avoids building a key, two allocations, per lookup.
fn series_of<'a>(all: &'a mut HashMap<SeriesKey, Series>, symbol: &str, interval: &str) -> Option<&'a mut Series> {
    all.iter_mut()
        .find(|((s, i), _)| &**s == symbol && &**i == interval)
        .map(|(_, series)| series)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    fn candle(minute: i64, volume: f64) -> Kline {
        Kline {
            open_time: minute * MINUTE,
            open: 1.0,
            high: 1.0,
            low: 1.0,
            close: 1.0,
            volume,
            close_time: (minute + 1) * MINUTE - 1,
        }
    }

    fn opens(rows: &[Kline]) -> Vec<i64> {
        rows.iter().map(|k| k.open_time / MINUTE).collect()
    }

    #[test]
    fn nothing_is_answered_before_a_rest_answer_seeds_the_series() {
        let store = KlineSeries::default();
        store.track("BTCUSDT", "1m");
        store.update("BTCUSDT", "1m", candle(10, 1.0));
        assert_eq!(store.latest("BTCUSDT", "1m", 1), None);
        store.seed("BTCUSDT", "1m", &[candle(8, 5.0), candle(9, 5.0), candle(10, 0.5)]);
        let rows = store.latest("BTCUSDT", "1m", 3).unwrap();
        assert_eq!(opens(&rows), [8, 9, 10]);
        // The stream's candle 10 was further along than the REST row: it wins.
        assert_eq!(rows[2].volume, 1.0);
        assert_eq!(store.latest("BTCUSDT", "1m", 4), None, "only what it holds");
        assert_eq!(store.latest("ETHUSDT", "1m", 1), None, "untracked");
    }

    #[test]
    fn a_candle_that_closed_before_the_seed_arrived_is_not_left_half_built() {
        let store = KlineSeries::default();
        store.track("BTCUSDT", "1m");
        // The stream closes candle 10 and opens 11 while the REST answer (taken mid-candle 10) travels.
        store.update("BTCUSDT", "1m", candle(10, 7.0));
        store.update("BTCUSDT", "1m", candle(11, 0.1));
        store.seed("BTCUSDT", "1m", &[candle(9, 5.0), candle(10, 3.0)]);
        let rows = store.latest("BTCUSDT", "1m", 3).unwrap();
        assert_eq!(opens(&rows), [9, 10, 11]);
        assert_eq!(rows[1].volume, 7.0);
    }

    #[test]
    fn updates_replace_the_open_candle_append_the_next_and_a_gap_unseeds() {
        let store = KlineSeries::default();
        store.track("BTCUSDT", "1m");
        store.seed("BTCUSDT", "1m", &[candle(1, 1.0), candle(2, 1.0)]);
        store.update("BTCUSDT", "1m", candle(2, 2.0));
        store.update("BTCUSDT", "1m", candle(3, 0.5));
        store.update("BTCUSDT", "1m", candle(1, 9.0)); // stale: ignored
        let rows = store.latest("BTCUSDT", "1m", 3).unwrap();
        assert_eq!(opens(&rows), [1, 2, 3]);
        assert_eq!((rows[0].volume, rows[1].volume), (1.0, 2.0));
        store.update("BTCUSDT", "1m", candle(5, 1.0)); // candle 4 never came
        assert_eq!(store.latest("BTCUSDT", "1m", 1), None);
    }

    #[test]
    fn a_reconnect_unseeds_and_the_series_is_bounded() {
        let store = KlineSeries::default();
        store.track("BTCUSDT", "1m");
        let rows: Vec<Kline> = (0..MAX_CANDLES as i64).map(|m| candle(m, 1.0)).collect();
        store.seed("BTCUSDT", "1m", &rows);
        store.update("BTCUSDT", "1m", candle(MAX_CANDLES as i64, 1.0));
        let latest = store.latest("BTCUSDT", "1m", MAX_CANDLES).unwrap();
        assert_eq!(latest.first().unwrap().open_time, MINUTE);
        store.unseed("BTCUSDT", "1m");
        assert_eq!(store.latest("BTCUSDT", "1m", 1), None);
    }
}
