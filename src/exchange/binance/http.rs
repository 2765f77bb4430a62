//! Which HTTP client a request uses: a strategy's own thread gets a client of its own (see
//! [`super::per_thread`]); multi-thread runtimes (the client's own background work) share one.

use std::time::Duration;

use super::per_thread::PerThread;

/// The HTTP clients of one gateway.
pub struct HttpClients {
    shared: reqwest::Client,
    settings: Settings,
    per_thread: PerThread<reqwest::Client>,
}

#[derive(Clone, Copy)]
struct Settings {
    connect_timeout: Duration,
}

impl HttpClients {
    pub fn new(connect_timeout: Duration) -> Result<HttpClients, reqwest::Error> {
        let settings = Settings { connect_timeout };
        Ok(HttpClients {
            shared: build(settings)?,
            settings,
            per_thread: PerThread::new(),
        })
    }

    /// The client for a request made from the current thread.
    pub fn current(&self) -> reqwest::Client {
        let own = self.per_thread.get(|| match build(self.settings) {
            Ok(client) => Some(client),
            // The same settings built the shared client, so this does not happen in practice;
            // the shared client is still correct, only without the thread affinity.
            Err(error) => {
                tracing::warn!(%error, "could not build a per-thread HTTP client; using the shared one");
                None
            }
        });
        own.unwrap_or_else(|| self.shared.clone())
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

    use std::sync::Arc;

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
