//! Ledger hot path against `governor`'s single-limit check, measured in the same run.
//!
//! The ledger's pools have Binance's shape (five pools: weight, two order windows,
//! raw requests, connections) with limits too large to run out, so what is measured
//! is the bookkeeping, not waiting.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures_util::FutureExt;
use governor::{Quota, RateLimiter};
use runner::ledger::limits::IntervalUnit::{Day, Minute, Second};
use runner::ledger::limits::PoolKind::{Connections, Orders, RawRequests, RequestWeight};
use runner::ledger::{
    Clock, Cost, FastClock, Interval, Lane, Ledger, LedgerConfig, Observation, RateLimit, ServerUsage, TokioClock,
    Verdict,
};

const TASKS: usize = 8;
const BIG: u64 = 1 << 60;

/// The clock `TokioClock` is in a production build: the std monotonic clock. (Benches
/// are built with tokio's `test-util`, which makes every tokio clock read take a
/// mutex to check for paused time; production builds do not have it.)
struct StdClock {
    start: std::time::Instant,
    start_ms: i64,
}

impl Clock for StdClock {
    fn instant(&self) -> tokio::time::Instant {
        tokio::time::Instant::from_std(std::time::Instant::now())
    }

    fn local_ms(&self) -> i64 {
        self.start_ms + self.start.elapsed().as_millis() as i64
    }
}

fn std_clock() -> StdClock {
    StdClock {
        start: std::time::Instant::now(),
        start_ms: 1_700_000_000_000,
    }
}

fn ledger() -> Ledger {
    Ledger::new(
        vec![
            RateLimit::new(RequestWeight, Minute, 1, BIG),
            RateLimit::new(Orders, Second, 10, BIG),
            RateLimit::new(Orders, Day, 1, BIG),
            RateLimit::new(RawRequests, Minute, 5, BIG),
            RateLimit::new(Connections, Minute, 5, BIG),
        ],
        LedgerConfig::default(),
        Arc::new(FastClock::new()),
    )
}

const COST: Cost = Cost::new().with(RequestWeight, 2).with(RawRequests, 1);

fn observation() -> Observation {
    Observation {
        usage: vec![ServerUsage {
            scope: RequestWeight.default_scope(),
            kind: RequestWeight,
            interval: Interval::new(Minute, 1),
            used: 1,
        }],
        verdict: Verdict::Ok,
        scope: RequestWeight.default_scope(),
    }
}

fn governor_limiter() -> governor::DefaultDirectRateLimiter {
    RateLimiter::direct(Quota::per_second(NonZeroU32::MAX))
}

fn uncontended(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("uncontended");
    g.throughput(Throughput::Elements(1));

    let l = ledger();
    let obs = observation();
    let handle = l.handle("bench");
    g.bench_function("ledger_handle_reserve_observe", |b| {
        b.iter(|| {
            let p = handle.try_reserve(Lane::MarketData, COST).unwrap();
            l.observe(&p, &obs);
        })
    });
    g.bench_function("ledger_async_reserve_by_name_observe", |b| {
        b.iter(|| {
            let p = l
                .reserve("bench", Lane::MarketData, COST, Duration::from_millis(100))
                .now_or_never()
                .unwrap()
                .unwrap();
            l.observe(&p, &obs);
        })
    });
    g.bench_function("ledger_handle_reserve_only", |b| {
        b.iter(|| handle.try_reserve(Lane::MarketData, COST).unwrap())
    });
    let gov = governor_limiter();
    g.bench_function("governor_check", |b| b.iter(|| gov.check().unwrap()));
    // Part of every reservation: reading the clock.
    let clock = std_clock();
    g.bench_function("clock_read", |b| b.iter(|| clock.local_ms()));
    let fast_clock = FastClock::new();
    g.bench_function("clock_read_fast", |b| b.iter(|| fast_clock.local_ms()));
    let tokio_clock = TokioClock::new();
    g.bench_function("clock_read_tokio_test_util", |b| b.iter(|| tokio_clock.local_ms()));
    g.finish();
}

/// Runs `per_task` operations in each of `TASKS` tokio tasks and returns the wall time.
fn contended_run<F>(rt: &tokio::runtime::Runtime, iters: u64, make: impl Fn(usize) -> F) -> Duration
where
    F: FnMut() + Send + 'static,
{
    let per_task = iters.div_ceil(TASKS as u64);
    rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let mut op = make(t);
                tokio::spawn(async move {
                    for i in 0..per_task {
                        op();
                        // Yield now and then, as a real strategy task would between requests.
                        if i % 64 == 63 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        start.elapsed()
    })
}

fn contended(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("contended_8_tasks");
    g.throughput(Throughput::Elements(1));
    g.sample_size(30);

    let l = rt.block_on(async { ledger() });
    let obs = Arc::new(observation());
    g.bench_function("ledger_reserve_observe", |b| {
        b.iter_custom(|iters| {
            contended_run(&rt, iters, |t| {
                let handle = l.handle(&format!("strategy{t}"));
                let obs = obs.clone();
                move || {
                    let p = handle.try_reserve(Lane::Order, COST).unwrap();
                    handle.ledger().observe(&p, &obs);
                }
            })
        })
    });
    let gov = Arc::new(governor_limiter());
    g.bench_function("governor_check", |b| {
        b.iter_custom(|iters| {
            contended_run(&rt, iters, |_| {
                let gov = gov.clone();
                move || gov.check().unwrap()
            })
        })
    });
    g.finish();
}

/// Status is off the hot path but strategies may call it often.
fn status(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let l = ledger();
    c.bench_function("status", |b| {
        b.iter_batched(|| (), |_| l.status("bench"), BatchSize::SmallInput)
    });
}

criterion_group!(benches, uncontended, contended, status);
criterion_main!(benches);
