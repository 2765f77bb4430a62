//! The one task that wakes parked waiters when time alone makes room: it sleeps
//! exactly until the earliest window reset (or backoff end) that blocks someone,
//! admits whoever fits, and exits when nobody waits.

use std::sync::Arc;
use std::time::Duration;

use super::Inner;

pub(crate) async fn run(inner: Arc<Inner>) {
    loop {
        let alarm = {
            let local = inner.exchange_now();
            let mut st = inner.state.lock();
            let now = st.advance(local);
            st.dispatch(now);
            if st.shared {
                inner.tell_keeper(&mut st);
            }
            if st.waiting == 0 || st.closed {
                st.driver_running = false;
                st.driver_target_ms = None;
                return;
            }
            st.driver_target_ms = st.next_wake_ms;
            st.next_wake_ms
                .map(|at| inner.clock.instant() + Duration::from_millis(at.saturating_sub(now).max(0) as u64))
        };
        match alarm {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = inner.wake_driver.notified() => {}
                }
            }
            None => inner.wake_driver.notified().await,
        }
    }
}
