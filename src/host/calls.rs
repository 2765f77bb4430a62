//! A strategy's exchange calls, run as tasks on the strategy's own thread.
//!
//! On its own thread a call and the HTTP connection it uses are driven by the same runtime, so
//! nothing is handed to another thread between Lua asking and the request leaving. A call is its
//! own task rather than part of the callback: a stop that cuts a callback short never abandons a
//! request in flight (an order whose outcome nobody would then learn); the thread finishes its
//! calls before it exits.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

#[derive(Clone, Default)]
pub struct Calls {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    running: AtomicUsize,
    finished: Notify,
}

/// Counts a call as finished when its task ends, however it ends.
struct Running(Arc<Inner>);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.finished.notify_waiters();
        }
    }
}

impl Calls {
    /// Starts `call` on the current runtime (the strategy's own); dropping the handle does not stop it.
    pub fn spawn<T, F>(&self, call: F) -> JoinHandle<T>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        self.inner.running.fetch_add(1, Ordering::AcqRel);
        let running = Running(self.inner.clone());
        tokio::spawn(async move {
            let _running = running;
            call.await
        })
    }

    /// Calls still under way.
    pub fn running(&self) -> usize {
        self.inner.running.load(Ordering::Acquire)
    }

    /// Resolves once no call is under way.
    pub async fn all_finished(&self) {
        loop {
            let finished = self.inner.finished.notified();
            tokio::pin!(finished);
            finished.as_mut().enable();
            if self.running() == 0 {
                return;
            }
            finished.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_call_runs_on_after_its_handle_is_dropped_and_is_waited_for() {
        let calls = Calls::default();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let handle = calls.spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            tx.send("done").unwrap();
        });
        drop(handle);
        assert_eq!(calls.running(), 1);
        calls.all_finished().await;
        assert_eq!(calls.running(), 0);
        assert_eq!(rx.await.unwrap(), "done");
    }

    #[tokio::test]
    async fn nothing_running_is_finished_at_once_and_results_come_back() {
        let calls = Calls::default();
        calls.all_finished().await;
        assert_eq!(calls.spawn(async { 7 }).await.unwrap(), 7);
        assert_eq!(calls.running(), 0);
    }
}
