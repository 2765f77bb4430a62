//! Values a gateway keeps per strategy thread (its HTTP client, its order connection).
//!
//! A connection is driven by a task on the runtime that opened it. A strategy runs on its own thread
//! with its own current-thread runtime, so what it uses to reach the exchange is opened on that
//! thread and lives there: no hand-off to another thread between a strategy deciding to trade and
//! the request leaving, and a strategy busy in Lua can only ever delay its own connections.
//! Multi-thread runtimes (the client's own background work) get `None` and use shared values.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use tokio::runtime::{Handle, RuntimeFlavor};

/// One owner's values of type `T`, one per thread that runs its own current-thread runtime.
pub struct PerThread<T> {
    /// Identifies this owner's entries in the per-thread table.
    id: u64,
    /// Dropped with the owner, so threads can forget its values.
    alive: Arc<()>,
    _value: PhantomData<fn() -> T>,
}

/// One thread's values: (owner id, owner still alive, value).
type Entries = Vec<(u64, Weak<()>, Box<dyn Any>)>;

thread_local! {
    static ENTRIES: RefCell<Entries> = const { RefCell::new(Vec::new()) };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// True when the caller runs on a current-thread runtime (a strategy's own thread).
pub fn on_own_runtime() -> bool {
    Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::CurrentThread)
}

impl<T: Clone + 'static> PerThread<T> {
    pub fn new() -> PerThread<T> {
        PerThread {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            alive: Arc::new(()),
            _value: PhantomData,
        }
    }

    /// This thread's value, made by `make` the first time; `None` off a current-thread runtime, or
    /// when `make` gives none (the caller then falls back to its shared value).
    pub fn get(&self, make: impl FnOnce() -> Option<T>) -> Option<T> {
        if !on_own_runtime() {
            return None;
        }
        ENTRIES.with(|entries| {
            let mut entries = entries.borrow_mut();
            let found = entries
                .iter()
                .find(|(id, _, _)| *id == self.id)
                .and_then(|(_, _, value)| value.downcast_ref::<T>());
            if let Some(value) = found {
                return Some(value.clone());
            }
            entries.retain(|(_, alive, _)| alive.strong_count() > 0);
            let value = make()?;
            entries.push((self.id, Arc::downgrade(&self.alive), Box::new(value.clone())));
            Some(value)
        })
    }

    /// Forgets this thread's value (the next `get` makes a new one).
    #[cfg(test)]
    pub fn forget(&self) {
        ENTRIES.with(|entries| entries.borrow_mut().retain(|(id, _, _)| *id != self.id));
    }

    #[cfg(test)]
    pub fn entries_here(&self) -> usize {
        ENTRIES.with(|e| e.borrow().iter().filter(|(id, _, _)| *id == self.id).count())
    }
}

impl<T: Clone + 'static> Default for PerThread<T> {
    fn default() -> Self {
        PerThread::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().build().unwrap()
    }

    #[test]
    fn a_current_thread_runtime_gets_one_value_of_its_own() {
        let values = PerThread::<u32>::new();
        let made = std::cell::Cell::new(0);
        current_thread().block_on(async {
            let make = || {
                made.set(made.get() + 1);
                Some(7)
            };
            assert_eq!(values.get(make), Some(7));
            assert_eq!(values.get(|| Some(8)), Some(7));
        });
        assert_eq!((made.get(), values.entries_here()), (1, 1));
    }

    #[test]
    fn multi_thread_runtimes_and_plain_threads_get_none() {
        let values = PerThread::<u32>::new();
        assert_eq!(values.get(|| Some(1)), None);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        assert_eq!(runtime.block_on(async { values.get(|| Some(1)) }), None);
        assert_eq!(values.entries_here(), 0);
    }

    #[test]
    fn a_dropped_owners_values_are_forgotten_and_forget_makes_anew() {
        let runtime = current_thread();
        let first = PerThread::<u32>::new();
        let first_id = first.id;
        runtime.block_on(async { first.get(|| Some(1)) });
        drop(first);
        let second = PerThread::<u32>::new();
        runtime.block_on(async {
            second.get(|| Some(2));
            second.forget();
            assert_eq!(second.get(|| Some(3)), Some(3));
        });
        ENTRIES.with(|e| {
            let ids: Vec<u64> = e.borrow().iter().map(|(id, _, _)| *id).collect();
            assert_eq!(ids, vec![second.id]);
            assert_ne!(first_id, second.id);
        });
    }
}
