//! Routes market events to the inboxes of the strategies subscribed to them.
//!
//! Lookups happen on the venue's stream task for every event, so they borrow the
//! symbol (no allocation) under a read lock; the table is rebuilt only when a
//! strategy's subscriptions change.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

use super::inbox::{Event, Inbox};
use crate::exchange::{MarketEvent, StreamKey, StreamKind};

#[derive(Default)]
struct SymbolRoutes {
    book: Vec<Arc<Inbox>>,
    depth: Vec<Arc<Inbox>>,
    trade: Vec<Arc<Inbox>>,
    klines: HashMap<String, Vec<Arc<Inbox>>>,
}

/// A strategy's inbox and the streams it listens to.
type Subscriber = (Arc<Inbox>, Vec<StreamKey>);

#[derive(Default)]
pub struct Dispatch {
    routes: RwLock<HashMap<String, SymbolRoutes>>,
    subscribers: Mutex<HashMap<String, Subscriber>>,
}

impl Dispatch {
    /// Replaces `strategy`'s subscriptions.
    pub fn set(&self, strategy: &str, inbox: &Arc<Inbox>, keys: Vec<StreamKey>) {
        let mut subscribers = self.subscribers.lock();
        subscribers.insert(strategy.to_owned(), (inbox.clone(), keys));
        self.rebuild(&subscribers);
    }

    pub fn remove(&self, strategy: &str) {
        let mut subscribers = self.subscribers.lock();
        if subscribers.remove(strategy).is_some() {
            self.rebuild(&subscribers);
        }
    }

    pub fn keys(&self, strategy: &str) -> Vec<StreamKey> {
        self.subscribers
            .lock()
            .get(strategy)
            .map(|(_, keys)| keys.clone())
            .unwrap_or_default()
    }

    fn rebuild(&self, subscribers: &HashMap<String, Subscriber>) {
        let mut routes: HashMap<String, SymbolRoutes> = HashMap::new();
        for (inbox, keys) in subscribers.values() {
            for key in keys {
                let entry = routes.entry(key.symbol.clone()).or_default();
                let list = match &key.kind {
                    StreamKind::Book => &mut entry.book,
                    StreamKind::Depth => &mut entry.depth,
                    StreamKind::Trade => &mut entry.trade,
                    StreamKind::Kline(interval) => entry.klines.entry(interval.clone()).or_default(),
                };
                list.push(inbox.clone());
            }
        }
        *self.routes.write() = routes;
    }

    /// Delivers `event`, read by the client at `received`, to its subscribers.
    pub fn route(&self, event: MarketEvent, received: Instant) {
        self.route_batch(std::iter::once((event, received)));
    }

    /// Delivers events read together, in order, under one look at the routes; each strategy
    /// whose inbox was empty is woken once, after all of them are queued.
    pub fn route_batch(&self, events: impl IntoIterator<Item = (MarketEvent, Instant)>) {
        let routes = self.routes.read();
        let mut symbols = SymbolCache::new(&routes);
        let mut to_wake: Vec<&Arc<Inbox>> = Vec::new();
        for (event, received) in events {
            match event {
                MarketEvent::Book(quote) => {
                    if let Some(r) = symbols.get(&quote.symbol) {
                        fan_out(&r.book, Event::Book(quote), received, &mut to_wake);
                    }
                }
                MarketEvent::DepthChanged(symbol) => {
                    if let Some(r) = symbols.get(&symbol) {
                        fan_out(&r.depth, Event::Depth(symbol), received, &mut to_wake);
                    }
                }
                MarketEvent::Trade(trade) => {
                    if let Some(r) = symbols.get(&trade.symbol) {
                        fan_out(&r.trade, Event::Trade(trade), received, &mut to_wake);
                    }
                }
                MarketEvent::Kline {
                    symbol,
                    interval,
                    kline,
                    closed,
                } => {
                    if let Some(list) = symbols.get(&symbol).and_then(|r| r.klines.get(&*interval)) {
                        fan_out(
                            list,
                            Event::Kline {
                                symbol,
                                interval,
                                kline,
                                closed,
                            },
                            received,
                            &mut to_wake,
                        );
                    }
                }
            }
        }
        for inbox in to_wake {
            inbox.wake();
        }
    }
}

/// Symbols distinct in a batch of events read together.
const CACHED_SYMBOLS: usize = 8;

/// The routes of the symbols a batch has met, found by the symbol's `Arc` (the stream side interns
/// its symbols) before hashing the name: a batch of a busy stream is a few symbols, many times.
struct SymbolCache<'a> {
    routes: &'a HashMap<String, SymbolRoutes>,
    /// Each keeps its symbol alive, so no other symbol can reuse its address within the batch.
    seen: Vec<(Arc<str>, Option<&'a SymbolRoutes>)>,
}

impl<'a> SymbolCache<'a> {
    fn new(routes: &'a HashMap<String, SymbolRoutes>) -> Self {
        SymbolCache {
            routes,
            seen: Vec::new(),
        }
    }

    fn get(&mut self, symbol: &Arc<str>) -> Option<&'a SymbolRoutes> {
        if let Some((_, found)) = self.seen.iter().find(|(s, _)| Arc::ptr_eq(s, symbol)) {
            return *found;
        }
        let found = self.routes.get(&**symbol);
        if self.seen.len() < CACHED_SYMBOLS {
            self.seen.push((symbol.clone(), found));
        }
        found
    }
}

/// Queues the event for every subscriber: parsed once, each gets a clone (the symbol is a shared
/// `Arc<str>`, the rest plain numbers), the last takes it. Inboxes that were empty are noted in
/// `to_wake` once.
fn fan_out<'a>(inboxes: &'a [Arc<Inbox>], event: Event, received: Instant, to_wake: &mut Vec<&'a Arc<Inbox>>) {
    let mut push = |inbox: &'a Arc<Inbox>, event: Event| {
        if inbox.push_unwoken(event, received) && !to_wake.iter().any(|w| Arc::ptr_eq(w, inbox)) {
            to_wake.push(inbox);
        }
    };
    if let Some((last, rest)) = inboxes.split_last() {
        for inbox in rest {
            push(inbox, event.clone());
        }
        push(last, event);
    }
}
