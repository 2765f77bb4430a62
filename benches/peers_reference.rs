//! Our side of the peer comparisons in `benches/peers/` (driven by `scripts/compare_peers.sh`):
//! the ledger under exactly the workloads the Python throttlers get there.
//!
//! - `peers/admission/reserve_observe_100k`: 100 000 weight-1 requests, one after another,
//!   each `Ledger::reserve`d and then `observe`d with a response carrying its usage header,
//!   against a limit too high to ever wait: pure admission overhead.
//! - With `PEERS_BURST_OUT=<file>` set, the criterion run is replaced by the burst experiment:
//!   3x the limit (300 weight-1 requests against 100 per 1 s) arrives at once, a fraction
//!   `PEERS_BURST_PHASE` (default 0.5) of the way into an aligned window; the wall-clock
//!   instant of every admission is written to the file as JSON, for the same per-window
//!   analysis the peers get (`benches/peers/burst.py`).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use criterion::{criterion_group, Criterion, Throughput};
use runner::ledger::{
    Cost, Interval, IntervalUnit, Lane, Ledger, LedgerConfig, Observation, PoolKind, RateLimit, ServerUsage,
    TokioClock, Verdict,
};

const ADMISSIONS: u64 = 100_000;
/// Far above anything the admission benchmark can spend in a minute.
const UNBLOCKING_LIMIT: u64 = 1_000_000_000_000;

const BURST_LIMIT: u64 = 100;
const BURST_DEMAND: usize = 300;
/// How far into an aligned window the burst arrives, unless `PEERS_BURST_PHASE` says otherwise.
const DEFAULT_BURST_PHASE: f64 = 0.5;
const BURST_DEADLINE: Duration = Duration::from_secs(8);

fn weight_one() -> Cost {
    Cost::new().with(PoolKind::RequestWeight, 1)
}

fn ledger(limit: RateLimit) -> Ledger {
    Ledger::new(vec![limit], LedgerConfig::default(), Arc::new(TokioClock::new()))
}

fn admission(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let per_minute = Interval::new(IntervalUnit::Minute, 1);
    // What a real response reports; 0 never raises the local count, so nothing waits.
    let response = Observation {
        usage: vec![ServerUsage {
            scope: PoolKind::RequestWeight.default_scope(),
            kind: PoolKind::RequestWeight,
            interval: per_minute,
            used: 0,
        }],
        verdict: Verdict::Ok,
        scope: PoolKind::RequestWeight.default_scope(),
    };
    let mut group = c.benchmark_group("peers/admission");
    group.throughput(Throughput::Elements(ADMISSIONS));
    group.sample_size(20);
    group.bench_function("reserve_observe_100k", |b| {
        b.iter_custom(|batches| {
            runtime.block_on(async {
                let mut spent = Duration::ZERO;
                for _ in 0..batches {
                    // A fresh ledger per batch, as each peer run gets a fresh throttler.
                    let ledger = ledger(RateLimit::new(
                        PoolKind::RequestWeight,
                        IntervalUnit::Minute,
                        1,
                        UNBLOCKING_LIMIT,
                    ));
                    let start = Instant::now();
                    for _ in 0..ADMISSIONS {
                        let permit = ledger
                            .reserve("bench", Lane::Order, weight_one(), Duration::from_secs(1))
                            .await
                            .expect("an unblocking limit admits at once");
                        ledger.observe(&permit, black_box(&response));
                    }
                    spent += start.elapsed();
                }
                spent
            })
        })
    });
    group.finish();
}

criterion_group!(benches, admission);

fn wall_clock_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// How long until the wall clock is `phase` of the way into an aligned window (at least 50 ms away).
fn until_phase(window_s: f64, phase: f64) -> Duration {
    let now = wall_clock_s();
    let mut target = ((now / window_s).floor() + phase) * window_s;
    if target <= now + 0.05 {
        target += window_s;
    }
    Duration::from_secs_f64(target - now)
}

async fn burst(out: &Path, phase: f64) -> anyhow::Result<()> {
    let window_s = 1.0;
    let ledger = ledger(RateLimit::new(
        PoolKind::RequestWeight,
        IntervalUnit::Second,
        1,
        BURST_LIMIT,
    ));
    tokio::time::sleep(until_phase(window_s, phase)).await;
    let started_at_s = wall_clock_s();
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..BURST_DEMAND {
        let ledger = ledger.clone();
        requests.spawn(async move {
            let permit = ledger
                .reserve("burst", Lane::Order, weight_one(), BURST_DEADLINE)
                .await?;
            let admitted_at_s = wall_clock_s();
            ledger.observe(
                &permit,
                &Observation {
                    usage: Vec::new(),
                    verdict: Verdict::Ok,
                    scope: PoolKind::RequestWeight.default_scope(),
                },
            );
            anyhow::Ok(admitted_at_s)
        });
    }
    let mut admitted_at_s = Vec::with_capacity(BURST_DEMAND);
    while let Some(joined) = requests.join_next().await {
        admitted_at_s.push(joined.context("request task")?.context("reservation")?);
    }
    let report = serde_json::json!({
        "limit": BURST_LIMIT,
        "window_s": window_s,
        "demand": BURST_DEMAND,
        "phase": phase,
        "started_at_s": started_at_s,
        "admitted_at_s": admitted_at_s,
    });
    std::fs::write(out, report.to_string()).with_context(|| format!("writing {}", out.display()))
}

fn main() -> anyhow::Result<()> {
    if let Some(out) = std::env::var_os("PEERS_BURST_OUT") {
        let phase = match std::env::var("PEERS_BURST_PHASE") {
            Ok(text) => text.parse().context("PEERS_BURST_PHASE must be a number")?,
            Err(_) => DEFAULT_BURST_PHASE,
        };
        anyhow::ensure!((0.0..1.0).contains(&phase), "PEERS_BURST_PHASE must lie in [0, 1)");
        let runtime = tokio::runtime::Runtime::new().context("tokio runtime")?;
        return runtime.block_on(burst(Path::new(&out), phase));
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    Ok(())
}
