//! The fill model: a market that happened elsewhere (a recording, Binance's historical files, or
//! a live exchange's streams) applied to the matching engine, so the users' orders rest, fill and
//! queue against it. Backtests and paper trading on a live market both apply it through
//! [`MarketMirror`], so they fill orders the same way (docs/backtesting.md, "Fill model").

use std::collections::HashMap;
use std::sync::Arc;

use rust_decimal::Decimal;

use super::book::Amount;
use super::matching::{Exchange, Taker};
use crate::exchange::types::Side;
use crate::exchange::Kline;

/// A price level: price, quantity (zero removes the level).
pub type Level = (Decimal, Decimal);

/// What the market did at one instant.
#[derive(Debug, Clone)]
pub enum MarketItem {
    /// A full order book: replaces every level of the symbol.
    Snapshot {
        symbol: Arc<str>,
        update_id: u64,
        bids: Vec<Level>,
        asks: Vec<Level>,
    },
    /// Changed levels (`first_id..=last_id` are the update ids they cover).
    Depth {
        symbol: Arc<str>,
        first_id: u64,
        last_id: u64,
        bids: Vec<Level>,
        asks: Vec<Level>,
    },
    /// Best bid and ask.
    Book {
        symbol: Arc<str>,
        update_id: u64,
        bid: Level,
        ask: Level,
    },
    Trade {
        symbol: Arc<str>,
        id: u64,
        price: Decimal,
        qty: Decimal,
        buyer_maker: bool,
    },
    Kline {
        symbol: Arc<str>,
        interval: Arc<str>,
        kline: Kline,
        closed: bool,
    },
}

/// What applying an item changed, for whoever tells strategies about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The item moved the engine's book or printed a trade.
    Market,
    /// The symbol is unknown to the engine, or the item was already applied (a depth diff the
    /// snapshot covers), or it does not touch the book (klines).
    Nothing,
}

/// Applies market items to an engine; keeps the depth-diff sequence per symbol.
#[derive(Debug, Default)]
pub struct MarketMirror {
    last_depth_id: HashMap<Arc<str>, u64>,
    /// Depth diffs whose first id did not follow the last applied one.
    pub depth_gaps: u64,
    /// Trades-only markets (no book data): each trade quotes a one-level book around it.
    pub synthetic_book: bool,
}

impl MarketMirror {
    pub fn new(synthetic_book: bool) -> Self {
        MarketMirror {
            synthetic_book,
            ..MarketMirror::default()
        }
    }

    /// Applies `item` at exchange time `now` (ms). Users' orders fill as the fill model says.
    pub fn apply(&mut self, ex: &mut Exchange, item: &MarketItem, now: i64) -> Applied {
        match item {
            MarketItem::Snapshot {
                symbol,
                update_id,
                bids,
                asks,
            } => {
                let Some(i) = ex.symbol_index(symbol) else {
                    return Applied::Nothing;
                };
                let book = &mut ex.markets[i].book;
                book.retain_synthetic(Side::Buy, |_| false);
                book.retain_synthetic(Side::Sell, |_| false);
                set_levels(ex, i, bids, asks);
                self.last_depth_id.insert(symbol.clone(), *update_id);
                cross(ex, i, now);
                Applied::Market
            }
            MarketItem::Depth {
                symbol,
                first_id,
                last_id,
                bids,
                asks,
            } => {
                let Some(i) = ex.symbol_index(symbol) else {
                    return Applied::Nothing;
                };
                let last = self.last_depth_id.get(symbol).copied();
                // Diffs the snapshot already holds are skipped, as a live client does.
                if last.is_some_and(|l| *last_id <= l) {
                    return Applied::Nothing;
                }
                if last.is_some_and(|l| *first_id > l + 1) {
                    self.depth_gaps += 1;
                }
                self.last_depth_id.insert(symbol.clone(), *last_id);
                set_levels(ex, i, bids, asks);
                cross(ex, i, now);
                Applied::Market
            }
            MarketItem::Book { symbol, bid, ask, .. } => match ex.symbol_index(symbol) {
                Some(i) => {
                    set_top(ex, i, *bid, *ask, now);
                    Applied::Market
                }
                None => Applied::Nothing,
            },
            MarketItem::Trade {
                symbol,
                price,
                qty,
                buyer_maker,
                ..
            } => {
                let Some(i) = ex.symbol_index(symbol) else {
                    return Applied::Nothing;
                };
                trade(ex, i, *price, *qty, *buyer_maker, now);
                if self.synthetic_book {
                    // One level each side: what the trade says of the book, and nothing older.
                    let tick = ex.markets[i].spec.tick_size;
                    let (bid, ask) = if *buyer_maker {
                        (*price, *price + tick)
                    } else {
                        ((*price - tick).max(tick), *price)
                    };
                    let book = &mut ex.markets[i].book;
                    book.reset_synthetic(Side::Buy, bid, *qty);
                    book.reset_synthetic(Side::Sell, ask, *qty);
                    ex.touch_top(i);
                    cross(ex, i, now);
                }
                Applied::Market
            }
            MarketItem::Kline { .. } => Applied::Nothing,
        }
    }
}

/// Empties every symbol's market liquidity (the users' orders stay), before a mirrored market
/// replaces it.
pub fn clear_market(ex: &mut Exchange) {
    for i in 0..ex.markets.len() {
        let book = &mut ex.markets[i].book;
        book.retain_synthetic(Side::Buy, |_| false);
        book.retain_synthetic(Side::Sell, |_| false);
        ex.touch_top(i);
    }
}

/// Sets quantities level by level (zero removes a level).
fn set_levels(ex: &mut Exchange, i: usize, bids: &[Level], asks: &[Level]) {
    let book = &mut ex.markets[i].book;
    for (price, qty) in bids {
        book.set_synthetic(Side::Buy, *price, *qty);
    }
    for (price, qty) in asks {
        book.set_synthetic(Side::Sell, *price, *qty);
    }
    ex.touch_top(i);
}

/// Best bid and ask: levels better than them are gone, theirs are set.
fn set_top(ex: &mut Exchange, i: usize, bid: Level, ask: Level, now: i64) {
    let book = &mut ex.markets[i].book;
    book.remove_synthetic_better_than(Side::Buy, bid.0);
    book.remove_synthetic_better_than(Side::Sell, ask.0);
    book.set_synthetic(Side::Buy, bid.0, bid.1);
    book.set_synthetic(Side::Sell, ask.0, ask.1);
    ex.touch_top(i);
    cross(ex, i, now);
}

/// Users' resting orders the market's book moved through fill, as makers, at their price.
fn cross(ex: &mut Exchange, i: usize, now: i64) {
    let book = &ex.markets[i].book;
    let (ask, bid) = (book.best_synthetic(Side::Sell), book.best_synthetic(Side::Buy));
    if let Some(ask) = ask {
        if book.best_bid().is_some_and(|(p, _)| p >= ask) {
            ex.execute(i, Side::Sell, Some(ask), Amount::All, Taker::Synthetic, now);
        }
    }
    let book = &ex.markets[i].book;
    if let Some(bid) = bid {
        if book.best_ask().is_some_and(|(p, _)| p <= bid) {
            ex.execute(i, Side::Buy, Some(bid), Amount::All, Taker::Synthetic, now);
        }
    }
}

/// A market trade: liquidity better than its price was not there (it is removed), and it takes
/// up to its quantity from the book in price-time order, down to its price; users' orders at a
/// level fill after the market's quantity queued ahead of them.
fn trade(ex: &mut Exchange, i: usize, price: Decimal, qty: Decimal, buyer_maker: bool, now: i64) {
    let taker = if buyer_maker { Side::Sell } else { Side::Buy };
    let book = &mut ex.markets[i].book;
    match taker {
        Side::Sell => book.remove_synthetic_better_than(Side::Buy, price),
        Side::Buy => book.remove_synthetic_better_than(Side::Sell, price),
    }
    ex.touch_top(i);
    ex.execute(i, taker, Some(price), Amount::Base(qty), Taker::Synthetic, now);
}
