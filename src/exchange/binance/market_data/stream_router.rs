//! Market-stream frames in, market state and events out: parses combined-stream
//! frames (the book-ticker hot path borrows from the frame and allocates nothing
//! but the quote), keeps the latest quote per symbol and the local order books,
//! and delivers events to the sink.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde::Deserialize;

use crate::exchange::types::{Depth, Kline, Quote, Trade};
use crate::exchange::{EventSink, MarketEvent};

use super::book::{BookSync, DepthDiff, DiffOutcome, SnapshotOutcome};
use super::kline_series::KlineSeries;
use crate::exchange::binance::orders::symbols::SymbolTable;
use crate::exchange::binance::transport::api_calls::{Rest, RetryPolicy};
use crate::exchange::binance::transport::gateway::{Gateway, CLIENT_STRATEGY};
use crate::exchange::binance::wire::{BookTickerEvent, Combined, DepthUpdateEvent, KlineEvent, TradeEvent};

/// At most one "malformed frame" warning per this interval (with a count of the skipped).
const MALFORMED_LOG_EVERY_MS: i64 = 10_000;
/// How long a snapshot fetch may wait for budget.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(30);

pub struct Router {
    gateway: Arc<Gateway>,
    symbols: Arc<SymbolTable>,
    snapshot_limit: u32,
    quotes: RwLock<HashMap<Arc<str>, Quote>>,
    books: Mutex<HashMap<Arc<str>, BookSync>>,
    klines: KlineSeries,
    sink: RwLock<Option<Arc<dyn EventSink>>>,
    malformed_count: AtomicU64,
    /// Market frames decoded: one per frame, however many strategies get its event.
    frames_parsed: AtomicU64,
    malformed_logged_at: AtomicI64,
    /// Quotes received at or before this exchange time (ms) may be stale: a market connection dropped then.
    quotes_live_after_ms: AtomicI64,
}

fn parse_f64(s: &str) -> Option<f64> {
    s.parse().ok()
}

/// The `stream` field of a combined frame, read without parsing the whole frame.
fn stream_name(text: &str) -> Option<&str> {
    let rest = text.trim_start().strip_prefix("{\"stream\":\"")?;
    rest.split_once('"').map(|(name, _)| name)
}

impl Router {
    pub fn new(gateway: Arc<Gateway>, symbols: Arc<SymbolTable>, snapshot_limit: u32) -> Self {
        Router {
            gateway,
            symbols,
            snapshot_limit,
            quotes: RwLock::new(HashMap::new()),
            books: Mutex::new(HashMap::new()),
            klines: KlineSeries::default(),
            sink: RwLock::new(None),
            malformed_count: AtomicU64::new(0),
            frames_parsed: AtomicU64::new(0),
            malformed_logged_at: AtomicI64::new(i64::MIN),
            quotes_live_after_ms: AtomicI64::new(i64::MIN),
        }
    }

    pub fn set_sink(&self, sink: Arc<dyn EventSink>) {
        *self.sink.write() = Some(sink);
    }

    fn emit(&self, event: MarketEvent, received: Instant) {
        if let Some(sink) = self.sink.read().as_ref() {
            sink.market_received(event, received);
        }
    }

    pub fn quote(&self, symbol: &str) -> Option<Quote> {
        self.quotes.read().get(symbol).cloned()
    }

    /// The latest quote if it arrived after the last market connection dropped (a connection that drops
    /// stops its quotes: a quote from before may no longer be current).
    pub fn live_quote(&self, symbol: &str) -> Option<Quote> {
        let after = self.quotes_live_after_ms.load(Ordering::Acquire);
        self.quotes.read().get(symbol).filter(|q| q.time > after).cloned()
    }

    pub fn book(&self, symbol: &str, levels: usize) -> Option<Depth> {
        self.books.lock().get(symbol)?.depth(levels)
    }

    /// Exact top levels of a live book (tests compare them with the exchange's).
    pub fn book_levels(&self, symbol: &str, levels: usize) -> Option<super::book::ExactLevels> {
        self.books.lock().get(symbol)?.exact_levels(levels)
    }

    /// Starts keeping a local book for `symbol` (its depth stream was subscribed).
    pub fn track_book(&self, symbol: &str) {
        if let Some(name) = self.symbols.intern(symbol) {
            self.books.lock().entry(name).or_insert_with(|| BookSync::new(symbol));
        }
    }

    pub fn untrack_book(&self, symbol: &str) {
        self.books.lock().remove(symbol);
    }

    /// Starts keeping candles of `symbol` at `interval` (its kline stream was subscribed).
    pub fn track_klines(&self, symbol: &str, interval: &str) {
        self.klines.track(symbol, interval);
    }

    pub fn untrack_klines(&self, symbol: &str, interval: &str) {
        self.klines.untrack(symbol, interval);
    }

    /// A REST klines answer: the history a tracked series continues from.
    pub fn seed_klines(&self, symbol: &str, interval: &str, rows: &[Kline]) {
        self.klines.seed(symbol, interval, rows);
    }

    /// The last `limit` candles kept from the stream, if it holds them all.
    pub fn klines(&self, symbol: &str, interval: &str, limit: usize) -> Option<Vec<Kline>> {
        self.klines.latest(symbol, interval, limit)
    }

    /// A connection carrying `streams` (re)connected: events may have been missed,
    /// so the books and candle series it feeds start over.
    pub fn on_connected(&self, streams: &BTreeSet<String>) {
        let mut books = self.books.lock();
        for stream in streams {
            if let Some((symbol, kind)) = stream.split_once('@') {
                if let Some(interval) = kind.strip_prefix("kline_") {
                    self.klines.unseed(&symbol.to_ascii_uppercase(), interval);
                }
                if kind.starts_with("depth") {
                    if let Some(book) = books.get_mut(symbol.to_ascii_uppercase().as_str()) {
                        book.reset();
                    }
                }
            }
        }
    }

    /// A connection carrying `streams` dropped or closed: its books and quotes stop being current.
    pub fn on_disconnected(&self, streams: &BTreeSet<String>) {
        self.on_connected(streams);
        self.quotes_live_after_ms
            .fetch_max(self.gateway.now_ms(), Ordering::AcqRel);
    }

    /// Handles one text frame, read at `received`, and delivers its event; malformed frames
    /// are counted, logged (rate-limited) and skipped.
    pub fn on_frame(self: &Arc<Self>, text: &str, received: Instant) {
        let mut events = Vec::new();
        self.on_frame_into(text, received, self.gateway.now_ms(), &mut events);
        self.deliver(&mut events);
    }

    /// Handles one text frame, read at `received` (exchange time `received_ms`), adding its event (if
    /// any) to `events` for [`Router::deliver`]: frames read together are handed on together and
    /// share one clock reading.
    pub fn on_frame_into(
        self: &Arc<Self>,
        text: &str,
        received: Instant,
        received_ms: i64,
        events: &mut Vec<(MarketEvent, Instant)>,
    ) {
        let handled = match stream_name(text).and_then(|name| name.split_once('@')) {
            Some((_, "bookTicker")) => self.on_book_ticker(text, received, received_ms, events),
            Some((_, kind)) if kind.starts_with("depth") => self.on_depth(text, received, events),
            Some((_, "trade")) => self.on_trade(text, received, events),
            Some((_, kind)) if kind.starts_with("kline_") => self.on_kline(text, received, events),
            Some(_) => false,
            // Replies to SUBSCRIBE / UNSUBSCRIBE: `{"result":null,"id":1}`.
            None => self.on_control_reply(text),
        };
        if !handled {
            self.malformed(text);
        }
    }

    /// Hands `events` (from [`Router::on_frame_into`]) to the sink in one go; leaves it empty.
    pub fn deliver(&self, events: &mut Vec<(MarketEvent, Instant)>) {
        if events.is_empty() {
            return;
        }
        match self.sink.read().as_ref() {
            Some(sink) => sink.market_batch(events),
            None => events.clear(),
        }
    }

    /// Market frames decoded since start (one per frame: its event is shared by every strategy that
    /// gets it).
    pub fn frames_parsed(&self) -> u64 {
        self.frames_parsed.load(Ordering::Relaxed)
    }

    /// Decodes a market frame and counts it.
    fn parse<'a, T: Deserialize<'a>>(&self, text: &'a str) -> Option<T> {
        let frame = serde_json::from_str(text).ok()?;
        self.frames_parsed.fetch_add(1, Ordering::Relaxed);
        Some(frame)
    }

    fn on_book_ticker(
        &self,
        text: &str,
        received: Instant,
        received_ms: i64,
        events: &mut Vec<(MarketEvent, Instant)>,
    ) -> bool {
        let Some(frame) = self.parse::<Combined<'_, BookTickerEvent<'_>>>(text) else {
            return false;
        };
        let e = frame.data;
        let (Some(bid), Some(bid_qty), Some(ask), Some(ask_qty)) = (
            parse_f64(e.b),
            parse_f64(e.bid_qty),
            parse_f64(e.a),
            parse_f64(e.ask_qty),
        ) else {
            return false;
        };
        let quote = {
            let mut quotes = self.quotes.write();
            // One lookup per quote: a symbol seen before lends its interned name from its latest quote.
            match quotes.get_mut(e.s) {
                // Out-of-order updates must not replace a newer quote.
                Some(latest) if latest.update_id > e.u => return true,
                Some(latest) => {
                    *latest = Quote {
                        symbol: Arc::clone(&latest.symbol),
                        bid,
                        bid_qty,
                        ask,
                        ask_qty,
                        update_id: e.u,
                        time: received_ms,
                    };
                    latest.clone()
                }
                None => {
                    let Some(symbol) = self.symbols.intern(e.s) else {
                        return false;
                    };
                    let quote = Quote {
                        symbol,
                        bid,
                        bid_qty,
                        ask,
                        ask_qty,
                        update_id: e.u,
                        time: received_ms,
                    };
                    quotes.insert(Arc::clone(&quote.symbol), quote.clone());
                    quote
                }
            }
        };
        events.push((MarketEvent::Book(quote), received));
        true
    }

    fn on_depth(self: &Arc<Self>, text: &str, received: Instant, events: &mut Vec<(MarketEvent, Instant)>) -> bool {
        let Some(frame) = self.parse::<Combined<'_, DepthUpdateEvent<'_>>>(text) else {
            return false;
        };
        let Some(diff) = DepthDiff::from_wire(&frame.data) else {
            return false;
        };
        let Some(symbol) = self.symbols.intern(frame.data.s) else {
            return false;
        };
        let outcome = {
            let mut books = self.books.lock();
            let Some(book) = books.get_mut(&symbol) else {
                return true; // not tracked (any more)
            };
            let outcome = book.on_diff(diff);
            if matches!(
                outcome,
                DiffOutcome::Gap | DiffOutcome::Buffered { needs_snapshot: true }
            ) {
                book.snapshot_requested();
            }
            outcome
        };
        match outcome {
            DiffOutcome::Applied => events.push((MarketEvent::DepthChanged(symbol), received)),
            DiffOutcome::Gap | DiffOutcome::Buffered { needs_snapshot: true } => {
                if outcome == DiffOutcome::Gap {
                    tracing::info!(%symbol, "depth sequence gap; resyncing the local book");
                }
                self.fetch_snapshot(symbol);
            }
            DiffOutcome::Buffered { .. } | DiffOutcome::Stale => {}
        }
        true
    }

    /// Fetches a REST depth snapshot (charged) and syncs the book with it.
    fn fetch_snapshot(self: &Arc<Self>, symbol: Arc<str>) {
        let router = Arc::clone(self);
        self.gateway.spawn(async move {
            let rest = Rest {
                gateway: &router.gateway,
                retry: RetryPolicy::default(),
            };
            let result = rest
                .depth(CLIENT_STRATEGY, SNAPSHOT_WAIT, &symbol, router.snapshot_limit)
                .await;
            let mut books = router.books.lock();
            let Some(book) = books.get_mut(&symbol) else { return };
            match result {
                Ok(snapshot) => match book.on_snapshot(&snapshot) {
                    SnapshotOutcome::Synced => {
                        drop(books);
                        router.emit(MarketEvent::DepthChanged(symbol), Instant::now());
                    }
                    SnapshotOutcome::Refetch => {
                        tracing::debug!(%symbol, "depth snapshot older than the buffered events; fetching again");
                    }
                },
                Err(e) => {
                    book.snapshot_failed();
                    tracing::warn!(%symbol, "depth snapshot failed: {e}");
                }
            }
        });
    }

    fn on_trade(&self, text: &str, received: Instant, events: &mut Vec<(MarketEvent, Instant)>) -> bool {
        let Some(frame) = self.parse::<Combined<'_, TradeEvent<'_>>>(text) else {
            return false;
        };
        let e = frame.data;
        let (Some(symbol), Some(price), Some(qty)) = (self.symbols.intern(e.s), parse_f64(e.p), parse_f64(e.q)) else {
            return false;
        };
        events.push((
            MarketEvent::Trade(Trade {
                symbol,
                id: e.t,
                price,
                qty,
                time: e.trade_time,
                buyer_maker: e.m,
            }),
            received,
        ));
        true
    }

    fn on_kline(&self, text: &str, received: Instant, events: &mut Vec<(MarketEvent, Instant)>) -> bool {
        let Some(frame) = self.parse::<Combined<'_, KlineEvent<'_>>>(text) else {
            return false;
        };
        let k = &frame.data.k;
        let (Some(symbol), Some(open), Some(high), Some(low), Some(close), Some(volume)) = (
            self.symbols.intern(frame.data.s),
            parse_f64(k.o),
            parse_f64(k.h),
            parse_f64(k.l),
            parse_f64(k.c),
            parse_f64(k.v),
        ) else {
            return false;
        };
        let kline = Kline {
            open_time: k.t,
            open,
            high,
            low,
            close,
            volume,
            close_time: k.close_time,
        };
        self.klines.update(&symbol, k.i, kline);
        events.push((
            MarketEvent::Kline {
                symbol,
                interval: Arc::from(k.i),
                kline,
                closed: k.x,
            },
            received,
        ));
        true
    }

    fn on_control_reply(&self, text: &str) -> bool {
        #[derive(Deserialize)]
        struct Reply {
            #[serde(default)]
            error: Option<serde_json::Value>,
            id: Option<serde_json::Value>,
        }
        match serde_json::from_str::<Reply>(text) {
            Ok(Reply { error: Some(error), id }) => {
                tracing::warn!(?id, %error, "market stream request refused");
                true
            }
            Ok(Reply { id: Some(_), .. }) => true,
            _ => false,
        }
    }

    fn malformed(&self, text: &str) {
        let skipped = self.malformed_count.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.gateway.now_ms();
        let last = self.malformed_logged_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= MALFORMED_LOG_EVERY_MS
            && self
                .malformed_logged_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let sample: String = text.chars().take(120).collect();
            tracing::warn!(
                skipped_total = skipped,
                sample,
                "skipping malformed market stream frame"
            );
        }
    }

    /// Frames skipped as malformed since start.
    pub fn malformed_frames(&self) -> u64 {
        self.malformed_count.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_are_read_from_the_frame_head() {
        assert_eq!(
            stream_name(r#"{"stream":"btcusdt@bookTicker","data":{}}"#),
            Some("btcusdt@bookTicker")
        );
        assert_eq!(stream_name(r#"{"result":null,"id":1}"#), None);
        assert_eq!(stream_name("garbage"), None);
    }
}

#[cfg(test)]
mod throughput {
    use super::*;

    struct CountingSink(AtomicU64);

    impl EventSink for CountingSink {
        fn market(&self, _: MarketEvent) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        fn order(&self, _: crate::exchange::Order) {}
    }

    /// Frame → parsed quote → latest-quote table → sink. Run with
    /// `cargo test --release --lib book_ticker_frames_per_second -- --ignored --nocapture`.
    #[tokio::test]
    #[ignore = "measurement; run in release"]
    async fn book_ticker_frames_per_second() {
        let gateway = Arc::new(crate::exchange::binance::transport::gateway::unconnected_gateway("k").unwrap());
        let entry: crate::exchange::binance::wire::SymbolEntry = serde_json::from_str(
            r#"{"symbol":"BTCUSDT","status":"TRADING","baseAsset":"BTC","baseAssetPrecision":8,"quoteAsset":"USDT",
            "quotePrecision":8,"quoteAssetPrecision":8,"filters":[]}"#,
        )
        .unwrap();
        let router = Arc::new(Router::new(gateway, Arc::new(SymbolTable::from_entries(&[entry])), 100));
        let sink = Arc::new(CountingSink(AtomicU64::new(0)));
        router.set_sink(sink.clone());
        let frames: Vec<String> = (0..300_000u64)
            .map(|u| {
                format!(
                    r#"{{"stream":"btcusdt@bookTicker","data":{{"u":{u},"s":"BTCUSDT","b":"6{u}.10","B":"1.5","a":"6{u}.20","A":"2.25"}}}}"#
                )
            })
            .collect();
        // Update ids rise, so every frame is a new quote delivered to the sink.
        let rounds = 1;
        let started = std::time::Instant::now();
        for frame in &frames {
            router.on_frame(frame, Instant::now());
        }
        let elapsed = started.elapsed();
        let events = sink.0.load(Ordering::Relaxed);
        println!(
            "{} frames in {:?}: {:.0} frames/s, {:.0} ns/frame; {} events delivered",
            rounds * frames.len(),
            elapsed,
            (rounds * frames.len()) as f64 / elapsed.as_secs_f64(),
            elapsed.as_nanos() as f64 / (rounds * frames.len()) as f64,
            events
        );
        assert_eq!(events, frames.len() as u64);
    }
}
