//! Per-strategy counters, updated lock-free from the strategy's thread and the venue's tasks.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::exchange::latency::LatencySamples;
use crate::exchange::{Order, OrderStatus, Side, SymbolInfo};

#[derive(Default)]
pub struct Stats {
    /// Events pushed into the strategy's inbox.
    pub events_received: AtomicU64,
    pub events_handled: AtomicU64,
    pub events_coalesced: AtomicU64,
    pub trades_dropped: AtomicU64,
    pub errors: AtomicU64,
    pub trips: AtomicU64,
    /// Tick-to-order latency of orders placed from market callbacks.
    pub tick_to_order: Arc<LatencySamples>,
    pub orders_placed: AtomicU64,
    pub orders_filled: AtomicU64,
    pub orders_cancelled: AtomicU64,
    pub orders_rejected: AtomicU64,
    /// Order updates that filled something.
    pub fills: AtomicU64,
    pub stopped: AtomicBool,
    fill_book: Mutex<FillBook>,
    last_error: Mutex<Option<String>>,
}

/// Net asset flows from fills, and what each live order had filled so far.
#[derive(Default)]
struct FillBook {
    flows: BTreeMap<String, f64>,
    seen: HashMap<String, (f64, f64, OrderStatus)>,
}

impl Stats {
    /// Accounts an order event: counts final states once, and adds the newly filled
    /// part to the asset flows (base in, quote out for a BUY; the reverse for a SELL;
    /// commission out).
    pub fn record_order(&self, order: &Order, info: Option<&SymbolInfo>) {
        let mut book = self.fill_book.lock();
        let (prev_qty, prev_quote, prev_status) =
            book.seen
                .get(&order.client_id)
                .copied()
                .unwrap_or((0.0, 0.0, OrderStatus::Pending));
        let filled = order.filled_qty - prev_qty;
        if filled > 0.0 {
            self.fills.fetch_add(1, Ordering::Relaxed);
            if let Some(info) = info {
                let quote_amount = order.filled_quote - prev_quote;
                let sign = if order.side == Side::Buy { 1.0 } else { -1.0 };
                *book.flows.entry(info.base.clone()).or_default() += sign * filled;
                *book.flows.entry(info.quote.clone()).or_default() -= sign * quote_amount;
            }
            if let Some(asset) = &order.commission_asset {
                *book.flows.entry(asset.clone()).or_default() -= order.last_commission;
            }
        }
        if order.status != prev_status {
            let counter = match order.status {
                OrderStatus::Filled => Some(&self.orders_filled),
                OrderStatus::Canceled | OrderStatus::Expired => Some(&self.orders_cancelled),
                OrderStatus::Rejected => Some(&self.orders_rejected),
                _ => None,
            };
            if let Some(counter) = counter {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
        if order.status.is_final() {
            book.seen.remove(&order.client_id);
        } else {
            book.seen.insert(
                order.client_id.clone(),
                (order.filled_qty.max(prev_qty), order.filled_quote, order.status),
            );
        }
    }

    pub fn flows(&self) -> BTreeMap<String, f64> {
        self.fill_book.lock().flows.clone()
    }

    /// Counts a failed callback and keeps its message as the latest error.
    pub fn record_error(&self, message: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock() = Some(message.to_string());
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
