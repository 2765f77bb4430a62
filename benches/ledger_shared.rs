//! Reservation latency with the ledger shared through Redis, beside the local ledger, in
//! one run: p50 and p99 of `reserve` + `observe` for
//! - the local ledger alone,
//! - a lease hit (the lease holds the units: no Redis round trip),
//! - a lease refill (every reservation outruns its lease: one round trip to Redis).
//!
//! Needs `redis-server` on the PATH (Debian's package); starts its own on a free port.

use std::sync::Arc;
use std::time::{Duration, Instant};

use runner::ledger::limits::IntervalUnit::{Minute, Second};
use runner::ledger::limits::PoolKind::RequestWeight;
use runner::ledger::shared::{share, SharedConfig};
use runner::ledger::{Cost, FastClock, Lane, Ledger, LedgerConfig, Observation, RateLimit, Verdict};

#[path = "../tests/support/redis.rs"]
mod redis_server;
use redis_server::RedisServer;

const SAMPLES: usize = 20_000;

fn ledger(limit: u64) -> Ledger {
    Ledger::new(
        vec![RateLimit::new(RequestWeight, Minute, 1, limit)],
        LedgerConfig::default(),
        Arc::new(FastClock::new()),
    )
}

async fn reserve_observe(ledger: &Ledger) -> Duration {
    let cost = Cost::new().with(RequestWeight, 1);
    let observation = Observation {
        usage: Vec::new(),
        verdict: Verdict::Ok,
        scope: RequestWeight.default_scope(),
    };
    let start = Instant::now();
    let permit = ledger
        .reserve("bench", Lane::Order, cost, Duration::from_secs(5))
        .await
        .expect("budget");
    ledger.observe(&permit, &observation);
    start.elapsed()
}

async fn measure(name: &str, ledger: &Ledger, samples: usize) {
    let mut took = Vec::with_capacity(samples);
    for _ in 0..samples {
        took.push(reserve_observe(ledger).await);
    }
    report(name, took);
}

/// Every reservation outruns its one-unit lease; a window of 19 is spent, then the next one awaited.
async fn measure_refills(name: &str, ledger: &Ledger, windows: usize) {
    let mut took = Vec::new();
    for _ in 0..windows {
        let next_window = (ledger.now_ms() / 1000 + 1) * 1000;
        for _ in 0..18 {
            took.push(reserve_observe(ledger).await);
        }
        let wait = (next_window - ledger.now_ms() + 20).max(0) as u64;
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
    report(name, took);
}

fn report(name: &str, mut took: Vec<Duration>) {
    let samples = took.len();
    took.sort();
    let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize];
    println!(
        "{name:<28} p50 {:>9.2?}  p99 {:>9.2?}  ({samples} samples)",
        at(0.50),
        at(0.99)
    );
}

fn main() {
    let redis = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let url = redis.url();
        let config = |group: &str| SharedConfig {
            url: url.clone(),
            group: group.to_string(),
            fallback_on_start: false,
        };
        measure("local ledger", &ledger(1 << 40), SAMPLES).await;
        // A huge limit: 5 % of it is leased at a time, so nearly every reservation hits.
        let hit = share(ledger(1 << 40), config("hit")).await.expect("shared");
        measure("shared, lease hit", hit.ledger(), SAMPLES).await;
        // 19 a second: one unit leased at a time, so every reservation refills.
        let refill = share(
            Ledger::new(
                vec![RateLimit::new(RequestWeight, Second, 1, 19)],
                LedgerConfig::default(),
                Arc::new(FastClock::new()),
            ),
            config("refill"),
        )
        .await
        .expect("shared");
        measure_refills("shared, lease refill", refill.ledger(), 8).await;
    });
    drop(redis);
}
