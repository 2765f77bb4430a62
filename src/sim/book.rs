//! One symbol's order book: price levels holding synthetic liquidity and users' resting orders
//! in time priority, with the update ids and changed-level sets the depth streams are built from.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rust_decimal::Decimal;

use super::num::{d8, floor_to};
use crate::exchange::binance::wire::DepthSnapshot;
use crate::exchange::types::Side;

/// Who owns resting liquidity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Maker {
    Synthetic,
    User(u64),
}

#[derive(Debug, Clone)]
struct Entry {
    maker: Maker,
    qty: Decimal,
}

#[derive(Debug, Clone, Default)]
struct Level {
    queue: VecDeque<Entry>,
    total: Decimal,
}

/// How much a taker wants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    Base(Decimal),
    /// Spend (buy) or receive (sell) this much quote asset.
    Quote(Decimal),
    /// Everything the price limit allows.
    All,
}

/// One execution against resting liquidity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MakerFill {
    pub maker: Maker,
    pub price: Decimal,
    pub qty: Decimal,
}

/// Levels changed since a depth stream last emitted.
#[derive(Debug, Default)]
struct Pending {
    last_emitted: u64,
    gap: u64,
    bids: BTreeSet<Decimal>,
    asks: BTreeSet<Decimal>,
}

/// One diff event's content.
#[derive(Debug, Clone, PartialEq)]
pub struct Diff {
    pub first_id: u64,
    pub last_id: u64,
    pub bids: Vec<[Decimal; 2]>,
    pub asks: Vec<[Decimal; 2]>,
}

/// Which depth stream cadence a diff is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cadence {
    Fast,
    Slow,
}

#[derive(Debug, Default)]
pub struct Book {
    bids: BTreeMap<Decimal, Level>,
    asks: BTreeMap<Decimal, Level>,
    update_id: u64,
    fast: Pending,
    slow: Pending,
    /// No depth stream is ever cut from this book (a backtest): changed levels are not kept.
    untracked: bool,
}

impl Book {
    pub fn new(first_update_id: u64) -> Self {
        let pending = || Pending {
            last_emitted: first_update_id,
            ..Pending::default()
        };
        Book {
            update_id: first_update_id,
            fast: pending(),
            slow: pending(),
            ..Book::default()
        }
    }

    pub fn update_id(&self) -> u64 {
        self.update_id
    }

    /// Stops keeping the changed levels depth diffs are cut from, for a book no depth stream
    /// reads: otherwise they pile up, and every change pays a set insert.
    pub fn stop_tracking_diffs(&mut self) {
        self.untracked = true;
        self.fast = Pending::default();
        self.slow = Pending::default();
    }

    fn side_mut(&mut self, side: Side) -> &mut BTreeMap<Decimal, Level> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    fn touch(&mut self, side: Side, price: Decimal) {
        self.update_id += 1;
        if self.untracked {
            return;
        }
        for pending in [&mut self.fast, &mut self.slow] {
            match side {
                Side::Buy => pending.bids.insert(price),
                Side::Sell => pending.asks.insert(price),
            };
        }
    }

    /// Appends resting liquidity at the back of its level's queue.
    pub fn add(&mut self, side: Side, price: Decimal, maker: Maker, qty: Decimal) {
        if qty <= Decimal::ZERO {
            return;
        }
        let level = self.side_mut(side).entry(price).or_default();
        level.queue.push_back(Entry { maker, qty });
        level.total += qty;
        self.touch(side, price);
    }

    /// Removes a user's resting order; returns the quantity it still had on the book.
    pub fn remove_user(&mut self, side: Side, price: Decimal, order_id: u64) -> Decimal {
        let levels = self.side_mut(side);
        let Some(level) = levels.get_mut(&price) else {
            return Decimal::ZERO;
        };
        let Some(pos) = level.queue.iter().position(|e| e.maker == Maker::User(order_id)) else {
            return Decimal::ZERO;
        };
        let qty = level.queue.remove(pos).map(|e| e.qty).unwrap_or_default();
        level.total -= qty;
        if level.queue.is_empty() {
            levels.remove(&price);
        }
        self.touch(side, price);
        qty
    }

    /// Sets what a user's resting order shows, keeping its place in the queue (an amend).
    pub fn resize_user(&mut self, side: Side, price: Decimal, order_id: u64, qty: Decimal) {
        let levels = self.side_mut(side);
        let Some(level) = levels.get_mut(&price) else { return };
        let Some(entry) = level.queue.iter_mut().find(|e| e.maker == Maker::User(order_id)) else {
            return;
        };
        level.total += qty - entry.qty;
        entry.qty = qty;
        if qty.is_zero() {
            level.queue.retain(|e| e.maker != Maker::User(order_id));
            if level.queue.is_empty() {
                levels.remove(&price);
            }
        }
        self.touch(side, price);
    }

    /// Sets the synthetic quantity resting at one level (zero removes it); keeps its queue place.
    pub fn set_synthetic(&mut self, side: Side, price: Decimal, qty: Decimal) {
        let levels = self.side_mut(side);
        let level = levels.entry(price).or_default();
        let current = level.queue.iter().position(|e| e.maker == Maker::Synthetic);
        let old = current.map(|i| level.queue[i].qty).unwrap_or_default();
        if old == qty {
            if level.queue.is_empty() {
                levels.remove(&price);
            }
            return;
        }
        match current {
            Some(i) if qty.is_zero() => {
                level.queue.remove(i);
            }
            Some(i) => level.queue[i].qty = qty,
            None => level.queue.push_back(Entry {
                maker: Maker::Synthetic,
                qty,
            }),
        }
        level.total += qty - old;
        if level.queue.is_empty() {
            levels.remove(&price);
        }
        self.touch(side, price);
    }

    /// Removes synthetic liquidity priced better than `price` on `side` (bids above it, asks below
    /// it); visits only those levels, so a deep book costs nothing here.
    pub fn remove_synthetic_better_than(&mut self, side: Side, price: Decimal) {
        use std::ops::Bound::{Excluded, Unbounded};
        let range = match side {
            Side::Buy => (Excluded(price), Unbounded),
            Side::Sell => (Unbounded, Excluded(price)),
        };
        let stale: Vec<Decimal> = self
            .side_mut(side)
            .range(range)
            .filter(|(_, l)| l.queue.iter().any(|e| e.maker == Maker::Synthetic))
            .map(|(p, _)| *p)
            .collect();
        for price in stale {
            self.set_synthetic(side, price, Decimal::ZERO);
        }
    }

    /// Removes synthetic liquidity from every level of `side` whose price `keep` rejects.
    pub fn retain_synthetic(&mut self, side: Side, keep: impl Fn(Decimal) -> bool) {
        let stale: Vec<Decimal> = self
            .side_mut(side)
            .iter()
            .filter(|(p, l)| !keep(**p) && l.queue.iter().any(|e| e.maker == Maker::Synthetic))
            .map(|(p, _)| *p)
            .collect();
        for price in stale {
            self.set_synthetic(side, price, Decimal::ZERO);
        }
    }

    /// The synthetic liquidity of `side` becomes one level, `qty` at `price`; users' orders stay.
    /// The same as `retain_synthetic(side, |_| false)` then `set_synthetic(side, price, qty)`, but
    /// when the side holds one lone synthetic level (a trades-only replay moves it on every trade)
    /// that level is moved, keeping its memory, instead of freed and allocated again.
    pub fn reset_synthetic(&mut self, side: Side, price: Decimal, qty: Decimal) {
        let levels = self.side_mut(side);
        let lone = levels.len() == 1
            && levels
                .values()
                .next()
                .is_some_and(|l| l.queue.len() == 1 && l.queue[0].maker == Maker::Synthetic);
        let moved = match (lone && qty > Decimal::ZERO).then(|| levels.pop_first()).flatten() {
            Some((old_price, mut level)) => {
                level.queue[0].qty = qty;
                level.total = qty;
                levels.insert(price, level);
                old_price
            }
            None => {
                self.retain_synthetic(side, |_| false);
                self.set_synthetic(side, price, qty);
                return;
            }
        };
        // As the two steps would: the old level changed, then the new one.
        self.touch(side, moved);
        self.touch(side, price);
    }

    /// Synthetic quantity resting at a level.
    pub fn synthetic_at(&self, side: Side, price: Decimal) -> Decimal {
        let levels = match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        };
        levels
            .get(&price)
            .and_then(|l| l.queue.iter().find(|e| e.maker == Maker::Synthetic))
            .map(|e| e.qty)
            .unwrap_or_default()
    }

    /// The best price holding synthetic (market) liquidity on `side`, ignoring users' orders.
    pub fn best_synthetic(&self, side: Side) -> Option<Decimal> {
        let has = |level: &Level| level.queue.iter().any(|e| e.maker == Maker::Synthetic);
        match side {
            Side::Buy => self.bids.iter().rev().find(|(_, l)| has(l)).map(|(p, _)| *p),
            Side::Sell => self.asks.iter().find(|(_, l)| has(l)).map(|(p, _)| *p),
        }
    }

    pub fn best_bid(&self) -> Option<(Decimal, Decimal)> {
        self.bids.iter().next_back().map(|(p, l)| (*p, l.total))
    }

    pub fn best_ask(&self) -> Option<(Decimal, Decimal)> {
        self.asks.iter().next().map(|(p, l)| (*p, l.total))
    }

    /// Would a `taker_side` order at `price` execute at once?
    pub fn would_cross(&self, taker_side: Side, price: Decimal) -> bool {
        match taker_side {
            Side::Buy => self.best_ask().is_some_and(|(p, _)| p <= price),
            Side::Sell => self.best_bid().is_some_and(|(p, _)| p >= price),
        }
    }

    /// What a taker would get without executing: `(base qty, quote qty)`.
    pub fn preview(
        &self,
        taker_side: Side,
        limit: Option<Decimal>,
        amount: Amount,
        step: Decimal,
    ) -> (Decimal, Decimal) {
        let levels: Box<dyn Iterator<Item = (&Decimal, &Level)>> = match taker_side {
            Side::Buy => Box::new(self.asks.iter()),
            Side::Sell => Box::new(self.bids.iter().rev()),
        };
        let mut budget = Budget::new(amount, step);
        let (mut base, mut quote) = (Decimal::ZERO, Decimal::ZERO);
        for (price, level) in levels {
            if !within(taker_side, *price, limit) {
                break;
            }
            let take = budget.take(*price, level.total);
            if take.is_zero() {
                break;
            }
            base += take;
            quote += take * *price;
        }
        (base, quote)
    }

    /// Executes a taker against the opposite side in price-time priority.
    pub fn take(&mut self, taker_side: Side, limit: Option<Decimal>, amount: Amount, step: Decimal) -> Vec<MakerFill> {
        self.take_until(taker_side, limit, amount, step, |_| false).0
    }

    /// As [`Book::take`], stopping before the first resting entry `blocks` refuses (self-trade
    /// prevention): that entry's `(maker, price)` is returned beside the fills.
    pub fn take_until(
        &mut self,
        taker_side: Side,
        limit: Option<Decimal>,
        amount: Amount,
        step: Decimal,
        blocks: impl Fn(Maker) -> bool,
    ) -> (Vec<MakerFill>, Option<(Maker, Decimal)>) {
        let mut blocked = None;
        let maker_side = match taker_side {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        };
        let mut budget = Budget::new(amount, step);
        let mut fills = Vec::new();
        loop {
            let levels = self.side_mut(maker_side);
            let entry = match maker_side {
                Side::Sell => levels.first_entry(),
                Side::Buy => levels.last_entry(),
            };
            let Some(mut entry) = entry else { break };
            let price = *entry.key();
            if !within(taker_side, price, limit) {
                break;
            }
            let level = entry.get_mut();
            let (mut exhausted, mut took) = (false, false);
            while let Some(front) = level.queue.front_mut() {
                if blocks(front.maker) {
                    blocked = Some((front.maker, price));
                    exhausted = true;
                    break;
                }
                let take = budget.take(price, front.qty);
                if take.is_zero() {
                    exhausted = true;
                    break;
                }
                took = true;
                front.qty -= take;
                level.total -= take;
                fills.push(MakerFill {
                    maker: front.maker,
                    price,
                    qty: take,
                });
                if front.qty.is_zero() {
                    level.queue.pop_front();
                }
            }
            if level.queue.is_empty() {
                entry.remove();
            }
            // A level the taker stopped at without taking anything did not change: no update id.
            if took {
                self.touch(maker_side, price);
            }
            if exhausted {
                break;
            }
        }
        (fills, blocked)
    }

    /// The top `limit` levels per side.
    pub fn snapshot(&self, limit: usize) -> DepthSnapshot {
        let row = |(p, l): (&Decimal, &Level)| [d8(*p), d8(l.total)];
        DepthSnapshot {
            last_update_id: self.update_id,
            bids: self.bids.iter().rev().take(limit).map(row).collect(),
            asks: self.asks.iter().take(limit).map(row).collect(),
        }
    }

    /// Asks the next diff of one cadence to skip `ids` update ids (fault knob).
    pub fn inject_gap(&mut self, ids: u64) {
        self.update_id += ids;
        self.fast.gap += ids;
        self.slow.gap += ids;
    }

    /// The levels changed since this cadence last emitted, or `None` when nothing changed.
    pub fn take_diff(&mut self, cadence: Cadence) -> Option<Diff> {
        let update_id = self.update_id;
        let pending = match cadence {
            Cadence::Fast => &mut self.fast,
            Cadence::Slow => &mut self.slow,
        };
        if update_id == pending.last_emitted {
            return None;
        }
        let bids = std::mem::take(&mut pending.bids);
        let asks = std::mem::take(&mut pending.asks);
        let first_id = pending.last_emitted + 1 + std::mem::take(&mut pending.gap);
        pending.last_emitted = update_id;
        let row = |levels: &BTreeMap<Decimal, Level>, p: Decimal| {
            [d8(p), d8(levels.get(&p).map(|l| l.total).unwrap_or_default())]
        };
        Some(Diff {
            first_id: first_id.min(update_id),
            last_id: update_id,
            bids: bids.into_iter().rev().map(|p| row(&self.bids, p)).collect(),
            asks: asks.into_iter().map(|p| row(&self.asks, p)).collect(),
        })
    }
}

fn within(taker_side: Side, price: Decimal, limit: Option<Decimal>) -> bool {
    match (taker_side, limit) {
        (_, None) => true,
        (Side::Buy, Some(l)) => price <= l,
        (Side::Sell, Some(l)) => price >= l,
    }
}

/// What a taker has left to fill, in base or quote terms.
struct Budget {
    amount: Amount,
    step: Decimal,
}

impl Budget {
    fn new(amount: Amount, step: Decimal) -> Self {
        Budget { amount, step }
    }

    /// Takes up to `available` at `price`; zero means the taker is done.
    fn take(&mut self, price: Decimal, available: Decimal) -> Decimal {
        match &mut self.amount {
            Amount::All => available,
            Amount::Base(left) => {
                let take = (*left).min(available);
                *left -= take;
                take
            }
            Amount::Quote(left) => {
                if price.is_zero() {
                    return Decimal::ZERO;
                }
                // A budget worth more than the level (even too large to divide) takes all of it.
                let take = match left.checked_div(price) {
                    Some(affordable) if affordable < available => floor_to(affordable, self.step),
                    _ => available,
                };
                *left -= take * price;
                take
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn resetting_a_sides_synthetic_liquidity_is_the_same_as_clearing_and_setting_it() {
        let lone = |b: &mut Book| b.set_synthetic(Side::Buy, d("100"), d("2"));
        let with_user = |b: &mut Book| {
            b.set_synthetic(Side::Buy, d("100"), d("2"));
            b.add(Side::Buy, d("99"), Maker::User(7), d("1"));
        };
        let two_levels = |b: &mut Book| {
            b.set_synthetic(Side::Buy, d("100"), d("2"));
            b.set_synthetic(Side::Buy, d("98"), d("3"));
        };
        let empty = |_: &mut Book| {};
        let starts: [&dyn Fn(&mut Book); 4] = [&lone, &with_user, &two_levels, &empty];
        for start in starts {
            for (price, qty) in [
                (d("101"), d("0.5")),
                (d("100"), d("2")),
                (d("99"), d("1")),
                (d("97"), d("0")),
            ] {
                let (mut fast, mut steps) = (Book::new(1), Book::new(1));
                fast.stop_tracking_diffs();
                steps.stop_tracking_diffs();
                start(&mut fast);
                start(&mut steps);
                fast.reset_synthetic(Side::Buy, price, qty);
                steps.retain_synthetic(Side::Buy, |_| false);
                steps.set_synthetic(Side::Buy, price, qty);
                assert_eq!(fast.snapshot(10), steps.snapshot(10), "{price} {qty}");
                assert_eq!(fast.update_id(), steps.update_id(), "{price} {qty}");
                assert_eq!(fast.best_synthetic(Side::Buy), steps.best_synthetic(Side::Buy));
            }
        }
    }

    #[test]
    fn price_time_priority_and_partial_fills() {
        let mut b = Book::new(100);
        b.add(Side::Sell, d("101"), Maker::User(1), d("1"));
        b.add(Side::Sell, d("100"), Maker::Synthetic, d("2"));
        b.add(Side::Sell, d("100"), Maker::User(2), d("1"));
        let fills = b.take(Side::Buy, Some(d("100.5")), Amount::Base(d("2.5")), d("0.1"));
        assert_eq!(
            fills,
            vec![
                MakerFill {
                    maker: Maker::Synthetic,
                    price: d("100"),
                    qty: d("2")
                },
                MakerFill {
                    maker: Maker::User(2),
                    price: d("100"),
                    qty: d("0.5")
                },
            ]
        );
        assert_eq!(b.best_ask(), Some((d("100"), d("0.5"))));
        let quote = b.take(Side::Buy, None, Amount::Quote(d("151")), d("0.1"));
        // 0.5 left at 100 (50 spent), then 101 buys exactly 1 at 101.
        assert_eq!(quote.iter().map(|f| f.qty).sum::<Decimal>(), d("1.5"));
        assert_eq!(b.best_ask(), None);
    }

    #[test]
    fn a_taker_touches_only_the_levels_it_took_from() {
        let mut b = Book::new(10);
        b.add(Side::Sell, d("100"), Maker::Synthetic, d("1"));
        b.add(Side::Sell, d("101"), Maker::Synthetic, d("1"));
        b.take_diff(Cadence::Fast);
        b.take(Side::Buy, None, Amount::Base(d("1")), d("0.1"));
        let diff = b.take_diff(Cadence::Fast).unwrap();
        assert_eq!((diff.first_id, diff.last_id), (13, 13));
        assert_eq!(diff.asks, vec![[d8(d("100")), d8(Decimal::ZERO)]]);
    }

    #[test]
    fn diffs_cover_every_update_id_once() {
        let mut b = Book::new(10);
        b.add(Side::Buy, d("99"), Maker::Synthetic, d("1"));
        b.set_synthetic(Side::Buy, d("99"), d("3"));
        let diff = b.take_diff(Cadence::Fast).unwrap();
        assert_eq!((diff.first_id, diff.last_id), (11, 12));
        assert_eq!(diff.bids, vec![[d8(d("99")), d8(d("3"))]]);
        assert!(b.take_diff(Cadence::Fast).is_none());
        b.set_synthetic(Side::Buy, d("99"), Decimal::ZERO);
        b.inject_gap(5);
        let gap = b.take_diff(Cadence::Fast).unwrap();
        assert_eq!((gap.first_id, gap.last_id, gap.bids[0][1]), (18, 18, d8(Decimal::ZERO)));
        let slow = b.take_diff(Cadence::Slow).unwrap();
        assert_eq!((slow.first_id, slow.last_id), (11 + 5, 18));
        assert_eq!(b.snapshot(5).last_update_id, 18);
    }
}
