//! Replay speed: a generated day of one symbol's trades (Binance `trades` CSV layout) replayed
//! through the matching engine into a Lua strategy that counts them.
//!
//! `cargo bench --bench backtest_replay [-- TRADES]` (default 1 000 000 trades, spread over a day).
//! Prints the load time (CSV parsing) and the replay time (engine + Lua) separately, and events/s.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use runner::backtest::{self, BacktestOptions};

const COUNTER: &str = r#"
local n = 0
return {
  symbols = { "BTCUSDT" },
  streams = { "trade" },
  on_trade = function(t) n = n + 1 end,
  on_stop = function() log.info("counted %d trades", n) end,
}
"#;

fn main() {
    let trades: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("BTCUSDT-trades-2025-01-01.csv");
    let start_us: i64 = 1_735_689_600_000_000; // 2025-01-01T00:00:00Z, microseconds as Binance's 2025 files
    let step_us = 86_400_000_000 / trades.max(1) as i64;
    let mut text = String::with_capacity(trades as usize * 64);
    let mut price = 95_000.0f64;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for id in 0..trades {
        // xorshift: a cheap deterministic walk.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        price += ((seed % 201) as f64 - 100.0) * 0.01;
        let qty = 0.00001 * (1 + seed % 5000) as f64;
        let _ = writeln!(
            text,
            "{id},{price:.2},{qty:.5},{:.8},{},{},True",
            price * qty,
            start_us + id as i64 * step_us,
            if seed & 1 == 0 { "True" } else { "False" }
        );
    }
    std::fs::write(&data, text).expect("write data");
    let strategy = dir.path().join("counter.lua");
    std::fs::write(&strategy, COUNTER).expect("write strategy");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let options = BacktestOptions {
        strategy,
        data: data.clone(),
        from: None,
        to: None,
        latency: Duration::from_millis(5),
        fees: backtest::Fees::default(),
        limits: runner::exchange::binance::limits::pools::spot_defaults(),
        balances: backtest::default_balances(),
        stdlib_dir: root.join("stdlib"),
        report_dir: None,
    };

    // Wall time, and this thread's CPU time (the backtest runs on it): on a loaded machine the
    // CPU time is the figure that compares across runs.
    let (t0, c0) = (Instant::now(), thread_cpu());
    let loaded = backtest::data::load(&data, None, None).expect("load");
    let (load, load_cpu) = (t0.elapsed(), thread_cpu().saturating_sub(c0));
    drop(loaded);
    let (t1, c1) = (Instant::now(), thread_cpu());
    let report = backtest::run(&options).expect("backtest");
    let (total, total_cpu) = (t1.elapsed(), thread_cpu().saturating_sub(c1));
    let replay = total.saturating_sub(load);
    let replay_cpu = total_cpu.saturating_sub(load_cpu);
    assert_eq!(report.events_replayed, trades, "every trade replayed");
    let rate = |d: Duration| trades as f64 / d.as_secs_f64().max(1e-9);
    println!(
        "{trades} trades (one day of BTCUSDT): load {:.2} s ({:.2} M rows/s), replay into Lua {:.2} s \
         ({:.2} M events/s; CPU {:.2} s, {:.2} M events per CPU-second), whole backtest {:.2} s",
        load.as_secs_f64(),
        rate(load) / 1e6,
        replay.as_secs_f64(),
        rate(replay) / 1e6,
        replay_cpu.as_secs_f64(),
        rate(replay_cpu) / 1e6,
        total.as_secs_f64()
    );
}

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| Duration::new(t.tv_sec().max(0) as u64, t.tv_nsec().clamp(0, 999_999_999) as u32))
        .unwrap_or_default()
}
