//! A strategy's inbox: cheap, never-blocking delivery from the venue's stream tasks.
//!
//! Each pending event holds one place in a FIFO. A strategy that keeps up gets every quote, in
//! order. Once more than [`QUEUE_LIMIT`] events are pending the strategy is behind, and the inbox
//! conflates quotes: each symbol keeps only its latest pending quote (a newer one replaces it in
//! place) until the backlog has halved. Depth flags and updates of the same candle always coalesce
//! (they say "this changed", not "this happened"); trades are bounded (oldest dropped, counted);
//! order events and timer ticks are never dropped. A market event keeps the instant the client
//! read it (a replacing one brings its own), which starts its orders' tick-to-order latency.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::stats::Stats;
use crate::exchange::{Kline, Order, Quote, Trade};

/// Pending events past which quotes are conflated to the latest per symbol. Large enough for a
/// burst of a busy market read in one go; small enough that a strategy that has fallen behind
/// handles fresh quotes within a few milliseconds of catching up.
pub const QUEUE_LIMIT: usize = 4096;

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
    /// Boxed: far larger than the market events, and rare; events are moved by value.
    Order(Box<Order>),
    Timer(Arc<str>),
}

enum Slot {
    Book(Quote, Instant),
    Depth(Arc<str>),
    Kline(Arc<str>, Arc<str>),
    Trade,
    Order(Box<Order>),
    Timer(Arc<str>),
}

/// (symbol, interval)
type KlineKey = (Arc<str>, Arc<str>);

#[derive(Default)]
struct Pending {
    order: VecDeque<Slot>,
    /// Sequence number of `order.front()`: slot `i` is number `head + i`.
    head: u64,
    /// While the strategy is behind: each symbol's pending quote, by sequence number.
    conflating: Option<HashMap<Arc<str>, u64>>,
    depth: HashMap<Arc<str>, Instant>,
    klines: HashMap<KlineKey, VecDeque<(Kline, bool, Instant)>>,
    trades: VecDeque<(Trade, Instant)>,
    timers: HashSet<Arc<str>>,
}

impl Pending {
    /// Queues a quote; returns how many pending quotes it made redundant (only while conflating).
    fn push_quote(&mut self, quote: Quote, received: Instant) -> u64 {
        let mut replaced = 0;
        if self.conflating.is_none() && self.order.len() >= QUEUE_LIMIT {
            replaced = self.start_conflating();
        }
        let seq = self.head + self.order.len() as u64;
        let Some(latest) = &mut self.conflating else {
            self.order.push_back(Slot::Book(quote, received));
            return replaced;
        };
        if let Some(&at) = latest.get(&*quote.symbol) {
            let slot = at.checked_sub(self.head).and_then(|i| self.order.get_mut(i as usize));
            if let Some(Slot::Book(pending, when)) = slot {
                *pending = quote;
                *when = received;
                return replaced + 1;
            }
        }
        latest.insert(quote.symbol.clone(), seq);
        self.order.push_back(Slot::Book(quote, received));
        replaced
    }

    /// Drops every pending quote but the latest of each symbol, and numbers those.
    fn start_conflating(&mut self) -> u64 {
        let latest = self.latest_quotes();
        let before = self.order.len();
        let head = self.head;
        let mut seq = head;
        self.order.retain(|slot| {
            let keep = match slot {
                Slot::Book(quote, _) => latest.get(&*quote.symbol) == Some(&seq),
                _ => true,
            };
            seq += 1;
            keep
        });
        let dropped = (before - self.order.len()) as u64;
        self.conflating = Some(self.latest_quotes());
        dropped
    }

    /// Each symbol's last pending quote, by sequence number.
    fn latest_quotes(&self) -> HashMap<Arc<str>, u64> {
        let mut latest = HashMap::new();
        for (i, slot) in self.order.iter().enumerate() {
            if let Slot::Book(quote, _) = slot {
                latest.insert(quote.symbol.clone(), self.head + i as u64);
            }
        }
        latest
    }

    fn pop_slot(&mut self) -> Option<Slot> {
        let slot = self.order.pop_front()?;
        let seq = self.head;
        self.head += 1;
        if let Some(latest) = &mut self.conflating {
            if let Slot::Book(quote, _) = &slot {
                if latest.get(&*quote.symbol) == Some(&seq) {
                    latest.remove(&*quote.symbol);
                }
            }
            if self.order.len() < QUEUE_LIMIT / 2 {
                self.conflating = None;
            }
        }
        Some(slot)
    }

    /// The oldest pending event (slots whose event was coalesced away are skipped).
    fn pop_event(&mut self) -> Option<Popped> {
        loop {
            let slot = self.pop_slot()?;
            let market = |event: Event, received: Instant| Popped {
                event,
                received: Some(received),
            };
            let popped = match slot {
                Slot::Book(quote, received) => Some(market(Event::Book(quote), received)),
                Slot::Depth(symbol) => self
                    .depth
                    .remove(&symbol)
                    .map(|received| market(Event::Depth(symbol), received)),
                Slot::Kline(symbol, interval) => {
                    let key = (symbol, interval);
                    let next = self.klines.get_mut(&key).and_then(VecDeque::pop_front);
                    if self.klines.get(&key).is_some_and(VecDeque::is_empty) {
                        self.klines.remove(&key);
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
                Slot::Trade => self
                    .trades
                    .pop_front()
                    .map(|(trade, received)| market(Event::Trade(trade), received)),
                Slot::Order(order) => Some(Popped {
                    event: Event::Order(order),
                    received: None,
                }),
                Slot::Timer(name) => self.timers.remove(&name).then_some(Popped {
                    event: Event::Timer(name),
                    received: None,
                }),
            };
            if popped.is_some() {
                return popped;
            }
        }
    }
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
        if self.push_unwoken(event, received) {
            self.wake();
        }
    }

    /// Wakes the strategy's thread if it waits for events.
    pub fn wake(&self) {
        self.ready.notify_one();
    }

    /// Pushes `event` without waking the strategy; true when the inbox was empty, and the
    /// caller must then [`Inbox::wake`] it (once for a batch pushed in one go: each wake-up is a
    /// system call for the pusher and a context switch for the strategy's thread).
    pub fn push_unwoken(&self, event: Event, received: Instant) -> bool {
        let mut pending = self.pending.lock();
        let was_empty = pending.order.is_empty();
        let coalesced: bool = match event {
            Event::Book(quote) => {
                let replaced = pending.push_quote(quote, received);
                if replaced > 0 {
                    self.stats.events_coalesced.fetch_add(replaced, Ordering::Relaxed);
                }
                false
            }
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
        self.stats.events_received.fetch_add(1, Ordering::Relaxed);
        if coalesced {
            self.stats.events_coalesced.fetch_add(1, Ordering::Relaxed);
        }
        was_empty
    }

    /// The oldest pending event.
    #[cfg(test)]
    pub fn pop(&self) -> Option<Event> {
        self.pop_received().map(|popped| popped.event)
    }

    /// The oldest pending event, with when the client read it.
    pub fn pop_received(&self) -> Option<Popped> {
        self.pending.lock().pop_event()
    }

    /// Moves up to `max` of the oldest pending events to `batch` under one lock, so a strategy
    /// handles a burst without taking the lock (and racing the stream task for it) per event.
    /// Few enough that a strategy falling behind still sees conflated, fresh quotes soon.
    pub fn pop_batch(&self, batch: &mut VecDeque<Popped>, max: usize) {
        let mut pending = self.pending.lock();
        for _ in 0..max {
            match pending.pop_event() {
                Some(popped) => batch.push_back(popped),
                None => break,
            }
        }
    }

    /// Removes and returns the pending order events, oldest first (market events stay).
    pub fn take_orders(&self) -> Vec<Order> {
        let mut pending = self.pending.lock();
        let mut orders = Vec::new();
        pending.order.retain(|slot| match slot {
            Slot::Order(order) => {
                orders.push((**order).clone());
                false
            }
            _ => true,
        });
        // Positions moved: number the pending quotes again.
        if pending.conflating.is_some() {
            pending.conflating = Some(pending.latest_quotes());
        }
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

    fn order(client_id: &str) -> Order {
        Order {
            strategy: "s".into(),
            id: None,
            client_id: client_id.into(),
            symbol: "A".into(),
            side: crate::exchange::Side::Buy,
            order_type: crate::exchange::OrderType::Limit,
            tif: None,
            status: crate::exchange::OrderStatus::New,
            price: 1.0,
            quantity: 1.0,
            filled_qty: 0.0,
            filled_quote: 0.0,
            avg_price: 0.0,
            last_fill_qty: 0.0,
            last_fill_price: 0.0,
            last_commission: 0.0,
            commission_asset: None,
            reject_reason: None,
            time: 0,
            update_time: 0,
            stop_price: None,
            list_id: None,
        }
    }

    #[test]
    fn a_strategy_that_keeps_up_gets_every_quote_in_order() {
        let stats = Arc::new(Stats::default());
        let inbox = Inbox::new(stats.clone());
        inbox.push(Event::Book(quote("A", 1.0)));
        inbox.push(Event::Timer("t".into()));
        inbox.push(Event::Book(quote("A", 2.0)));
        inbox.push(Event::Book(quote("B", 3.0)));
        assert_eq!(stats.events_coalesced.load(Ordering::Relaxed), 0);
        assert_eq!(stats.events_received.load(Ordering::Relaxed), 4);
        assert!(matches!(inbox.pop(), Some(Event::Book(q)) if q.bid == 1.0));
        assert!(matches!(inbox.pop(), Some(Event::Timer(_))));
        assert!(matches!(inbox.pop(), Some(Event::Book(q)) if q.bid == 2.0));
        assert!(matches!(inbox.pop(), Some(Event::Book(q)) if &*q.symbol == "B"));
        assert!(inbox.pop().is_none());
    }

    #[test]
    fn a_strategy_that_is_behind_gets_the_latest_quote_per_symbol_and_no_order_is_lost() {
        let stats = Arc::new(Stats::default());
        let inbox = Inbox::new(stats.clone());
        inbox.push(Event::Order(Box::new(order("o1"))));
        let pushed = QUEUE_LIMIT * 3;
        for i in 0..pushed {
            let symbol = if i % 2 == 0 { "A" } else { "B" };
            inbox.push(Event::Book(quote(symbol, i as f64)));
        }
        inbox.push(Event::Order(Box::new(order("o2"))));
        // The backlog collapsed to one quote per symbol, and the orders around it stayed.
        assert!(inbox.len() <= QUEUE_LIMIT);
        let events: Vec<Event> = std::iter::from_fn(|| inbox.pop()).collect();
        let orders: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                Event::Order(o) => Some(o.client_id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(orders, ["o1", "o2"]);
        let last = |symbol: &str| {
            events.iter().rev().find_map(|e| match e {
                Event::Book(q) if &*q.symbol == symbol => Some(q.bid),
                _ => None,
            })
        };
        assert_eq!(last("A"), Some((pushed - 2) as f64));
        assert_eq!(last("B"), Some((pushed - 1) as f64));
        let quotes = events.iter().filter(|e| matches!(e, Event::Book(_))).count() as u64;
        // Every quote is either delivered or counted as conflated.
        assert_eq!(quotes + stats.events_coalesced.load(Ordering::Relaxed), pushed as u64);
        // Caught up: quotes are queued one by one again.
        inbox.push(Event::Book(quote("A", 1.0)));
        inbox.push(Event::Book(quote("A", 2.0)));
        assert_eq!(inbox.len(), 2);
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
        // Each quote is handled, timed from when it was read; the depth flag is handled once, timed from the
        // latest notice; a timer has no such time.
        assert_eq!(received, vec![Some(first), Some(second), None, Some(second)]);
    }

    #[test]
    fn a_batch_takes_the_oldest_events_in_order_and_leaves_the_rest() {
        let inbox = Inbox::new(Arc::new(Stats::default()));
        for i in 0..10 {
            inbox.push(Event::Book(quote("A", i as f64)));
        }
        let mut batch = VecDeque::new();
        inbox.pop_batch(&mut batch, 4);
        let bids: Vec<f64> = batch
            .iter()
            .map(|p| match &p.event {
                Event::Book(q) => q.bid,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(bids, [0.0, 1.0, 2.0, 3.0]);
        assert_eq!(inbox.len(), 6);
        inbox.pop_batch(&mut batch, 100);
        assert_eq!(batch.len(), 10);
        assert!(inbox.is_empty());
    }

    #[test]
    fn events_are_small_to_move() {
        // Every event is moved several times between the stream task and the callback.
        assert!(std::mem::size_of::<Event>() <= 128, "{}", std::mem::size_of::<Event>());
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
