//! Price statistics of one symbol, shared by the REST / WebSocket API tickers and the ticker streams:
//! the last price, the rolling 5-minute average price and window statistics from the candles.

use rust_decimal::Decimal;

use super::num::d8;
use super::symbol_state::Market;
use crate::exchange::binance::wire::Ticker24hr;

/// The average-price window (`avgPrice`, the `NOTIONAL` filter's `avgPriceMins`).
pub const AVG_PRICE_MINS: i64 = 5;

/// Mid of the book, else the last trade.
pub fn reference_price(m: &Market) -> Option<Decimal> {
    match (m.book.best_bid(), m.book.best_ask()) {
        (Some((b, _)), Some((a, _))) => Some((a + b) / Decimal::TWO),
        _ => m.trades.back().map(|t| t.price),
    }
}

/// The last trade's price, else the reference price before any trade.
pub fn last_price(m: &Market) -> Decimal {
    let last_trade = m.trades.back().map(|t| t.price);
    last_trade.or_else(|| reference_price(m)).unwrap_or_default()
}

/// Volume-weighted price of the last five minutes' trades (the reference price when quiet).
pub fn avg_price(m: &Market, now: i64) -> Decimal {
    let recent = m
        .candles
        .since(now - AVG_PRICE_MINS * 60_000)
        .filter(|c| !c.volume.is_zero());
    match &recent {
        Some(c) => c.quote_volume / c.volume,
        None => reference_price(m).unwrap_or_default(),
    }
}

/// Statistics over the minutes from `open_time` on (24hr, rolling-window and trading-day tickers);
/// MINI leaves out the change, its percent and the weighted average.
pub fn window(m: &Market, open_time: i64, close_time: i64, mini: bool) -> Ticker24hr {
    let last_price = last_price(m);
    let window = m.candles.since(open_time).filter(|c| c.trades > 0);
    let (open, high, low, volume, quote_volume, count, first_id, last_id) = match &window {
        Some(c) => (
            c.open,
            c.high,
            c.low,
            c.volume,
            c.quote_volume,
            c.trades,
            c.first_id,
            c.last_id,
        ),
        None => (
            last_price,
            last_price,
            last_price,
            Decimal::ZERO,
            Decimal::ZERO,
            0,
            -1,
            -1,
        ),
    };
    let mut row = Ticker24hr {
        symbol: m.spec.symbol.clone(),
        open_price: d8(open),
        high_price: d8(high),
        low_price: d8(low),
        last_price: d8(last_price),
        volume: d8(volume),
        quote_volume: d8(quote_volume),
        open_time,
        close_time,
        first_id,
        last_id,
        count,
        ..Default::default()
    };
    if !mini {
        let change = last_price - open;
        row.price_change = Some(d8(change));
        row.price_change_percent = Some(if open.is_zero() {
            Decimal::ZERO
        } else {
            (change / open * Decimal::ONE_HUNDRED).round_dp(3)
        });
        row.weighted_avg_price = Some(d8(if volume.is_zero() {
            last_price
        } else {
            quote_volume / volume
        }));
    }
    row
}
