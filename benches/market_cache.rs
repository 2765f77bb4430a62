//! Market-data coalescing against the simulator on loopback:
//! (a) N strategies polling the same three symbols' depth(100), book ticker and 1m klines(100) once a second
//!     (each at its own phase): request weight the simulator charged, sent naively (every call a request, as
//!     before coalescing) and through the runner with single flight only, with `max_age_ms = 1000`, and with
//!     stream answers for depth and book ticker (printed);
//! (b) the latency of a market-data call answered without a request (kept answer, live stream), from Lua
//!     back to Lua, over the real API and venue (criterion).

#[path = "../tests/host/support.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mlua::Function;
use runner::exchange::binance::{BinanceVenue, ClientOptions, Credentials, Profile};
use runner::exchange::{CallCtx, Freshness, MarketRequest, MarketSavings, StreamKey, StreamKind, Venue};
use runner::host::calls::Calls;
use runner::host::stats::Stats;
use runner::host::vm::{CallOutcome, StrategyVm, VmOptions};
use runner::ledger::limits::{IntervalUnit, PoolKind, RateLimit};
use runner::ledger::{Ledger, LedgerConfig, TokioClock};
use runner::sim::{self, SimConfig, SimHandle};
use support::Files;

const SYMBOLS: [&str; 3] = ["BTCUSDT", "ETHUSDT", "BNBUSDT"];
const POLL_EVERY: Duration = Duration::from_secs(1);
const RUN_FOR: Duration = Duration::from_secs(4);
/// Calls per callback in the latency runs (a callback of 1,000 held calls takes a few milliseconds).
const CHUNK: u64 = 1_000;
const MARKET_PATHS: [&str; 3] = ["/api/v3/depth", "/api/v3/ticker/bookTicker", "/api/v3/klines"];

/// No limit gets in the way; the market moves as it does by default.
fn unlimited() -> SimConfig {
    SimConfig {
        limits: vec![RateLimit::new(
            PoolKind::RequestWeight,
            IntervalUnit::Minute,
            1,
            // As high as an announced limit may plausibly be (the client refuses higher ones).
            runner::exchange::binance::limits::usage::MAX_SANE_LIMIT,
        )],
        request_log_cap: 1_000_000,
        ..SimConfig::default()
    }
}

async fn connect(sim: &SimHandle) -> Arc<BinanceVenue> {
    let ledger = Ledger::new(unlimited().limits, LedgerConfig::default(), Arc::new(TokioClock::new()));
    let profile = Profile::paper(
        &sim.rest_url(),
        &sim.ws_url(),
        &sim.ws_api_url(),
        Credentials::new(sim::PAPER_API_KEY, sim::PAPER_API_SECRET),
    );
    let options = ClientOptions {
        user_data: false,
        ..ClientOptions::default()
    };
    BinanceVenue::connect(profile, ledger, options)
        .await
        .expect("client connects")
}

/// Weight the simulator charged for market-data requests arriving at or after `since_ms`.
fn market_weight_since(sim: &SimHandle, since_ms: i64) -> (u64, usize) {
    let log = sim.request_log();
    let market = log
        .iter()
        .filter(|r| r.at_ms >= since_ms && MARKET_PATHS.contains(&r.path.as_str()));
    market.fold((0, 0), |(w, n), r| (w + r.weight, n + 1))
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Naive,
    SingleFlight,
    MaxAge,
    Streams,
}

/// One poll of one strategy: the three symbols' depth(100), book ticker and klines(1m, 100).
async fn poll_runner(venue: &BinanceVenue, call: &CallCtx, mode: Mode) {
    for symbol in SYMBOLS {
        let max_age = match mode {
            Mode::MaxAge | Mode::Streams => Some(POLL_EVERY),
            _ => None,
        };
        let stream = matches!(mode, Mode::Streams);
        let requests = [
            MarketRequest::Depth {
                symbol: symbol.into(),
                limit: 100,
            },
            MarketRequest::BookTicker { symbol: symbol.into() },
            MarketRequest::Klines {
                symbol: symbol.into(),
                interval: "1m".into(),
                limit: 100,
            },
        ];
        for request in requests {
            let freshness = Freshness { max_age, stream };
            let answer = match venue.market_local(&call.strategy, &request, freshness) {
                Some(answer) => Ok(answer),
                None => venue.market_data(call, request, freshness).await,
            };
            if let Err(error) = answer {
                eprintln!("market call failed: {error}");
            }
        }
    }
}

async fn poll_naively(http: &reqwest::Client, base: &str) {
    for symbol in SYMBOLS {
        for query in [
            format!("/api/v3/depth?symbol={symbol}&limit=100"),
            format!("/api/v3/ticker/bookTicker?symbol={symbol}"),
            format!("/api/v3/klines?symbol={symbol}&interval=1m&limit=100"),
        ] {
            match http.get(format!("{base}{query}")).send().await {
                Ok(response) if response.status().is_success() => drop(response.bytes().await),
                Ok(response) => eprintln!("naive request answered {}", response.status()),
                Err(error) => eprintln!("naive request failed: {error}"),
            }
        }
    }
}

/// `strategies` polling for [`RUN_FOR`]: the weight the simulator charged, its requests, and the runner's savings.
async fn scenario(
    sim: &SimHandle,
    venue: &Arc<BinanceVenue>,
    strategies: usize,
    mode: Mode,
) -> (u64, usize, MarketSavings) {
    let before: MarketSavings = total(venue);
    let since = sim.now_ms();
    let http = reqwest::Client::new();
    let tasks = (0..strategies).map(|i| {
        let venue = Arc::clone(venue);
        let http = http.clone();
        let base = sim.rest_url();
        tokio::spawn(async move {
            let call = CallCtx::new(format!("bench-{i}"), Duration::from_secs(5));
            // Each strategy polls at its own phase within the second.
            let phase = POLL_EVERY.mul_f64(i as f64 / strategies as f64);
            tokio::time::sleep(phase).await;
            let started = tokio::time::Instant::now();
            let mut next = started;
            while next < started + RUN_FOR {
                match mode {
                    Mode::Naive => poll_naively(&http, &base).await,
                    _ => poll_runner(&venue, &call, mode).await,
                }
                next += POLL_EVERY;
                tokio::time::sleep_until(next).await;
            }
        })
    });
    futures_util::future::join_all(tasks).await;
    let (weight, requests) = market_weight_since(sim, since);
    let after = total(venue);
    let savings = MarketSavings {
        calls: after.calls - before.calls,
        requests_sent: after.requests_sent - before.requests_sent,
        joined: after.joined - before.joined,
        cache_hits: after.cache_hits - before.cache_hits,
        stream_hits: after.stream_hits - before.stream_hits,
        stale_served: after.stale_served - before.stale_served,
        weight_saved: after.weight_saved - before.weight_saved,
    };
    (weight, requests, savings)
}

fn total(venue: &BinanceVenue) -> MarketSavings {
    venue
        .market_savings()
        .iter()
        .fold(MarketSavings::default(), |mut t, (_, s)| {
            t.add(s);
            t
        })
}

fn weight_scenarios(runtime: &tokio::runtime::Runtime, sim: &SimHandle, venue: &Arc<BinanceVenue>) {
    println!(
        "market-data coalescing: N strategies, each polling {SYMBOLS:?} depth(100) + bookTicker + klines(1m, 100) every {POLL_EVERY:?} for {RUN_FOR:?}"
    );
    println!("| N | mode | requests at the simulator | weight charged | vs naive | runner calls | hit rate |");
    println!("|---|---|---|---|---|---|---|");
    for strategies in [5, 20] {
        let mut naive_weight = 0;
        for mode in [Mode::Naive, Mode::SingleFlight, Mode::MaxAge, Mode::Streams] {
            let (weight, requests, savings) = runtime.block_on(scenario(sim, venue, strategies, mode));
            if matches!(mode, Mode::Naive) {
                naive_weight = weight;
            }
            let ratio = naive_weight as f64 / weight.max(1) as f64;
            println!(
                "| {strategies} | {mode:?} | {requests} | {weight} | {ratio:.1}× less | {} | {:.1} % |",
                savings.calls,
                savings.hit_rate() * 100.0
            );
        }
    }
}

fn load(files: &Files, venue: Arc<dyn Venue>) -> StrategyVm {
    let path = files.write("bench.lua", "return { name = 'bench', symbols = { 'BTCUSDT' } }");
    let known = |_: &str| true;
    StrategyVm::load(
        &path,
        VmOptions {
            venue,
            calls: Some(Calls::default()),
            stdlib_dir: &files.path().join("stdlib"),
            memory_limit: 64 << 20,
            instruction_budget: 50_000_000,
            stats: Arc::new(Stats::default()),
            timers: None,
            known_symbol: &known,
            state: None,
        },
    )
    .expect("bench strategy loads")
}

/// CPU time of the calling thread per call, for each kind of answer held by the process and for
/// `market.quote` (a plain host function) as the floor: unlike wall time, it does not grow when other
/// processes take the cores, so it can be read on a busy machine.
fn thread_cpu_per_call(runtime: &tokio::runtime::Runtime, vm: &StrategyVm) {
    use nix::time::{clock_gettime, ClockId};
    const CALLS: u64 = 200_000;
    let thread_cpu = || {
        let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("thread CPU clock");
        Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
    };
    for (name, call, calls) in [
        ("quote (plain host function)", "market.quote('BTCUSDT')", CALLS),
        ("book_ticker, stream", "market.book_ticker('BTCUSDT', stream)", CALLS),
        ("book_ticker, kept", "market.book_ticker('BTCUSDT', opts)", CALLS),
        ("ticker, kept", "market.ticker('BTCUSDT', opts)", CALLS),
        ("depth 5, kept", "market.depth('BTCUSDT', 5, opts)", CALLS / 4),
        ("depth 100, stream", "market.depth('BTCUSDT', 100, stream)", CALLS / 40),
        (
            "klines 100, stream",
            "market.klines('BTCUSDT', '1m', 100, stream)",
            CALLS / 100,
        ),
    ] {
        let function: Function = vm
            .lua()
            .load(format!(
                "local opts, stream = {{ max_age_ms = 86400000 }}, {{ stream = true }}
                 return function(n) local a for i = 1, n do a = {call} end assert(a) end"
            ))
            .eval()
            .unwrap();
        assert_eq!(runtime.block_on(vm.invoke(&function, 1)), CallOutcome::Done);
        // In callbacks of at most CHUNK calls: one long callback would run into the CPU limit.
        let before = thread_cpu();
        for _ in 0..calls.div_ceil(CHUNK) {
            assert_eq!(runtime.block_on(vm.invoke(&function, CHUNK)), CallOutcome::Done);
        }
        let calls = calls.div_ceil(CHUNK) * CHUNK;
        let per_call = (thread_cpu() - before).as_secs_f64() * 1e9 / calls as f64;
        println!("thread CPU per call, {name}: {per_call:.0} ns ({calls} calls)");
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sim = runtime.block_on(async { sim::start(unlimited(), "127.0.0.1:0".parse().unwrap()).await.unwrap() });
    let venue = runtime.block_on(connect(&sim));
    runtime.block_on(async {
        let streams = SYMBOLS
            .iter()
            .flat_map(|s| {
                [StreamKind::Book, StreamKind::Depth, StreamKind::Kline("1m".into())].map(|kind| StreamKey {
                    symbol: s.to_string(),
                    kind,
                })
            })
            .collect();
        venue.set_subscriptions(&Arc::from("streams"), streams).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while SYMBOLS
            .iter()
            .any(|s| venue.book(s, 1).is_none() || venue.quote(s).is_none())
        {
            assert!(Instant::now() < deadline, "streams in sync");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    weight_scenarios(&runtime, &sim, &venue);

    let files = Files::new();
    let vm = runtime.block_on(async { load(&files, venue.clone()) });
    let mut group = c.benchmark_group("market_cache");
    group.throughput(Throughput::Elements(1));
    for (name, call) in [
        ("ticker_cache_hit", "market.ticker('BTCUSDT', opts)"),
        ("book_ticker_cache_hit", "market.book_ticker('BTCUSDT', opts)"),
        ("book_ticker_stream_hit", "market.book_ticker('BTCUSDT', stream)"),
        ("depth5_cache_hit", "market.depth('BTCUSDT', 5, opts)"),
        ("depth100_cache_hit", "market.depth('BTCUSDT', 100, opts)"),
        ("depth100_stream_hit", "market.depth('BTCUSDT', 100, stream)"),
        ("klines100_cache_hit", "market.klines('BTCUSDT', '1m', 100, opts)"),
        ("klines100_stream_hit", "market.klines('BTCUSDT', '1m', 100, stream)"),
    ] {
        let function: Function = vm
            .lua()
            .load(format!(
                "local opts, stream = {{ max_age_ms = 86400000 }}, {{ stream = true }}
                 return function(n) local a, err for i = 1, n do a, err = {call} end assert(a, tostring(err)) return a.source end"
            ))
            .eval()
            .unwrap();
        // The first call fills the cache; every later one must be a hit.
        let first = runtime.block_on(vm.invoke(&function, 1));
        assert_eq!(
            first,
            CallOutcome::Done,
            "{name}: ledger {:#?}",
            venue.ledger_status("").pools
        );
        // In callbacks of at most CHUNK calls, as a strategy makes them: one long callback would be
        // measured with the CPU limit's hook armed (after 10 ms), which no real callback of a few calls sees.
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                let mut left = iters;
                while left > 0 {
                    let calls = left.min(CHUNK);
                    let outcome = runtime.block_on(vm.invoke(&function, calls));
                    assert_eq!(outcome, CallOutcome::Done);
                    left -= calls;
                }
                started.elapsed()
            })
        });
    }
    group.finish();
    thread_cpu_per_call(&runtime, &vm);
    let savings = total(&venue);
    println!(
        "after the latency runs: {} calls, {} requests sent, hit rate {:.4} %",
        savings.calls,
        savings.requests_sent,
        savings.hit_rate() * 100.0
    );
    runtime.block_on(venue.shutdown());
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
