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
        let routes = self.routes.read();
        match event {
            MarketEvent::Book(quote) => {
                if let Some(r) = routes.get(&*quote.symbol) {
                    fan_out(&r.book, Event::Book(quote), received);
                }
            }
            MarketEvent::DepthChanged(symbol) => {
                if let Some(r) = routes.get(&*symbol) {
                    fan_out(&r.depth, Event::Depth(symbol), received);
                }
            }
            MarketEvent::Trade(trade) => {
                if let Some(r) = routes.get(&*trade.symbol) {
                    fan_out(&r.trade, Event::Trade(trade), received);
                }
            }
            MarketEvent::Kline {
                symbol,
                interval,
                kline,
                closed,
            } => {
                if let Some(list) = routes.get(&*symbol).and_then(|r| r.klines.get(&*interval)) {
                    fan_out(
                        list,
                        Event::Kline {
                            symbol,
                            interval,
                            kline,
                            closed,
                        },
                        received,
                    );
                }
            }
        }
    }
}

/// Clones the event for all but the last subscriber, which takes it.
fn fan_out(inboxes: &[Arc<Inbox>], event: Event, received: Instant) {
    if let Some((last, rest)) = inboxes.split_last() {
        for inbox in rest {
            inbox.push_received(event.clone(), received);
        }
        last.push_received(event, received);
    }
}
