//! Strategy host hot paths, one core:
//! (a) raw bookTicker frame → parse → `Quote` → Lua `on_book`;
//! (b) the cost of a Lua → host call that needs no exchange (`market.quote`), and of an order
//!     (`market.round_price` + `orders.place` with its argument checks, to a venue that answers at once);
//! (c) the memory of an idle VM after loading a typical strategy (printed).

#[path = "../tests/host/support.rs"]
mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mlua::Function;
use runner::exchange::binance::wire::BookTickerEvent;
use runner::exchange::Quote;
use runner::host::calls::Calls;
use runner::host::inbox::Event;
use runner::host::stats::Stats;
use runner::host::vm::{CallOutcome, StrategyVm, VmOptions};
use support::{Files, TestVenue};

const STRATEGY: &str = r#"
local ind = require("indicators")
local spread_sum, n = 0, 0
return {
    name = "bench",
    symbols = { "BTCUSDT", "ETHUSDT", "ETHBTC" },
    streams = { "book" },
    on_book = function(q)
        spread_sum = spread_sum + (q.ask - q.bid)
        n = n + 1
    end,
    on_timer = function() log.info("avg spread %.4f", ind.mean(spread_sum, n)) end,
}
"#;

const FRAME: &str =
    r#"{"u":400900217,"s":"BTCUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}"#;

/// An indicator-like loop: table writes and reads, arithmetic and a library call per iteration.
const COMPUTE: &str = r#"return function(n)
    local window, sum = {}, 0
    for i = 1, n do
        local slot = i % 64 + 1
        window[slot] = i * 0.5
        sum = sum + math.sqrt(window[slot]) - (window[(slot % 64) + 1] or 0) * 0.001
    end
    return sum
end"#;

/// Iterations per callback: a few milliseconds at most, like a real callback.
const COMPUTE_BATCH: u64 = 20_000;

fn load(files: &Files, venue: &Arc<TestVenue>, calls: Option<Calls>) -> StrategyVm {
    files.write(
        "stdlib/indicators.lua",
        "return { mean = function(s, n) return n > 0 and s / n or 0 end }",
    );
    let path = files.write("bench.lua", STRATEGY);
    let known = |s: &str| ["BTCUSDT", "ETHUSDT", "ETHBTC"].contains(&s);
    StrategyVm::load(
        &path,
        VmOptions {
            venue: venue.clone(),
            calls,
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

/// What the venue's stream task does per frame, with the symbol interned once.
fn parse(frame: &str, symbol: &Arc<str>) -> Quote {
    let event: BookTickerEvent = serde_json::from_str(frame).expect("frame");
    Quote {
        symbol: if &**symbol == event.s {
            symbol.clone()
        } else {
            event.s.into()
        },
        bid: event.b.parse().unwrap_or(f64::NAN),
        bid_qty: event.bid_qty.parse().unwrap_or(f64::NAN),
        ask: event.a.parse().unwrap_or(f64::NAN),
        ask_qty: event.ask_qty.parse().unwrap_or(f64::NAN),
        update_id: event.u,
        time: 0,
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let files = Files::new();
    let venue = TestVenue::new();
    let vm = load(&files, &venue, None);
    println!("idle VM after loading a typical strategy: {} bytes", vm.used_memory());
    let symbol: Arc<str> = Arc::from("BTCUSDT");

    let mut group = c.benchmark_group("dispatch");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_only", |b| b.iter(|| black_box(parse(black_box(FRAME), &symbol))));
    group.bench_function("frame_to_on_book", |b| {
        b.iter(|| {
            let event = Event::Book(parse(black_box(FRAME), &symbol));
            let outcome = runtime.block_on(vm.deliver(&event));
            debug_assert_eq!(outcome, Some(CallOutcome::Done));
            black_box(outcome)
        })
    });
    group.bench_function("frame_to_on_book_batched", |b| {
        // The worker handles a backlog inside one task poll; so does this.
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let event = Event::Book(parse(black_box(FRAME), &symbol));
                    black_box(vm.deliver(&event).await);
                }
                started.elapsed()
            })
        })
    });

    venue
        .quotes
        .lock()
        .insert("BTCUSDT".into(), support::quote("BTCUSDT", 100.0, 1));
    let quote_loop: Function = vm
        .lua()
        .load("return function(n) local q for i = 1, n do q = market.quote('BTCUSDT') end return q end")
        .eval()
        .unwrap();
    let empty_loop: Function = vm
        .lua()
        .load("return function(n) local q for i = 1, n do q = i end return q end")
        .eval()
        .unwrap();
    for (name, function) in [("market_quote_call", &quote_loop), ("empty_loop_baseline", &empty_loop)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let batch = left.min(100_000);
                    let started = Instant::now();
                    let outcome = runtime.block_on(vm.invoke(function, batch));
                    total += started.elapsed();
                    assert_eq!(outcome, CallOutcome::Done);
                    left -= batch;
                }
                total
            })
        });
    }
    // An order as a strategy places one, through the host's checks and call machinery to a venue
    // that answers at once: the host's part of tick-to-order.
    let trading = runtime.block_on(async { load(&files, &venue, Some(Calls::default())) });
    let order_loop: Function = trading
        .lua()
        .load(
            r#"return function(n)
                local o, err
                for i = 1, n do
                    o, err = orders.place { symbol = "BTCUSDT", side = "BUY", type = "LIMIT", tif = "IOC",
                        quantity = 0.001, price = market.round_price("BTCUSDT", 25000.123) }
                end
                assert(o, tostring(err))
                return o
            end"#,
        )
        .eval()
        .unwrap();
    group.bench_function("orders_place_call", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let batch = left.min(10_000);
                let started = Instant::now();
                let outcome = runtime.block_on(trading.invoke(&order_loop, batch));
                total += started.elapsed();
                assert_eq!(outcome, CallOutcome::Done);
                // The test venue keeps what it was sent: forget it between batches.
                venue.placed.lock().clear();
                venue.calls.lock().clear();
                left -= batch;
            }
            total
        })
    });
    // The same loop in a plain, unsandboxed VM without limits: what the hook and limits cost.
    let plain = mlua::Lua::new();
    let plain_loop: Function = plain
        .load("return function(n) local q for i = 1, n do q = i end return q end")
        .eval()
        .unwrap();
    group.bench_function("empty_loop_plain_vm", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            plain_loop.call::<Option<i64>>(iters).unwrap();
            started.elapsed()
        })
    });

    // Compute-heavy Lua (an indicator-like loop over a table with a library call): the strategy
    // VM's callback against the same code in a plain VM, with and without an instruction hook
    // that fires every 10 000 instructions (what a CPU limit enforced by counting costs).
    let compute_vm: Function = vm.lua().load(COMPUTE).eval().unwrap();
    group.bench_function("compute_callback", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let batch = left.min(COMPUTE_BATCH);
                let started = Instant::now();
                let outcome = runtime.block_on(vm.invoke(&compute_vm, batch));
                total += started.elapsed();
                assert_eq!(outcome, CallOutcome::Done);
                left -= batch;
            }
            total
        })
    });
    let compute_plain: Function = plain.load(COMPUTE).eval().unwrap();
    group.bench_function("compute_plain_vm", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            black_box(compute_plain.call::<f64>(iters).unwrap());
            started.elapsed()
        })
    });
    let hooked = mlua::Lua::new();
    hooked
        .set_global_hook(mlua::HookTriggers::new().every_nth_instruction(10_000), |_, _| {
            Ok(mlua::VmState::Continue)
        })
        .unwrap();
    let compute_hooked: Function = hooked.load(COMPUTE).eval().unwrap();
    group.bench_function("compute_hook_always_on", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            black_box(compute_hooked.call::<f64>(iters).unwrap());
            started.elapsed()
        })
    });
    group.finish();

    c.bench_function("vm_load_typical_strategy", |b| {
        b.iter(|| black_box(load(&files, &venue, None).used_memory()))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
