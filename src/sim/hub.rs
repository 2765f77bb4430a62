//! Fan-out of market-stream events: each event is serialised once and the same bytes are
//! shared by every connection subscribed to it. A connection whose queue is full is a slow
//! consumer and is told to disconnect, as the exchange does.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use parking_lot::RwLock;
use tokio::sync::{mpsc, Notify};

/// Frames queued per connection before it counts as a slow consumer.
pub const CONNECTION_QUEUE: usize = 16_384;

/// One connection's end of the fan-out.
#[derive(Clone)]
pub struct Subscriber {
    pub conn: u64,
    /// Wrap events as `{"stream":..,"data":..}`.
    pub combined: bool,
    pub tx: mpsc::Sender<Utf8Bytes>,
    pub overflow: Arc<Notify>,
}

#[derive(Default)]
pub struct Hub {
    subs: RwLock<HashMap<Arc<str>, Vec<Subscriber>>>,
}

impl Hub {
    pub fn wants(&self, stream: &str) -> bool {
        self.subs.read().get(stream).is_some_and(|s| !s.is_empty())
    }

    /// Builds the event only if someone listens, then queues it on every subscriber.
    pub fn publish(&self, stream: &str, payload: impl FnOnce() -> String) {
        let subs = self.subs.read();
        let Some(list) = subs.get(stream).filter(|l| !l.is_empty()) else {
            return;
        };
        let raw = payload();
        let combined = list
            .iter()
            .any(|s| s.combined)
            .then(|| Utf8Bytes::from(format!("{{\"stream\":\"{stream}\",\"data\":{raw}}}")));
        let raw = Utf8Bytes::from(raw);
        for sub in list {
            let frame = match (&combined, sub.combined) {
                (Some(c), true) => c.clone(),
                _ => raw.clone(),
            };
            if let Err(mpsc::error::TrySendError::Full(_)) = sub.tx.try_send(frame) {
                sub.overflow.notify_one();
            }
        }
    }

    pub fn subscribe(&self, stream: &str, sub: Subscriber) {
        let mut subs = self.subs.write();
        let list = subs.entry(Arc::from(stream)).or_default();
        if !list.iter().any(|s| s.conn == sub.conn) {
            list.push(sub);
        }
    }

    pub fn unsubscribe(&self, stream: &str, conn: u64) {
        let mut subs = self.subs.write();
        if let Some(list) = subs.get_mut(stream) {
            list.retain(|s| s.conn != conn);
            if list.is_empty() {
                subs.remove(stream);
            }
        }
    }
}

/// Subscribers to the accounts' user-data streams (WebSocket API connections), each to one account's.
#[derive(Default)]
pub struct UserHub {
    subs: RwLock<Vec<UserSubscriber>>,
}

#[derive(Clone)]
pub struct UserSubscriber {
    /// Whose events it gets: the account its key authenticated.
    pub account: u16,
    pub conn: u64,
    pub subscription_id: u64,
    pub tx: mpsc::Sender<Utf8Bytes>,
    pub overflow: Arc<Notify>,
}

impl UserHub {
    pub fn is_empty(&self) -> bool {
        self.subs.read().is_empty()
    }

    /// `event_json` is one serialised event of `account`; each of its subscriptions gets its own envelope.
    pub fn publish(&self, account: u16, event_json: &str) {
        for sub in self.subs.read().iter().filter(|s| s.account == account) {
            let frame = format!("{{\"subscriptionId\":{},\"event\":{event_json}}}", sub.subscription_id);
            if let Err(mpsc::error::TrySendError::Full(_)) = sub.tx.try_send(Utf8Bytes::from(frame)) {
                sub.overflow.notify_one();
            }
        }
    }

    pub fn subscribe(&self, sub: UserSubscriber) {
        self.subs.write().push(sub);
    }

    /// Removes one subscription (or all of a connection's when `subscription_id` is `None`);
    /// returns how many were removed.
    pub fn unsubscribe(&self, conn: u64, subscription_id: Option<u64>) -> usize {
        let mut subs = self.subs.write();
        let before = subs.len();
        subs.retain(|s| s.conn != conn || subscription_id.is_some_and(|id| id != s.subscription_id));
        before - subs.len()
    }

    pub fn subscriptions(&self, conn: u64) -> Vec<u64> {
        self.subs
            .read()
            .iter()
            .filter(|s| s.conn == conn)
            .map(|s| s.subscription_id)
            .collect()
    }
}
