//! Klines built from printed trades: one-minute candles kept per symbol, longer intervals
//! aggregated from them on demand.

use std::collections::VecDeque;

use rust_decimal::Decimal;

pub const SECOND_MS: i64 = 1_000;
pub const MINUTE_MS: i64 = 60_000;
/// Quiet seconds printed at most when the `1s` candles catch up after a long gap (older quiet
/// seconds are flat and the REST klines serve them).
const SECONDS_CATCH_UP: i64 = 60;
/// Two days of one-minute candles (enough for `ticker/24hr` and a full previous `1d` kline).
const KEEP: usize = 1_440 * 2;

/// Intervals the simulator serves, with their length in ms.
pub const INTERVALS: [(&str, i64); 13] = [
    ("1s", SECOND_MS),
    ("1m", MINUTE_MS),
    ("3m", 3 * MINUTE_MS),
    ("5m", 5 * MINUTE_MS),
    ("15m", 15 * MINUTE_MS),
    ("30m", 30 * MINUTE_MS),
    ("1h", 60 * MINUTE_MS),
    ("2h", 120 * MINUTE_MS),
    ("4h", 240 * MINUTE_MS),
    ("6h", 360 * MINUTE_MS),
    ("8h", 480 * MINUTE_MS),
    ("12h", 720 * MINUTE_MS),
    ("1d", 1_440 * MINUTE_MS),
];

pub fn interval_ms(name: &str) -> Option<i64> {
    INTERVALS.iter().find(|(n, _)| *n == name).map(|(_, ms)| *ms)
}

const DAY_MS: i64 = 1_440 * MINUTE_MS;

/// How a kline interval of a minute or more cuts time into candles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// Fixed length, aligned to `offset` after the epoch.
    Fixed { ms: i64, offset: i64 },
    /// Calendar months (UTC).
    Month,
}

impl Span {
    /// The served intervals of a minute or more: those of the streams, and `3d`, `1w` (from Monday) and `1M`.
    pub fn of(name: &str) -> Option<Span> {
        match name {
            "3d" => Some(Span::Fixed {
                ms: 3 * DAY_MS,
                offset: 0,
            }),
            // 1970-01-01 was a Thursday: weeks start four days later, on Mondays.
            "1w" => Some(Span::Fixed {
                ms: 7 * DAY_MS,
                offset: 4 * DAY_MS,
            }),
            "1M" => Some(Span::Month),
            _ => interval_ms(name).map(|ms| Span::Fixed { ms, offset: 0 }),
        }
    }

    pub fn start(self, t: i64) -> i64 {
        match self {
            Span::Fixed { ms, offset } => (t - offset).div_euclid(ms) * ms + offset,
            Span::Month => {
                let (y, m, _) = civil_from_days(t.div_euclid(DAY_MS));
                days_from_civil(y, m, 1) * DAY_MS
            }
        }
    }

    /// The first ms after the candle that opens at `start`.
    pub fn end(self, start: i64) -> i64 {
        match self {
            Span::Fixed { ms, .. } => start + ms,
            Span::Month => {
                let (y, m, _) = civil_from_days(start.div_euclid(DAY_MS));
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(y, m, 1) * DAY_MS
            }
        }
    }
}

/// Days since 1970-01-01 → (year, month 1-12, day 1-31), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[derive(Debug, Clone, PartialEq)]
pub struct Candle {
    pub open_time: i64,
    pub close_time: i64,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    pub volume: Decimal,
    pub quote_volume: Decimal,
    pub trades: u64,
    pub taker_buy_base: Decimal,
    pub taker_buy_quote: Decimal,
    /// First and last trade ids (-1 when no trade).
    pub first_id: i64,
    pub last_id: i64,
}

impl Candle {
    pub fn flat(open_time: i64, len: i64, price: Decimal) -> Self {
        Candle {
            open_time,
            close_time: open_time + len - 1,
            open: price,
            high: price,
            low: price,
            close: price,
            volume: Decimal::ZERO,
            quote_volume: Decimal::ZERO,
            trades: 0,
            taker_buy_base: Decimal::ZERO,
            taker_buy_quote: Decimal::ZERO,
            first_id: -1,
            last_id: -1,
        }
    }

    pub fn merge(&mut self, next: &Candle) {
        if self.trades == 0 && next.trades > 0 {
            self.open = next.open;
            self.high = next.high;
            self.low = next.low;
            self.first_id = next.first_id;
        } else if next.trades > 0 {
            self.high = self.high.max(next.high);
            self.low = self.low.min(next.low);
        }
        if next.trades > 0 || self.trades == 0 {
            self.close = next.close;
        }
        self.volume += next.volume;
        self.quote_volume += next.quote_volume;
        self.trades += next.trades;
        self.taker_buy_base += next.taker_buy_base;
        self.taker_buy_quote += next.taker_buy_quote;
        if next.last_id >= 0 {
            self.last_id = next.last_id;
        }
    }
}

#[derive(Debug, Default)]
pub struct Candles {
    closed: VecDeque<Candle>,
    current: Option<Candle>,
    /// The running one-second candle (the `kline_1s` stream; REST builds seconds from the
    /// recent trades).
    second: Option<Candle>,
    /// Trades of the seeded history (ids 1..=this).
    seeded_trades: u64,
}

impl Candles {
    /// Rolls to the minute containing `now`, closing the current candle if it ended.
    /// Returns every minute it closed, oldest first, so the streams can print what closed with `x: true`.
    pub fn roll(&mut self, now: i64) -> Vec<Candle> {
        let start = now.div_euclid(MINUTE_MS) * MINUTE_MS;
        let mut closed = Vec::new();
        // Quiet minutes still get (flat) candles, as on the exchange.
        while let Some(current) = self.current.take_if(|c| c.open_time < start) {
            let next = (current.open_time + MINUTE_MS).max(start - KEEP as i64 * MINUTE_MS);
            self.current = Some(Candle::flat(next, MINUTE_MS, current.close));
            self.closed.push_back(current.clone());
            if self.closed.len() > KEEP {
                self.closed.pop_front();
            }
            closed.push(current);
        }
        closed
    }

    /// Rolls the running second to the one containing `now`; returns the seconds it closed,
    /// oldest first: the running one, then the quiet ones after it, flat at its close (at most
    /// [`SECONDS_CATCH_UP`] of those).
    /// The first second starts from the running minute's close.
    pub fn roll_seconds(&mut self, now: i64) -> Vec<Candle> {
        let start = now.div_euclid(SECOND_MS) * SECOND_MS;
        let Some(mut second) = self.second.take() else {
            self.second = self
                .current
                .as_ref()
                .map(|minute| Candle::flat(start, SECOND_MS, minute.close));
            return Vec::new();
        };
        let mut closed = Vec::new();
        while second.open_time < start {
            let next = (second.open_time + SECOND_MS).max(start - SECONDS_CATCH_UP * SECOND_MS);
            let close = second.close;
            closed.push(second);
            second = Candle::flat(next, SECOND_MS, close);
        }
        self.second = Some(second);
        closed
    }

    /// The candle of `interval_ms` that the closed minute `minute` completes, if it is that interval's last.
    pub fn completed_by(&self, minute: &Candle, interval_ms: i64) -> Option<Candle> {
        let end = minute.open_time + MINUTE_MS;
        if end.rem_euclid(interval_ms) != 0 {
            return None;
        }
        let start = end - interval_ms;
        self.query(interval_ms, Some(start), Some(start), 1)
            .pop()
            .filter(|c| c.open_time == start)
    }

    /// Installs closed one-minute candles from before the simulator started (oldest first),
    /// so strategies asking for klines at start-up get a history. Their trades are numbered from 1
    /// so trade ids, counts and first/last ids agree; the next id is [`Candles::next_trade_id`].
    pub fn seed_history(&mut self, mut history: Vec<Candle>) {
        let mut next = 1i64;
        for c in &mut history {
            if c.trades > 0 {
                c.first_id = next;
                next += c.trades as i64;
                c.last_id = next - 1;
            }
        }
        self.seeded_trades = (next - 1) as u64;
        // The running minute continues from the last close, so quiet minutes never leave a gap.
        self.current = history
            .last()
            .map(|last| Candle::flat(last.open_time + MINUTE_MS, MINUTE_MS, last.close));
        self.closed = history.into_iter().rev().take(KEEP).rev().collect();
    }

    /// Adds one trade (`taker_buy`: the buyer was the taker).
    pub fn trade(&mut self, time: i64, id: u64, price: Decimal, qty: Decimal, taker_buy: bool) {
        self.roll(time);
        let start = time.div_euclid(MINUTE_MS) * MINUTE_MS;
        let candle = self
            .current
            .get_or_insert_with(|| Candle::flat(start, MINUTE_MS, price));
        let one = Candle {
            trades: 1,
            volume: qty,
            quote_volume: qty * price,
            taker_buy_base: if taker_buy { qty } else { Decimal::ZERO },
            taker_buy_quote: if taker_buy { qty * price } else { Decimal::ZERO },
            first_id: id as i64,
            last_id: id as i64,
            ..Candle::flat(start, MINUTE_MS, price)
        };
        candle.merge(&one);
        // The caller rolled the seconds to `time` before (their closed candles are published).
        let second_start = time.div_euclid(SECOND_MS) * SECOND_MS;
        let second = self
            .second
            .get_or_insert_with(|| Candle::flat(second_start, SECOND_MS, price));
        if second.open_time == second_start {
            second.merge(&Candle {
                open_time: second_start,
                close_time: second_start + SECOND_MS - 1,
                ..one
            });
        }
    }

    /// The id the first live trade gets (after the seeded history's).
    pub fn next_trade_id(&self) -> u64 {
        self.seeded_trades + 1
    }

    /// Candles of `interval_ms` overlapping `[from, to]`, oldest first, the last `limit` of them.
    pub fn query(&self, interval_ms: i64, from: Option<i64>, to: Option<i64>, limit: usize) -> Vec<Candle> {
        self.query_span(
            Span::Fixed {
                ms: interval_ms,
                offset: 0,
            },
            from,
            to,
            limit,
        )
    }

    /// Candles of `span` overlapping `[from, to]`, oldest first, the last `limit` of them.
    pub fn query_span(&self, span: Span, from: Option<i64>, to: Option<i64>, limit: usize) -> Vec<Candle> {
        let mut out: Vec<Candle> = Vec::new();
        for minute in self.closed.iter().chain(self.current.iter()) {
            let start = span.start(minute.open_time);
            match out.last_mut() {
                Some(last) if last.open_time == start => last.merge(minute),
                _ => {
                    let mut c = Candle::flat(start, span.end(start) - start, minute.open);
                    c.merge(minute);
                    c.open = minute.open;
                    out.push(c);
                }
            }
        }
        out.retain(|c| from.is_none_or(|f| c.close_time >= f) && to.is_none_or(|t| c.open_time <= t));
        if from.is_some() {
            out.truncate(limit);
        } else if out.len() > limit {
            out.drain(..out.len() - limit);
        }
        out
    }

    /// The latest candle of `interval_ms` (for the kline stream).
    pub fn latest(&self, interval_ms: i64) -> Option<Candle> {
        if interval_ms == SECOND_MS {
            return self.second.clone();
        }
        self.query(interval_ms, None, None, 1).pop()
    }

    /// Aggregate of every minute that started at or after `since`.
    pub fn since(&self, since: i64) -> Option<Candle> {
        let mut acc: Option<Candle> = None;
        for minute in self
            .closed
            .iter()
            .chain(self.current.iter())
            .filter(|c| c.open_time >= since)
        {
            match &mut acc {
                Some(a) => a.merge(minute),
                None => acc = Some(minute.clone()),
            }
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_aggregate_into_longer_intervals() {
        let d = |n: i64| Decimal::from(n);
        let mut c = Candles::default();
        c.trade(0, 1, d(10), d(1), true);
        c.trade(30_000, 2, d(12), d(1), false);
        c.trade(61_000, 3, d(9), d(2), true);
        let closed = c.roll(200_000);
        // Minute 0 closed when the trade at 61 s came; this roll closes minute 1 and the quiet minute 2.
        assert_eq!(
            closed.iter().map(|c| c.open_time).collect::<Vec<_>>(),
            [60_000, 120_000]
        );
        // Minute 2 completes the first 3m candle, not a 5m one; minute 1 completes nothing longer.
        let three_closed = c
            .completed_by(&closed[1], 3 * MINUTE_MS)
            .expect("a 3m candle ends there");
        assert_eq!((three_closed.open_time, three_closed.volume), (0, d(4)));
        assert!(c.completed_by(&closed[1], 5 * MINUTE_MS).is_none());
        assert!(c.completed_by(&closed[0], 3 * MINUTE_MS).is_none());
        let m = c.query(MINUTE_MS, None, None, 10);
        assert_eq!(m.len(), 4);
        assert_eq!(
            (m[0].open, m[0].high, m[0].close, m[0].trades),
            (d(10), d(12), d(12), 2)
        );
        let three = c.query(3 * MINUTE_MS, None, None, 10);
        assert_eq!(three.len(), 2);
        assert_eq!(
            (three[0].open, three[0].low, three[0].volume, three[0].last_id),
            (d(10), d(9), d(4), 3)
        );
    }

    #[test]
    fn seconds_close_as_time_passes_and_quiet_ones_stay_flat() {
        let d = |n: i64| Decimal::from(n);
        let mut c = Candles::default();
        c.roll(10_000);
        assert!(c.roll_seconds(10_000).is_empty());
        assert_eq!(c.latest(SECOND_MS), None, "no minute yet, nothing to start from");
        c.trade(10_200, 1, d(10), d(1), true);
        c.trade(10_700, 2, d(12), d(2), false);
        let running = c.latest(SECOND_MS).unwrap();
        assert_eq!(
            (
                running.open_time,
                running.close_time,
                running.open,
                running.close,
                running.volume,
                running.trades
            ),
            (10_000, 10_999, d(10), d(12), d(3), 2)
        );
        let closed = c.roll_seconds(13_500);
        assert_eq!(
            closed
                .iter()
                .map(|s| (s.open_time, s.close, s.trades))
                .collect::<Vec<_>>(),
            [(10_000, d(12), 2), (11_000, d(12), 0), (12_000, d(12), 0)]
        );
        assert_eq!(c.latest(SECOND_MS).unwrap().open_time, 13_000);
        // A long quiet gap closes the running second and only the last minute of flat ones.
        assert_eq!(c.roll_seconds(1_000_000).len(), SECONDS_CATCH_UP as usize + 1);
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        // 2024-03-14 12:00 UTC (a Thursday).
        let t = 1_710_417_600_000;
        let week = Span::of("1w").unwrap();
        assert_eq!(week.start(t), 1_710_115_200_000); // Monday 2024-03-11
        let month = Span::of("1M").unwrap();
        assert_eq!(month.start(t), 1_709_251_200_000); // 2024-03-01
        assert_eq!(month.end(month.start(t)), 1_711_929_600_000); // 2024-04-01
                                                                  // December rolls into January; February of a leap year has 29 days.
        assert_eq!(month.end(1_701_388_800_000), 1_704_067_200_000);
        assert_eq!(month.end(1_706_745_600_000) - 1_706_745_600_000, 29 * DAY_MS);
    }
}
