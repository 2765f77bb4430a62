//! A strategy's inbox: cheap, never-blocking delivery from the venue's stream tasks.
//!
//! Each pending event holds one place in a FIFO. While the strategy is busy, a newer
//! quote for a symbol replaces the pending one in place (latest wins), as do depth
//! flags and updates of the same candle; trades are bounded (oldest dropped, counted);
//! order events and timer ticks are never dropped. A market event keeps the instant the client
//! read it (a replacing one brings its own), which starts its orders' tick-to-order latency.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::stats::Stats;
use crate::exchange::{Kline, Order, Quote, Trade};

/// Trades kept while the strategy is busy; older ones are dropped first.
pub const TRADE_CAPACITY: usize = 4096;

/// One event for a strategy's callbacks.
#[derive(Debug, Clone)]
pub enum Event {
    Book(Quote),
    Depth(Arc<str>),
    Trade(Trade),
    Kline {
        symbol: Arc<str>,
        interval: Arc<str>,
        kline: Kline,
        closed: bool,
    },
    Order(Order),
    Timer(Arc<str>),
}

enum Slot {
    Book(Arc<str>),
    Depth(Arc<str>),
    Kline(Arc<str>, Arc<str>),
    Trade,
    Order(Order),
    Timer(Arc<str>),
}

/// (symbol, interval)
type KlineKey = (Arc<str>, Arc<str>);

#[derive(Default)]
struct Pending {
    order: VecDeque<Slot>,
    quotes: HashMap<Arc<str>, (Quote, Instant)>,
    depth: HashMap<Arc<str>, Instant>,
    klines: HashMap<KlineKey, VecDeque<(Kline, bool, Instant)>>,
    trades: VecDeque<(Trade, Instant)>,
    timers: HashSet<Arc<str>>,
}

/// A popped event, with when the client read it (market events only).
pub struct Popped {
    pub event: Event,
    pub received: Option<Instant>,
}

pub struct Inbox {
    pending: Mutex<Pending>,
    ready: Notify,
    stats: Arc<Stats>,
}

impl Inbox {
    pub fn new(stats: Arc<Stats>) -> Arc<Inbox> {
        Arc::new(Inbox {
            pending: Mutex::new(Pending::default()),
            ready: Notify::new(),
            stats,
        })
    }

    pub fn push(&self, event: Event) {
        self.push_received(event, Instant::now());
    }

    /// Pushes `event`, read by the client at `received`.
    pub fn push_received(&self, event: Event, received: Instant) {
        let mut pending = self.pending.lock();
        let was_empty = pending.order.is_empty();
        let coalesced = match event {
            Event::Book(quote) => match pending.quotes.entry(quote.symbol.clone()) {
                Entry::Occupied(mut slot) => {
                    slot.insert((quote, received));
                    true
                }
                Entry::Vacant(slot) => {
                    let symbol = slot.key().clone();
                    slot.insert((quote, received));
                    pending.order.push_back(Slot::Book(symbol));
                    false
                }
            },
            Event::Depth(symbol) => {
                let fresh = pending.depth.insert(symbol.clone(), received).is_none();
                if fresh {
                    pending.order.push_back(Slot::Depth(symbol));
                }
                !fresh
            }
            Event::Kline {
                symbol,
                interval,
                kline,
                closed,
            } => {
                let key = (symbol, interval);
                let queue = pending.klines.entry(key.clone()).or_default();
                match queue.back_mut() {
                    // A newer update of the same candle replaces the pending one.
                    Some((last, last_closed, last_received)) if last.open_time == kline.open_time => {
                        *last = kline;
                        *last_closed = closed;
                        *last_received = received;
                        true
                    }
                    _ => {
                        queue.push_back((kline, closed, received));
                        pending.order.push_back(Slot::Kline(key.0, key.1));
                        false
                    }
                }
            }
            Event::Trade(trade) => {
                if pending.trades.len() >= TRADE_CAPACITY {
                    // Keep the slot count equal to the trade count: the dropped trade's slot serves the new one.
                    pending.trades.pop_front();
                    self.stats.trades_dropped.fetch_add(1, Ordering::Relaxed);
                } else {
                    pending.order.push_back(Slot::Trade);
                }
                pending.trades.push_back((trade, received));
                false
            }
            Event::Order(order) => {
                pending.order.push_back(Slot::Order(order));
                false
            }
            Event::Timer(name) => {
                let fresh = pending.timers.insert(name.clone());
                if fresh {
                    pending.order.push_back(Slot::Timer(name));
                }
                !fresh
            }
        };
        drop(pending);
        if coalesced {
            self.stats.events_coalesced.fetch_add(1, Ordering::Relaxed);
        }
        if was_empty {
            self.ready.notify_one();
        }
    }

    /// The oldest pending event.
    #[cfg(test)]
    pub fn pop(&self) -> Option<Event> {
        self.pop_received().map(|popped| popped.event)
    }

    /// The oldest pending event, with when the client read it.
    pub fn pop_received(&self) -> Option<Popped> {
        let mut pending = self.pending.lock();
        loop {
            let slot = pending.order.pop_front()?;
            let market = |event: Event, received: Instant| Popped {
                event,
                received: Some(received),
            };
            let popped = match slot {
                Slot::Book(symbol) => pending
                    .quotes
                    .remove(&symbol)
                    .map(|(quote, received)| market(Event::Book(quote), received)),
                Slot::Depth(symbol) => pending
                    .depth
                    .remove(&symbol)
                    .map(|received| market(Event::Depth(symbol), received)),
                Slot::Kline(symbol, interval) => {
                    let key = (symbol, interval);
                    let next = pending.klines.get_mut(&key).and_then(VecDeque::pop_front);
                    if pending.klines.get(&key).is_some_and(VecDeque::is_empty) {
                        pending.klines.remove(&key);
                    }
                    next.map(|(kline, closed, received)| {
                        let event = Event::Kline {
                            symbol: key.0,
                            interval: key.1,
                            kline,
                            closed,
                        };
                        market(event, received)
                    })
                }
                Slot::Trade => pending
                    .trades
                    .pop_front()
                    .map(|(trade, received)| market(Event::Trade(trade), received)),
                Slot::Order(order) => Some(Popped {
                    event: Event::Order(order),
                    received: None,
                }),
                Slot::Timer(name) => pending.timers.remove(&name).then_some(Popped {
                    event: Event::Timer(name),
                    received: None,
                }),
            };
            if popped.is_some() {
                return popped;
            }
        }
    }

    /// Removes and returns the pending order events, oldest first (market events stay).
    pub fn take_orders(&self) -> Vec<Order> {
        let mut pending = self.pending.lock();
        let mut orders = Vec::new();
        pending.order.retain(|slot| match slot {
            Slot::Order(order) => {
                orders.push(order.clone());
                false
            }
            _ => true,
        });
        orders
    }

    /// Resolves when an event may be pending (spurious wake-ups are possible).
    pub async fn ready(&self) {
        self.ready.notified().await
    }

    pub fn len(&self) -> usize {
        self.pending.lock().order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.lock().order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(symbol: &str, bid: f64) -> Quote {
        Quote {
            symbol: symbol.into(),
            bid,
            bid_qty: 1.0,
            ask: bid + 1.0,
            ask_qty: 1.0,
            update_id: 0,
            time: 0,
        }
    }

    #[test]
    fn quotes_coalesce_in_place_and_orders_are_kept() {
        let stats = Arc::new(Stats::default());
        let inbox = Inbox::new(stats.clone());
        inbox.push(Event::Book(quote("A", 1.0)));
        inbox.push(Event::Timer("t".into()));
        inbox.push(Event::Book(quote("A", 2.0)));
        inbox.push(Event::Book(quote("B", 3.0)));
        assert_eq!(stats.events_coalesced.load(Ordering::Relaxed), 1);
        match inbox.pop() {
            Some(Event::Book(q)) => assert_eq!((&*q.symbol, q.bid), ("A", 2.0)),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(inbox.pop(), Some(Event::Timer(_))));
        assert!(matches!(inbox.pop(), Some(Event::Book(q)) if &*q.symbol == "B"));
        assert!(inbox.pop().is_none());
    }

    #[test]
    fn a_market_event_keeps_when_it_was_read_and_a_replacing_one_brings_its_own() {
        let inbox = Inbox::new(Arc::new(Stats::default()));
        let (first, second) = (Instant::now(), Instant::now() + std::time::Duration::from_micros(5));
        inbox.push_received(Event::Book(quote("A", 1.0)), first);
        inbox.push_received(Event::Depth("A".into()), first);
        inbox.push(Event::Timer("t".into()));
        inbox.push_received(Event::Book(quote("A", 2.0)), second);
        inbox.push_received(Event::Depth("A".into()), second);
        let received: Vec<Option<Instant>> = std::iter::from_fn(|| inbox.pop_received().map(|p| p.received)).collect();
        // The latest quote and depth flag are handled, timed from when they were read; a timer has no such time.
        assert_eq!(received, vec![Some(second), Some(second), None]);
    }

    #[test]
    fn trades_are_bounded_and_counted() {
        let stats = Arc::new(Stats::default());
        let inbox = Inbox::new(stats.clone());
        for id in 0..(TRADE_CAPACITY as u64 + 10) {
            inbox.push(Event::Trade(Trade {
                symbol: "A".into(),
                id,
                price: 1.0,
                qty: 1.0,
                time: 0,
                buyer_maker: false,
            }));
        }
        assert_eq!(stats.trades_dropped.load(Ordering::Relaxed), 10);
        assert!(matches!(inbox.pop(), Some(Event::Trade(t)) if t.id == 10));
        assert_eq!(inbox.len(), TRADE_CAPACITY - 1);
    }
}
