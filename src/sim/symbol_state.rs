//! One symbol's market as the simulated exchange keeps it: its book, recent trades, candles and
//! the names of its streams. The matching changes it; the feed publishes it.

use std::collections::VecDeque;

use rust_decimal::Decimal;

use super::book::Book;
use super::candles::{Candles, INTERVALS};
use super::config::SymbolSpec;

#[derive(Debug, Clone, PartialEq)]
pub struct TradeRec {
    pub id: u64,
    pub price: Decimal,
    pub qty: Decimal,
    pub time: i64,
    pub buyer_maker: bool,
}

/// Stream names of one symbol, built once.
#[derive(Debug, Clone)]
pub struct StreamNames {
    pub trade: String,
    pub agg_trade: String,
    pub book_ticker: String,
    pub depth_slow: String,
    pub depth_fast: String,
    /// `(levels, slow name, fast name)`.
    pub partial: Vec<(usize, String, String)>,
    /// `(interval, interval ms, name)`.
    pub klines: Vec<(&'static str, i64, String)>,
    pub mini_ticker: String,
    pub ticker: String,
    /// Rolling-window tickers: `(window, window ms, name)`.
    pub window_tickers: Vec<(&'static str, i64, String)>,
    pub avg_price: String,
}

/// The rolling windows of the `<symbol>@ticker_<window>` and `!ticker_<window>@arr` streams.
pub const TICKER_WINDOWS: [(&str, i64); 3] = [("1h", 3_600_000), ("4h", 14_400_000), ("1d", 86_400_000)];

impl StreamNames {
    pub(super) fn new(lower: &str) -> Self {
        StreamNames {
            trade: format!("{lower}@trade"),
            agg_trade: format!("{lower}@aggTrade"),
            book_ticker: format!("{lower}@bookTicker"),
            depth_slow: format!("{lower}@depth"),
            depth_fast: format!("{lower}@depth@100ms"),
            partial: [5, 10, 20]
                .into_iter()
                .map(|n| (n, format!("{lower}@depth{n}"), format!("{lower}@depth{n}@100ms")))
                .collect(),
            klines: INTERVALS
                .iter()
                .map(|(i, ms)| (*i, *ms, format!("{lower}@kline_{i}")))
                .collect(),
            mini_ticker: format!("{lower}@miniTicker"),
            ticker: format!("{lower}@ticker"),
            window_tickers: TICKER_WINDOWS
                .iter()
                .map(|(w, ms)| (*w, *ms, format!("{lower}@ticker_{w}")))
                .collect(),
            avg_price: format!("{lower}@avgPrice"),
        }
    }
}

/// A side's best `(price, quantity)`, if any.
type BestLevel = Option<(Decimal, Decimal)>;

pub struct Market {
    pub spec: SymbolSpec,
    pub streams: StreamNames,
    pub book: Book,
    pub trades: VecDeque<TradeRec>,
    pub next_trade_id: u64,
    pub candles: Candles,
    pub(super) last_top: (BestLevel, BestLevel),
    pub(super) open_orders: usize,
}
