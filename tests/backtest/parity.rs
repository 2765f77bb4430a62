//! Parity: a paper session of strategies/market_maker.lua on a market (`--paper --market`) and a
//! backtest of the same file on a recording of that market, made at the same time, fill alike.
//!
//! Both fill through the same fill model on the same stream frames; what the model lets differ is
//! timing: where in the stream each order lands (the real loopback delay in paper, `--latency` in the
//! backtest) and the edges of the window. The test prints the measured difference.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use runner::backtest::{self, BacktestOptions};
use runner::sim::{self, SimConfig, SymbolSpec};

use crate::support::{repo_root, runner, Running};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// `(fills, placed)` from the strategy's "report: ... N fills, M placed, ..." line.
fn reported(line: &str) -> (u64, u64) {
    let number_before = |key: &str| -> u64 {
        let head = &line[..line.find(key).unwrap_or_else(|| panic!("{key} in {line}"))];
        head.trim_end()
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a count before {key} in {line}"))
    };
    (number_before(" fills"), number_before(" placed"))
}

#[test]
fn a_paper_session_and_a_backtest_of_its_recording_fill_alike() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // One symbol, so every dislocation of the synthetic market moves the market maker's book.
    let source = rt
        .block_on(sim::start(
            SimConfig {
                seed: 11,
                symbols: vec![SymbolSpec::new("BTC", "USDT", "0.01", "0.00001", "5")],
                ..SimConfig::default()
            },
            ([127, 0, 0, 1], 0).into(),
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");

    let mut record = runner(&dir.path().join("record-state"));
    record
        .args([
            "record",
            "--symbols",
            "BTCUSDT",
            "--duration",
            "14s",
            "--rest-url",
            &source.rest_url(),
            "--out",
        ])
        .arg(&rec);
    let mut recording = Running::spawn(record);
    recording.wait_for("the recording to start", |l| l.contains("recording"));

    let mut paper = runner(&dir.path().join("paper-state"));
    paper.arg(repo_root().join("strategies/market_maker.lua")).args([
        "--paper",
        "--market",
        &source.rest_url(),
        "--no-reload",
        "--duration",
        "8s",
    ]);
    let mut session = Running::spawn(paper);
    session.wait_for("the market maker to quote", |l| l.contains("quoting BTCUSDT"));
    let from = now_ms();
    let report_line = session.wait_for("the closing report", |l| l.contains("report: position"));
    let to = now_ms();
    let (status, lines) = session.finish();
    assert!(status.success(), "{}", lines.join("\n"));
    let (paper_fills, paper_placed) = reported(&report_line);
    let (status, lines) = recording.finish();
    assert!(status.success(), "{}", lines.join("\n"));
    rt.block_on(source.shutdown());

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let report = backtest::run(&BacktestOptions {
        strategy: root.join("strategies/market_maker.lua"),
        data: rec,
        from: Some(from),
        to: Some(to),
        // Loopback: the paper session's orders reach its engine within about a millisecond.
        latency: Duration::from_millis(1),
        fees: backtest::Fees::default(),
        limits: runner::exchange::binance::limits::pools::spot_defaults(),
        balances: backtest::default_balances(),
        stdlib_dir: root.join("stdlib"),
        report_dir: None,
    })
    .unwrap();

    let fill_gap = report.fills.abs_diff(paper_fills);
    let placed_gap = report.calls.placed.abs_diff(paper_placed);
    println!(
        "parity over {} ms: paper {paper_fills} fills / {paper_placed} placed; backtest {} fills / {} placed \
         (maker {}, taker {}); difference {fill_gap} fills, {placed_gap} placed",
        to - from,
        report.fills,
        report.calls.placed,
        report.maker_fills,
        report.taker_fills
    );
    assert!(paper_placed > 0 && report.calls.placed > 0, "both sessions quoted");
    // LIMIT_MAKER quotes: the fill model lets them fill only as makers, at their own price.
    assert_eq!(report.taker_fills, 0);
    assert_eq!(report.maker_fills, report.fills);
    // Timing is all that may differ: a quote that lands just before or after a market move. Each such
    // moment can change a fill or a replace; the sessions must agree to within that.
    let allowed_fills = 2 + paper_fills / 4;
    let allowed_placed = 4 + paper_placed / 4;
    assert!(
        fill_gap <= allowed_fills,
        "fills differ by {fill_gap} (allowed {allowed_fills}): paper {paper_fills}, backtest {}",
        report.fills
    );
    assert!(
        placed_gap <= allowed_placed,
        "orders placed differ by {placed_gap} (allowed {allowed_placed}): paper {paper_placed}, backtest {}",
        report.calls.placed
    );
}
