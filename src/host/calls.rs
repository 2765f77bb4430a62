//! A strategy's exchange calls, run on the strategy's own thread.
//!
//! On its own thread a call and the HTTP connection it uses are driven by the same runtime, so
//! nothing is handed to another thread between Lua asking and the request leaving. A call is
//! polled in place, as part of the callback; if the callback is dropped first (a stop cut it
//! short, or a reload replaced the VM), the rest of the call becomes a task on the same runtime
//! (once the VM lets go of the callback's coroutine, at the latest when the VM is dropped):
//! a request in flight is never abandoned (an order whose outcome nobody would then learn), and
//! the thread finishes such calls before it exits, so a stopped strategy has no order left that
//! could still be sent after the runner's cancel-on-exit.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

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
    /// `call`, polled by whoever awaits it; finished as a task if dropped before it completes.
    pub fn run<T, F>(&self, call: F) -> SeenThrough<F>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        SeenThrough {
            call: Some(Box::pin(call)),
            calls: self.clone(),
        }
    }

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

/// A call that is seen through even if nobody waits for its result any more (see [`Calls::run`]).
pub struct SeenThrough<F: Future + Send + 'static>
where
    F::Output: Send + 'static,
{
    call: Option<Pin<Box<F>>>,
    calls: Calls,
}

impl<F: Future + Send + 'static> Future for SeenThrough<F>
where
    F::Output: Send + 'static,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let Some(call) = self.call.as_mut() else {
            panic!("SeenThrough polled after it completed");
        };
        let output = std::task::ready!(call.as_mut().poll(cx));
        self.call = None;
        Poll::Ready(output)
    }
}

impl<F: Future + Send + 'static> Drop for SeenThrough<F>
where
    F::Output: Send + 'static,
{
    fn drop(&mut self) {
        let Some(call) = self.call.take() else { return };
        if tokio::runtime::Handle::try_current().is_ok() {
            self.calls.spawn(call);
        } else {
            // Only when the runtime itself is gone, and with it every connection the call used.
            tracing::warn!("an exchange call was dropped with its runtime");
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

    #[tokio::test(start_paused = true)]
    async fn a_call_dropped_half_way_is_finished_as_a_task() {
        let calls = Calls::default();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let call = calls.run(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            tx.send("done").unwrap();
        });
        // Polled once (it starts, then waits), then dropped, as a cut-short callback would be.
        let cut = tokio::time::timeout(Duration::from_secs(1), call).await;
        assert!(cut.is_err());
        assert_eq!(calls.running(), 1);
        calls.all_finished().await;
        assert_eq!(rx.await.unwrap(), "done");
    }

    #[tokio::test]
    async fn a_call_run_in_place_returns_its_result_and_leaves_no_task() {
        let calls = Calls::default();
        assert_eq!(calls.run(async { 5 }).await, 5);
        assert_eq!(calls.running(), 0);
    }

    #[tokio::test]
    async fn nothing_running_is_finished_at_once_and_results_come_back() {
        let calls = Calls::default();
        calls.all_finished().await;
        assert_eq!(calls.spawn(async { 7 }).await.unwrap(), 7);
        assert_eq!(calls.running(), 0);
    }
}
