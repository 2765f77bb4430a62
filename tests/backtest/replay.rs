//! Backtests on small data files written here, in the recording format and in Binance's CSV
//! layouts: the fill model, determinism, rate limits in replayed time, and bad input.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use runner::backtest::report::{FillRow, Report};
use runner::backtest::{self, BacktestOptions};
use runner::record::{BlockWriter, Record, RecordKind};
use serde_json::json;

/// The simulator's exchangeInfo for BTCUSDT (tick 0.01, step 0.00001, min notional 5).
fn exchange_info() -> Vec<u8> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let sim = runner::sim::start(
            runner::sim::SimConfig {
                market_tick: Duration::ZERO,
                ..runner::sim::SimConfig::default()
            },
            ([127, 0, 0, 1], 0).into(),
        )
        .await
        .unwrap();
        let url = format!("{}/api/v3/exchangeInfo?symbol=BTCUSDT", sim.rest_url());
        let body = reqwest::get(&url).await.unwrap().bytes().await.unwrap().to_vec();
        sim.shutdown().await;
        body
    })
}

fn stream(at_ms: i64, name: &str, data: serde_json::Value) -> Record {
    Record {
        kind: RecordKind::Stream,
        received_us: at_ms * 1000,
        payload: json!({ "stream": name, "data": data }).to_string().into_bytes(),
    }
}

pub(crate) fn snapshot(at_ms: i64, bids: &[(&str, &str)], asks: &[(&str, &str)]) -> Record {
    let rows = |l: &[(&str, &str)]| l.iter().map(|(p, q)| json!([p, q])).collect::<Vec<_>>();
    Record {
        kind: RecordKind::DepthSnapshot,
        received_us: at_ms * 1000,
        payload: json!({"symbol": "BTCUSDT", "lastUpdateId": 100, "bids": rows(bids), "asks": rows(asks)})
            .to_string()
            .into_bytes(),
    }
}

/// A trade; `seller_took` is true when a seller hit the bids (the buyer was the maker).
pub(crate) fn trade(at_ms: i64, id: u64, price: &str, qty: &str, seller_took: bool) -> Record {
    stream(
        at_ms,
        "btcusdt@trade",
        json!({"e":"trade","E":at_ms,"s":"BTCUSDT","t":id,"p":price,"q":qty,"T":at_ms,"m":seller_took,"M":true}),
    )
}

pub(crate) fn write_recording(dir: &Path, records: &[Record]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("20250101T000000Z-0000.rrec");
    let mut writer = BlockWriter::create(&path).unwrap();
    writer
        .write_block(&[Record {
            kind: RecordKind::ExchangeInfo,
            received_us: records.first().map_or(0, |r| r.received_us),
            payload: exchange_info(),
        }])
        .unwrap();
    for chunk in records.chunks(7) {
        writer.write_block(chunk).unwrap();
    }
    path
}

pub(crate) fn write_strategy(dir: &Path, name: &str, source: &str) -> PathBuf {
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, source).unwrap();
    path
}

pub(crate) fn options(strategy: PathBuf, data: PathBuf) -> BacktestOptions {
    BacktestOptions {
        strategy,
        data,
        from: None,
        to: None,
        latency: Duration::from_millis(5),
        fees: backtest::Fees::default(),
        limits: runner::exchange::binance::limits::pools::spot_defaults(),
        balances: backtest::default_balances(),
        stdlib_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("stdlib"),
        report_dir: None,
    }
}

pub(crate) fn fill(
    time_ms: i64,
    side: &'static str,
    price: f64,
    qty: f64,
    maker: bool,
) -> (i64, &'static str, f64, f64, bool) {
    (time_ms, side, price, qty, maker)
}

pub(crate) fn fills(report: &Report) -> Vec<(i64, &'static str, f64, f64, bool)> {
    report
        .fill_list
        .iter()
        .map(|f: &FillRow| (f.time_ms, f.side, f.price, (f.qty * 1e8).round() / 1e8, f.maker))
        .collect()
}

const RESTING_BUY: &str = r#"
return {
  symbols = { "BTCUSDT" },
  streams = { "trade" },
  on_start = function()
    local o, err = orders.place{ symbol = "BTCUSDT", side = "BUY", type = "LIMIT", price = 99.90, quantity = 0.1 }
    assert(o, tostring(err))
  end,
}
"#;

#[test]
fn a_resting_order_fills_exactly_when_recorded_trades_cross_it_behind_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    // 0.3 recorded at 99.90 is ahead of our order, which joins the level after it.
    let data = write_recording(
        &dir.path().join("data"),
        &[
            snapshot(1_000, &[("100.00", "1"), ("99.90", "0.3")], &[("100.10", "1")]),
            trade(2_000, 1, "99.95", "1", true),    // above our price: no fill
            trade(3_000, 2, "99.90", "0.2", true),  // takes 0.2 of the 0.3 ahead of us
            trade(4_000, 3, "99.90", "0.15", true), // the last 0.1 ahead, then 0.05 of ours
            trade(5_000, 4, "99.85", "0.01", true), // through our price: at most its quantity
            trade(6_000, 5, "99.80", "1", true),    // through our price: the rest
            trade(7_000, 6, "99.70", "1", true),    // nothing left
        ],
    );
    let strategy = write_strategy(dir.path(), "resting", RESTING_BUY);
    let report = backtest::run(&options(strategy, data)).unwrap();
    assert_eq!(
        fills(&report),
        vec![
            fill(4_000, "BUY", 99.90, 0.05, true),
            fill(5_000, "BUY", 99.90, 0.01, true),
            fill(6_000, "BUY", 99.90, 0.04, true),
        ]
    );
    assert_eq!(report.orders.get("filled"), Some(&1));
    assert!((report.pnl["BTC"] - 0.0999).abs() < 1e-12, "{:?}", report.pnl);
    assert!((report.pnl["USDT"] + 9.99).abs() < 1e-9, "{:?}", report.pnl);
}

#[test]
fn a_market_order_walks_the_recorded_book() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_recording(
        &dir.path().join("data"),
        &[
            snapshot(
                1_000,
                &[("100.00", "1")],
                &[("100.10", "0.1"), ("100.20", "0.1"), ("100.30", "1")],
            ),
            trade(2_000, 1, "100.10", "0.01", false),
        ],
    );
    let strategy = write_strategy(
        dir.path(),
        "taker",
        r#"
local done = false
return {
  symbols = { "BTCUSDT" },
  streams = { "trade" },
  on_trade = function(t)
    if done then return end
    done = true
    local o, err = orders.place{ symbol = "BTCUSDT", side = "BUY", type = "MARKET", quantity = 0.25 }
    assert(o and o.status == "FILLED", tostring(err))
    assert(math.abs(o.avg_price - (0.09 * 100.10 + 0.1 * 100.20 + 0.06 * 100.30) / 0.25) < 1e-9, o.avg_price)
  end,
}
"#,
    );
    let report = backtest::run(&options(strategy, data)).unwrap();
    // The recorded trade took 0.01 of the 100.10 level first; the order arrives 5 ms after it.
    assert_eq!(
        fills(&report),
        vec![
            fill(2_005, "BUY", 100.10, 0.09, false),
            fill(2_005, "BUY", 100.20, 0.1, false),
            fill(2_005, "BUY", 100.30, 0.06, false),
        ]
    );
    assert_eq!(report.strategy_errors, 0);
}

#[test]
fn two_runs_give_byte_identical_reports() {
    let dir = tempfile::tempdir().unwrap();
    let mut records = vec![snapshot(
        1_000,
        &[("100.00", "1"), ("99.90", "0.3")],
        &[("100.10", "1")],
    )];
    for k in 0..200 {
        let price = format!("{:.2}", 99.80 + (k % 7) as f64 * 0.05);
        records.push(trade(1_100 + k * 250, k as u64 + 1, &price, "0.02", k % 2 == 0));
    }
    let data = write_recording(&dir.path().join("data"), &records);
    let strategy = write_strategy(
        dir.path(),
        "both_sides",
        r#"
return {
  symbols = { "BTCUSDT" },
  streams = { "trade" },
  on_start = function() timer.every(5000, "requote") end,
  on_timer = function()
    orders.cancel_all("BTCUSDT")
    orders.place{ symbol = "BTCUSDT", side = "BUY", type = "LIMIT", price = 99.85, quantity = 0.1 }
    orders.place{ symbol = "BTCUSDT", side = "SELL", type = "LIMIT", price = 100.05, quantity = 0.1 }
  end,
}
"#,
    );
    let mut reports = Vec::new();
    for run in 0..2 {
        let mut o = options(strategy.clone(), data.clone());
        o.report_dir = Some(dir.path().join(format!("report{run}")));
        backtest::run(&o).unwrap();
        let json = std::fs::read(dir.path().join(format!("report{run}/report.json"))).unwrap();
        let svg = std::fs::read(dir.path().join(format!("report{run}/equity.svg"))).unwrap();
        reports.push((json, svg));
    }
    assert_eq!(reports[0], reports[1]);
    let report: serde_json::Value = serde_json::from_slice(&reports[0].0).unwrap();
    assert!(report["fills"].as_u64().unwrap() > 0, "{report}");
    assert!(report["orders"]["canceled"].as_u64().unwrap() > 0, "{report}");
}

#[test]
fn a_strategy_hammering_rest_is_rate_limited_in_replayed_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut records = vec![snapshot(1_000, &[("100.00", "1")], &[("100.10", "1")])];
    // One trade every 100 ms of replayed time, from 1.0 s to 30.9 s: three 10 s windows.
    for k in 0..300 {
        records.push(trade(1_000 + k * 100, k as u64 + 1, "100.00", "0.01", true));
    }
    let data = write_recording(&dir.path().join("data"), &records);
    let strategy = write_strategy(
        dir.path(),
        "hammer",
        r#"
return {
  symbols = { "BTCUSDT" },
  streams = { "trade" },
  on_trade = function(t)
    local ticker, err = market.ticker("BTCUSDT", { wait_ms = 0 })
    if not ticker then assert(err.code == "rate_limited", err.code) end
  end,
}
"#,
    );
    let mut o = options(strategy, data);
    // 20 weight per 10 s: ten 2-weight ticker calls per window (fewer: the market-data lane
    // leaves 5 % of every window to orders and cancels).
    o.limits = vec![runner::cli::parse_limit("REQUEST_WEIGHT=20/10s").unwrap()];
    let report = backtest::run(&o).unwrap();
    let limited = report.calls.rate_limited;
    let allowed = 300 - limited;
    // The replay takes milliseconds of wall time: only replayed time can have reset the windows
    // (three or four windows are touched: 1-10 s, 10-20 s, 20-30 s, 30-31 s).
    assert!(
        (3 * 9..=4 * 10).contains(&allowed),
        "{allowed} calls allowed, {limited} rate-limited"
    );
    assert!(report.budget.peak_weight_pct <= 100.0);
    assert_eq!(report.strategy_errors, 0);
}

#[test]
fn binance_csv_trades_with_microsecond_times_fill_a_resting_order() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // 2025 spot files: microseconds.
    let base_us = 1_735_689_600_000_000i64;
    let rows = [
        (1, "100.00000000", "0.50000000", 0, "True"),
        (2, "99.95000000", "0.50000000", 1_000_000, "True"),
        (3, "99.90000000", "0.30000000", 2_000_000, "True"),
    ];
    let text: String = rows
        .iter()
        .map(|(id, p, q, dt, m)| format!("{id},{p},{q},0,{},{m},True\n", base_us + dt))
        .collect();
    std::fs::write(data.join("BTCUSDT-trades-2025-01-01.csv"), text).unwrap();
    let strategy = write_strategy(dir.path(), "resting", RESTING_BUY);
    let report = backtest::run(&options(strategy, data)).unwrap();
    let base_ms = base_us / 1000;
    assert_eq!(fills(&report), vec![fill(base_ms + 2_000, "BUY", 99.90, 0.1, true)]);
}

#[test]
fn binance_agg_trades_and_klines_layouts_replay() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("agg");
    std::fs::create_dir_all(&data).unwrap();
    // Before 2025: milliseconds.
    let t0 = 1_704_067_200_000i64;
    std::fs::write(
        data.join("BTCUSDT-aggTrades-2024-01-01.csv"),
        // The first trade leaves 0.5 bid at 99.90 (one tick under it) ahead of our order: a 0.6 sell fills us 0.1.
        format!(
            "1,100.00,0.5,1,1,{t0},False,True\n2,99.90,0.6,2,3,{},True,True\n",
            t0 + 1000
        ),
    )
    .unwrap();
    let strategy = write_strategy(dir.path(), "resting", RESTING_BUY);
    let report = backtest::run(&options(strategy.clone(), data)).unwrap();
    assert_eq!(fills(&report), vec![fill(t0 + 1000, "BUY", 99.90, 0.1, true)]);

    let klines = dir.path().join("klines");
    std::fs::create_dir_all(&klines).unwrap();
    // A falling candle (open 100.00, high 100.10, low 99.80, close 99.85): its path crosses 99.90.
    std::fs::write(
        klines.join("BTCUSDT-1m-2024-01-01.csv"),
        format!(
            "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore\n\
             {t0},100.00,100.10,99.80,99.85,4.0,{},400,10,2,200,0\n",
            t0 + 59_999
        ),
    )
    .unwrap();
    let report = backtest::run(&options(strategy, klines)).unwrap();
    assert_eq!(report.fill_list.len(), 1, "{:?}", report.fill_list);
    assert_eq!(report.fill_list[0].price, 99.90);
}

/// Runs `runner backtest`; returns the exit code and stderr.
fn run_cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("backtest")
        .args(args)
        .env(
            "RUNNER_STDLIB",
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("stdlib"),
        )
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_input_is_one_clear_line_naming_the_file_and_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let strategy = write_strategy(dir.path(), "resting", RESTING_BUY);
    let s = strategy.to_str().unwrap();
    let error_line = |stderr: &str| -> String {
        let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("runner:")).collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        lines[0].to_string()
    };

    // Missing.
    let (code, err) = run_cli(&[s, "--data", "/no/such/dir"]);
    assert_ne!(code, 0);
    assert!(error_line(&err).contains("/no/such/dir"), "{err}");

    // Truncated recording.
    let rec = dir.path().join("rec");
    let file = write_recording(
        &rec,
        &[
            snapshot(1_000, &[("100.00", "1")], &[("100.10", "1")]),
            trade(2_000, 1, "100.00", "1", true),
        ],
    );
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 5]).unwrap();
    let (code, err) = run_cli(&[s, "--data", rec.to_str().unwrap()]);
    assert_ne!(code, 0);
    let line = error_line(&err);
    assert!(
        line.contains("20250101T000000Z-0000.rrec") && line.contains("block 1 at byte") && line.contains("truncated"),
        "{line}"
    );

    // Unknown layout.
    let csv = dir.path().join("csv");
    std::fs::create_dir_all(&csv).unwrap();
    std::fs::write(csv.join("BTCUSDT-bookDepth-2025-01-01.csv"), "1,2,3\n").unwrap();
    let (code, err) = run_cli(&[s, "--data", csv.to_str().unwrap()]);
    assert_ne!(code, 0);
    let line = error_line(&err);
    assert!(
        line.contains("BTCUSDT-bookDepth-2025-01-01.csv") && line.contains("unknown layout"),
        "{line}"
    );

    // Timestamps out of order.
    std::fs::remove_file(csv.join("BTCUSDT-bookDepth-2025-01-01.csv")).unwrap();
    std::fs::write(
        csv.join("BTCUSDT-trades-2024-01-01.csv"),
        "1,100.0,1.0,100.0,1704067201000,True,True\n2,100.0,1.0,100.0,1704067200000,True,True\n",
    )
    .unwrap();
    let (code, err) = run_cli(&[s, "--data", csv.to_str().unwrap()]);
    assert_ne!(code, 0);
    let line = error_line(&err);
    assert!(
        line.contains("BTCUSDT-trades-2024-01-01.csv: row 2: timestamps out of order"),
        "{line}"
    );

    // A range with no data.
    std::fs::write(
        csv.join("BTCUSDT-trades-2024-01-01.csv"),
        "1,100.0,1.0,100.0,1704067200000,True,True\n",
    )
    .unwrap();
    let (code, err) = run_cli(&[s, "--data", csv.to_str().unwrap(), "--from", "2030-01-01T00:00:00Z"]);
    assert_ne!(code, 0);
    let line = error_line(&err);
    assert!(
        line.contains(csv.to_str().unwrap()) && line.contains("no data between"),
        "{line}"
    );

    // A missing data file named on its own.
    let missing = csv.join("BTCUSDT-trades-2024-01-02.csv");
    let (code, err) = run_cli(&[s, "--data", missing.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(error_line(&err).contains("BTCUSDT-trades-2024-01-02.csv"), "{err}");

    // A truncated CSV row.
    std::fs::write(
        csv.join("BTCUSDT-trades-2024-01-01.csv"),
        "1,100.0,1.0,100.0,1704067200000,True,True\n2,100.0,1.0\n",
    )
    .unwrap();
    let (code, err) = run_cli(&[s, "--data", csv.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        error_line(&err).contains("BTCUSDT-trades-2024-01-01.csv: row 2: 3 columns"),
        "{err}"
    );
}

#[test]
fn a_recording_whose_timestamps_go_back_is_one_line_naming_the_file_and_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let strategy = write_strategy(dir.path(), "resting", RESTING_BUY);
    let rec = dir.path().join("rec");
    write_recording(
        &rec,
        &[
            snapshot(1_000, &[("100.00", "1")], &[("100.10", "1")]),
            trade(3_000, 1, "100.00", "1", true),
            trade(2_000, 2, "100.00", "1", true),
        ],
    );
    let (code, err) = run_cli(&[strategy.to_str().unwrap(), "--data", rec.to_str().unwrap()]);
    assert_ne!(code, 0);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("runner:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("20250101T000000Z-0000.rrec: block 1, record 2: timestamps out of order"),
        "{}",
        lines[0]
    );
}

#[test]
fn timers_in_replayed_time_are_capped_like_live_ones_and_fired_one_shots_free_their_slot() {
    let dir = tempfile::tempdir().unwrap();
    let mut records = vec![snapshot(1_000, &[("100.00", "1")], &[("100.10", "1")])];
    for k in 0..50 {
        records.push(trade(1_100 + k * 100, k as u64 + 1, "100.05", "0.01", k % 2 == 0));
    }
    let data = write_recording(&dir.path().join("data"), &records);
    // Every failure is a strategy error; success is one order per phase, seen in the report.
    let strategy = write_strategy(
        dir.path(),
        "timer_flood",
        r#"
local function flood(prefix, delay)
  local made, refused = 0, nil
  for i = 1, 1500 do
    local ok, err = pcall(timer.after, delay, prefix .. i)
    if ok then made = made + 1 else refused = err end
  end
  assert(made == 1000, "made " .. made)
  assert(tostring(refused):find("too many timers", 1, true), tostring(refused))
  -- A name already set is replaced, never refused.
  assert(pcall(timer.after, delay, prefix .. 1))
end

return {
  symbols = { "BTCUSDT" },
  streams = { "trade" },
  on_start = function()
    flood("a", 10)
    timer.cancel("a1")
    timer.after(50, "next")
    orders.place{ symbol = "BTCUSDT", side = "BUY", type = "LIMIT", price = 90, quantity = 0.1 }
  end,
  on_timer = function(name)
    if name == "next" then
      -- Every one-shot timer of the first flood has fired: their slots are free again.
      flood("b", 60000)
      orders.place{ symbol = "BTCUSDT", side = "BUY", type = "LIMIT", price = 91, quantity = 0.1 }
    end
  end,
}
"#,
    );
    let report = backtest::run(&options(strategy, data)).unwrap();
    assert_eq!(report.strategy_errors, 0, "{report:?}");
    assert_eq!(report.calls.placed, 2, "{:?}", report.calls);
}
