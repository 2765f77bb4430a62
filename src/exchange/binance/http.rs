//! Which HTTP client a request uses.
//!
//! A pooled HTTP connection is driven by a task on the runtime that opened it. A strategy runs on
//! its own thread with its own current-thread runtime, so it gets its own client: its requests and
//! their connections stay on its thread, with no hand-off to another thread between a strategy
//! deciding to trade and the request leaving (the tick-to-order path), and a strategy busy in Lua
//! can only ever delay its own connections, never ones another strategy would pick from a shared
//! pool. Multi-thread runtimes (the client's own background work) share one client.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::runtime::{Handle, RuntimeFlavor};

/// The HTTP clients of one gateway.
pub struct HttpClients {
    shared: reqwest::Client,
    settings: Settings,
    /// Identifies this gateway's entries in the per-thread table.
    id: u64,
    /// Dropped with the gateway, so threads can forget its clients.
    alive: Arc<()>,
}

#[derive(Clone, Copy)]
struct Settings {
    connect_timeout: Duration,
}

/// One thread's clients: (gateway id, gateway still alive, client).
type ThreadClients = Vec<(u64, Weak<()>, reqwest::Client)>;

thread_local! {
    static THREAD_CLIENTS: RefCell<ThreadClients> = const { RefCell::new(Vec::new()) };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl HttpClients {
    pub fn new(connect_timeout: Duration) -> Result<HttpClients, reqwest::Error> {
        let settings = Settings { connect_timeout };
        Ok(HttpClients {
            shared: build(settings)?,
            settings,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            alive: Arc::new(()),
        })
    }

    /// The client for a request made from the current thread.
    pub fn current(&self) -> reqwest::Client {
        let own_runtime = Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::CurrentThread);
        if !own_runtime {
            return self.shared.clone();
        }
        THREAD_CLIENTS.with(|clients| {
            let mut clients = clients.borrow_mut();
            if let Some((_, _, client)) = clients.iter().find(|(id, _, _)| *id == self.id) {
                return client.clone();
            }
            clients.retain(|(_, alive, _)| alive.strong_count() > 0);
            match build(self.settings) {
                Ok(client) => {
                    clients.push((self.id, Arc::downgrade(&self.alive), client.clone()));
                    client
                }
                // The same settings built the shared client, so this does not happen in practice;
                // the shared client is still correct, only without the thread affinity.
                Err(error) => {
                    tracing::warn!(%error, "could not build a per-thread HTTP client; using the shared one");
                    self.shared.clone()
                }
            }
        })
    }
}

fn build(settings: Settings) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .connect_timeout(settings.connect_timeout)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(clients: &HttpClients) -> usize {
        THREAD_CLIENTS.with(|c| c.borrow().iter().filter(|(id, _, _)| *id == clients.id).count())
    }

    #[test]
    fn a_current_thread_runtime_gets_one_client_of_its_own() {
        let clients = HttpClients::new(Duration::from_secs(1)).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let _ = clients.current();
            let _ = clients.current();
        });
        assert_eq!(entries(&clients), 1);
    }

    #[test]
    fn multi_thread_runtimes_and_plain_threads_use_the_shared_client() {
        let clients = HttpClients::new(Duration::from_secs(1)).unwrap();
        let _ = clients.current();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        runtime.block_on(async {
            let _ = clients.current();
        });
        assert_eq!(entries(&clients), 0);
    }

    #[test]
    fn a_dropped_gateways_clients_are_forgotten() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let first = HttpClients::new(Duration::from_secs(1)).unwrap();
        let first_id = first.id;
        runtime.block_on(async {
            let _ = first.current();
        });
        drop(first);
        let second = HttpClients::new(Duration::from_secs(1)).unwrap();
        runtime.block_on(async {
            let _ = second.current();
        });
        THREAD_CLIENTS.with(|c| {
            let ids: Vec<u64> = c.borrow().iter().map(|(id, _, _)| *id).collect();
            assert_eq!(ids, vec![second.id]);
            assert_ne!(first_id, second.id);
        });
    }

    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// RSS of 100 threads with a current-thread runtime each, with and without their own client. Run with
    /// `cargo test --release --lib memory_of_per_thread_clients -- --ignored --nocapture`.
    #[test]
    #[ignore = "measurement; run in release"]
    fn memory_of_per_thread_clients() {
        let clients = Arc::new(HttpClients::new(Duration::from_secs(1)).unwrap());
        let grow = |with_client: bool| {
            let before = rss_kib();
            let ready = Arc::new(std::sync::Barrier::new(101));
            let done = Arc::new(std::sync::Barrier::new(101));
            let threads: Vec<_> = (0..100)
                .map(|_| {
                    let (clients, ready, done) = (clients.clone(), ready.clone(), done.clone());
                    std::thread::spawn(move || {
                        let runtime = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .unwrap();
                        runtime.block_on(async {
                            if with_client {
                                let _ = clients.current();
                            }
                        });
                        ready.wait();
                        done.wait();
                    })
                })
                .collect();
            ready.wait();
            let grown = rss_kib() - before;
            done.wait();
            threads.into_iter().for_each(|t| t.join().unwrap());
            grown
        };
        let without = grow(false);
        let with = grow(true);
        println!("100 threads: {without} KiB without a client, {with} KiB with one each");
        println!("per-thread client ≈ {} KiB", with.saturating_sub(without) / 100);
    }
}
