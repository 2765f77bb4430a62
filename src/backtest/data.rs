//! Backtest inputs, read into one time-ordered list of market items: recording files
//! (`runner record`) and Binance's public historical CSV files (`trades`, `aggTrades`, klines).
//!
//! Every problem is one [`DataError`] naming the file and the row (or block) at fault.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rust_decimal::Decimal;

use crate::exchange::binance::orders::symbols::symbol_info;
use crate::exchange::binance::wire::{BookTickerEvent, DepthUpdateEvent, ExchangeInfo, KlineEvent, TradeEvent};
use crate::exchange::{Kline, SymbolInfo};
use crate::record::{BlockReader, FormatError, RecordKind};

pub use crate::sim::replay::{Level, MarketItem};

/// One item at its exchange time (ms).
#[derive(Debug, Clone)]
pub struct Timed {
    pub time_ms: i64,
    pub item: MarketItem,
}

/// Everything a backtest replays.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub items: Vec<Timed>,
    pub symbols: Vec<SymbolInfo>,
    /// True when the market comes from trades or klines only: the replay then quotes a book
    /// around each trade (see docs/backtesting.md).
    pub synthetic_book: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Recording(#[from] FormatError),
    #[error("{}: {what}", path.display())]
    Layout { path: PathBuf, what: String },
    #[error("{}: row {row}: {what}", path.display())]
    Row { path: PathBuf, row: u64, what: String },
    #[error("{}: block {block}, record {record}: {what}", path.display())]
    Record {
        path: PathBuf,
        block: u64,
        record: usize,
        what: String,
    },
    #[error("{}: no data files (*.rrec recordings or Binance *.csv files)", path.display())]
    Empty { path: PathBuf },
    #[error("{}: no data between {from} and {to} (the data covers {first} to {last}, epoch ms)", path.display())]
    NoDataInRange {
        path: PathBuf,
        from: i64,
        to: i64,
        first: i64,
        last: i64,
    },
}

/// Reads every data file under `dir` (or the one file `dir` names) and keeps items in `[from, to]`.
pub fn load(dir: &Path, from: Option<i64>, to: Option<i64>) -> Result<Dataset, DataError> {
    let io = |source| DataError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut files: Vec<PathBuf> = if dir.is_file() {
        vec![dir.to_owned()]
    } else {
        std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect()
    };
    // Recording names start with their UTC start time: name order is time order.
    files.sort();
    if files.is_empty() {
        return Err(DataError::Empty { path: dir.to_owned() });
    }
    let mut data = Dataset::default();
    let mut streams: Vec<Vec<Timed>> = Vec::new();
    for file in &files {
        match file.extension().and_then(|e| e.to_str()) {
            Some("rrec") => {
                let (items, symbols) = read_recording(file)?;
                if let Some(previous) = streams.last().and_then(|s| s.last()).filter(|_| !data.synthetic_book) {
                    if let Some(first) = items.first().filter(|f| f.time_ms < previous.time_ms) {
                        return Err(DataError::Layout {
                            path: file.clone(),
                            what: format!(
                                "starts at {} ms, before the previous file ends ({} ms): recordings overlap",
                                first.time_ms, previous.time_ms
                            ),
                        });
                    }
                }
                merge_symbols(&mut data.symbols, symbols);
                streams.push(items);
            }
            Some("csv") => {
                let (items, info) = read_csv(file)?;
                merge_symbols(&mut data.symbols, vec![info]);
                data.synthetic_book = true;
                streams.push(items);
            }
            _ => {
                return Err(DataError::Layout {
                    path: file.clone(),
                    what: "unknown layout: expected a recording (.rrec) or a Binance CSV file (.csv)".into(),
                })
            }
        }
    }
    let mut items: Vec<Timed> = streams.into_iter().flatten().collect();
    // Stable: items of one instant keep their file order.
    items.sort_by_key(|t| t.time_ms);
    let (first, last) = match (items.first(), items.last()) {
        (Some(f), Some(l)) => (f.time_ms, l.time_ms),
        _ => return Err(DataError::Empty { path: dir.to_owned() }),
    };
    let (lo, hi) = (from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX));
    // Book snapshots before the range still set the book the range starts from.
    items.retain(|t| t.time_ms <= hi && (t.time_ms >= lo || matches!(t.item, MarketItem::Snapshot { .. })));
    if !items.iter().any(|t| t.time_ms >= lo) {
        return Err(DataError::NoDataInRange {
            path: dir.to_owned(),
            from: lo,
            to: hi,
            first,
            last,
        });
    }
    for t in &mut items {
        t.time_ms = t.time_ms.max(lo);
    }
    data.items = items;
    Ok(data)
}

fn merge_symbols(into: &mut Vec<SymbolInfo>, more: Vec<SymbolInfo>) {
    for info in more {
        if !into.iter().any(|s| s.symbol == info.symbol) {
            into.push(info);
        }
    }
}

fn dec(text: &str) -> Option<Decimal> {
    text.trim().parse::<Decimal>().ok()
}

fn levels(rows: &[[&str; 2]]) -> Option<Vec<Level>> {
    rows.iter().map(|[p, q]| Some((dec(p)?, dec(q)?))).collect()
}

/// A recording's items, at the time they were received (ms), and its symbols' rules.
fn read_recording(path: &Path) -> Result<(Vec<Timed>, Vec<SymbolInfo>), DataError> {
    let mut reader = BlockReader::open(path)?;
    let mut items = Vec::new();
    let mut symbols = Vec::new();
    let mut block = 0u64;
    let mut last_us = i64::MIN;
    while let Some(records) = reader.next_block()? {
        for (index, record) in records.iter().enumerate() {
            let bad = |what: String| DataError::Record {
                path: path.to_owned(),
                block,
                record: index,
                what,
            };
            if record.received_us < last_us {
                return Err(bad(format!(
                    "timestamps out of order ({} µs after {} µs)",
                    record.received_us, last_us
                )));
            }
            last_us = record.received_us;
            let time_ms = record.received_us.div_euclid(1000);
            let text = std::str::from_utf8(&record.payload).map_err(|_| bad("not UTF-8 text".into()))?;
            match record.kind {
                RecordKind::ExchangeInfo => {
                    let info: ExchangeInfo =
                        serde_json::from_str(text).map_err(|e| bad(format!("bad exchangeInfo: {e}")))?;
                    symbols = info.symbols.iter().map(symbol_info).collect();
                }
                RecordKind::DepthSnapshot => {
                    let item = snapshot_item(text).ok_or_else(|| bad("bad order-book snapshot".into()))?;
                    items.push(Timed { time_ms, item });
                }
                RecordKind::Stream => {
                    if let Some(item) = stream_item(text).map_err(bad)? {
                        items.push(Timed { time_ms, item });
                    }
                }
            }
        }
        block += 1;
    }
    if symbols.is_empty() {
        return Err(DataError::Layout {
            path: path.to_owned(),
            what: "the recording has no exchangeInfo record (its first block is missing)".into(),
        });
    }
    Ok((items, symbols))
}

pub(crate) fn snapshot_item(text: &str) -> Option<MarketItem> {
    #[derive(serde::Deserialize)]
    struct Snap<'a> {
        symbol: &'a str,
        #[serde(rename = "lastUpdateId")]
        last_update_id: u64,
        #[serde(borrow)]
        bids: Vec<[&'a str; 2]>,
        #[serde(borrow)]
        asks: Vec<[&'a str; 2]>,
    }
    let snap: Snap = serde_json::from_str(text).ok()?;
    Some(MarketItem::Snapshot {
        symbol: Arc::from(snap.symbol),
        update_id: snap.last_update_id,
        bids: levels(&snap.bids)?,
        asks: levels(&snap.asks)?,
    })
}

/// One combined-stream frame; `None` for streams a backtest does not use.
pub(crate) fn stream_item(text: &str) -> Result<Option<MarketItem>, String> {
    #[derive(serde::Deserialize)]
    struct Frame<'a> {
        #[serde(borrow)]
        stream: &'a str,
        #[serde(borrow)]
        data: &'a serde_json::value::RawValue,
    }
    let frame: Frame = serde_json::from_str(text).map_err(|e| format!("not a stream frame: {e}"))?;
    let data = frame.data.get();
    let bad = |e: serde_json::Error| format!("bad {} event: {e}", frame.stream);
    let num = |s: &str| dec(s).ok_or_else(|| format!("bad number {s:?} in {}", frame.stream));
    let kind = frame.stream.split_once('@').map_or("", |(_, k)| k);
    let item = if kind == "bookTicker" {
        let e: BookTickerEvent = serde_json::from_str(data).map_err(bad)?;
        MarketItem::Book {
            symbol: Arc::from(e.s),
            update_id: e.u,
            bid: (num(e.b)?, num(e.bid_qty)?),
            ask: (num(e.a)?, num(e.ask_qty)?),
        }
    } else if kind == "trade" {
        let e: TradeEvent = serde_json::from_str(data).map_err(bad)?;
        MarketItem::Trade {
            symbol: Arc::from(e.s),
            id: e.t,
            price: num(e.p)?,
            qty: num(e.q)?,
            buyer_maker: e.m,
        }
    } else if kind.starts_with("depth")
        && !kind.starts_with("depth5")
        && !kind.starts_with("depth1")
        && !kind.starts_with("depth2")
    {
        let e: DepthUpdateEvent = serde_json::from_str(data).map_err(bad)?;
        MarketItem::Depth {
            symbol: Arc::from(e.s),
            first_id: e.first_update_id,
            last_id: e.u,
            bids: levels(&e.b).ok_or_else(|| format!("bad level in {}", frame.stream))?,
            asks: levels(&e.a).ok_or_else(|| format!("bad level in {}", frame.stream))?,
        }
    } else if kind.starts_with("kline_") {
        let e: KlineEvent = serde_json::from_str(data).map_err(bad)?;
        let f = |s: &str| num(s).map(|d| d.try_into().unwrap_or(0.0));
        MarketItem::Kline {
            symbol: Arc::from(e.s),
            interval: Arc::from(e.k.i),
            kline: Kline {
                open_time: e.k.t,
                open: f(e.k.o)?,
                high: f(e.k.h)?,
                low: f(e.k.l)?,
                close: f(e.k.c)?,
                volume: f(e.k.v)?,
                close_time: e.k.close_time,
            },
            closed: e.k.x,
        }
    } else {
        return Ok(None);
    };
    Ok(Some(item))
}

/// Binance's public CSV layouts (data.binance.vision, spot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `id,price,qty,quoteQty,time,isBuyerMaker,isBestMatch`
    Trades,
    /// `aggTradeId,price,qty,firstTradeId,lastTradeId,time,isBuyerMaker,isBestMatch`
    AggTrades,
    /// `openTime,open,high,low,close,volume,closeTime,quoteVolume,count,takerBuyBase,takerBuyQuote,ignore`
    Klines,
}

impl Layout {
    fn columns(self) -> usize {
        match self {
            Layout::Trades => 7,
            Layout::AggTrades => 8,
            Layout::Klines => 12,
        }
    }
}

/// Quote assets, longest first, to split a symbol name into base and quote.
const QUOTES: &[&str] = &[
    "FDUSD", "USDT", "USDC", "TUSD", "BUSD", "EUR", "TRY", "BRL", "JPY", "BTC", "ETH", "BNB", "DAI",
];

/// A Binance CSV file: `SYMBOL-trades-DATE.csv`, `SYMBOL-aggTrades-DATE.csv` or `SYMBOL-INTERVAL-DATE.csv`.
fn read_csv(path: &Path) -> Result<(Vec<Timed>, SymbolInfo), DataError> {
    let name = path.file_stem().and_then(|n| n.to_str()).unwrap_or_default();
    let mut parts = name.split('-');
    let (symbol, kind) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let layout_err = |what: String| DataError::Layout {
        path: path.to_owned(),
        what,
    };
    let (layout, interval) = match kind {
        "trades" => (Layout::Trades, None),
        "aggTrades" => (Layout::AggTrades, None),
        k if crate::sim::candles::interval_ms(k).is_some() => (Layout::Klines, Some(k)),
        _ => {
            return Err(layout_err(format!(
                "unknown layout: the name should be SYMBOL-trades-DATE.csv, SYMBOL-aggTrades-DATE.csv or SYMBOL-INTERVAL-DATE.csv, not {name}.csv"
            )))
        }
    };
    let quote = QUOTES
        .iter()
        .find(|q| symbol.len() > q.len() && symbol.ends_with(*q))
        .ok_or_else(|| layout_err(format!("cannot tell the quote asset of symbol {symbol:?}")))?;
    let base = &symbol[..symbol.len() - quote.len()];
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    let sym: Arc<str> = Arc::from(symbol);
    let interval: Arc<str> = Arc::from(interval.unwrap_or(""));
    let (mut price_scale, mut qty_scale) = (0u32, 0u32);
    let mut items = Vec::new();
    let mut last_time = i64::MIN;
    for (index, line) in text.lines().enumerate() {
        let row = index as u64 + 1;
        let bad = |what: String| DataError::Row {
            path: path.to_owned(),
            row,
            what,
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split(',').collect();
        if row == 1 && cols.first().is_some_and(|c| c.trim().parse::<i64>().is_err()) {
            continue; // a header line
        }
        if cols.len() != layout.columns() {
            return Err(bad(format!(
                "{} columns where the {:?} layout has {} (is the file truncated or of another layout?)",
                cols.len(),
                layout,
                layout.columns()
            )));
        }
        let int = |i: usize| {
            cols[i]
                .trim()
                .parse::<i64>()
                .map_err(|_| bad(format!("column {}: not an integer: {:?}", i + 1, cols[i])))
        };
        let num = |i: usize| dec(cols[i]).ok_or_else(|| bad(format!("column {}: not a number: {:?}", i + 1, cols[i])));
        let flag = |i: usize| match cols[i].trim() {
            "True" | "true" => Ok(true),
            "False" | "false" => Ok(false),
            other => Err(bad(format!("column {}: not True/False: {other:?}", i + 1))),
        };
        let (time_col, price_col, qty_col) = match layout {
            Layout::Trades => (4, 1, 2),
            Layout::AggTrades => (5, 1, 2),
            Layout::Klines => (0, 4, 5),
        };
        let time_ms = to_ms(int(time_col)?);
        if time_ms < last_time {
            return Err(bad(format!(
                "timestamps out of order ({time_ms} ms after {last_time} ms)"
            )));
        }
        last_time = time_ms;
        let (price, qty) = (num(price_col)?, num(qty_col)?);
        price_scale = price_scale.max(price.normalize().scale());
        // A kline's volume says nothing of the lot step: klines-only data gets 8 decimals.
        qty_scale = match layout {
            Layout::Klines => 8,
            _ => qty_scale.max(qty.normalize().scale()),
        };
        match layout {
            Layout::Trades | Layout::AggTrades => {
                let maker_col = if layout == Layout::Trades { 5 } else { 6 };
                items.push(Timed {
                    time_ms,
                    item: MarketItem::Trade {
                        symbol: sym.clone(),
                        id: int(0)? as u64,
                        price,
                        qty,
                        buyer_maker: flag(maker_col)?,
                    },
                });
            }
            Layout::Klines => {
                let f = |i: usize| num(i).map(|d| d.try_into().unwrap_or(0.0));
                let close_time = to_ms(int(6)?);
                // Klines-only data: the candle's path becomes four trades (docs/backtesting.md).
                let (open, high, low, close) = (num(1)?, num(2)?, num(3)?, num(4)?);
                let path = if close >= open {
                    [open, low, high, close]
                } else {
                    [open, high, low, close]
                };
                let quarter = (qty / Decimal::from(4)).round_dp(qty.scale().max(8));
                for (k, price) in path.into_iter().enumerate() {
                    let previous = if k == 0 { open } else { path[k - 1] };
                    items.push(Timed {
                        time_ms: time_ms + (close_time - time_ms) * k as i64 / 4,
                        item: MarketItem::Trade {
                            symbol: sym.clone(),
                            id: 0,
                            price,
                            qty: quarter,
                            // A move down is sellers hitting bids.
                            buyer_maker: price < previous,
                        },
                    });
                }
                items.push(Timed {
                    time_ms: close_time,
                    item: MarketItem::Kline {
                        symbol: sym.clone(),
                        interval: interval.clone(),
                        kline: Kline {
                            open_time: time_ms,
                            open: f(1)?,
                            high: f(2)?,
                            low: f(3)?,
                            close: f(4)?,
                            volume: f(5)?,
                            close_time,
                        },
                        closed: true,
                    },
                });
            }
        }
    }
    if items.is_empty() {
        return Err(layout_err("no rows".into()));
    }
    let info = csv_symbol(symbol, base, quote, price_scale, qty_scale);
    Ok((items, info))
}

/// Spot files give microseconds from 2025 on, milliseconds before: anything past year 5138 in ms is µs.
fn to_ms(stamp: i64) -> i64 {
    if stamp.abs() >= 100_000_000_000_000 {
        stamp / 1000
    } else {
        stamp
    }
}

/// Trading rules for a CSV symbol: tick and step are the finest the file prints, no minimum notional.
fn csv_symbol(symbol: &str, base: &str, quote: &str, price_scale: u32, qty_scale: u32) -> SymbolInfo {
    let tick = Decimal::new(1, price_scale.min(16));
    let step = Decimal::new(1, qty_scale.min(16));
    SymbolInfo {
        symbol: symbol.to_string(),
        base: base.to_string(),
        quote: quote.to_string(),
        status: "TRADING".into(),
        tick_size: tick,
        min_price: tick,
        max_price: Decimal::from(1_000_000u32),
        step_size: step,
        min_qty: step,
        max_qty: Decimal::from(9_000_000u32),
        market_step_size: Decimal::ZERO,
        market_min_qty: Decimal::ZERO,
        market_max_qty: Decimal::ZERO,
        min_notional: Decimal::ZERO,
        apply_min_to_market: false,
        max_notional: Decimal::ZERO,
        apply_max_to_market: false,
        max_num_orders: Some(200),
        base_precision: 8,
        quote_precision: 8,
    }
}
