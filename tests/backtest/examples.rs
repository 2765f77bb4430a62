//! The example strategies, unchanged, in a backtest of a market recorded from the simulator.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use runner::backtest::{self, BacktestOptions};

#[test]
fn the_example_strategies_run_in_a_backtest_without_change() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    let symbols: Vec<String> = runner::sim::default_symbols().into_iter().map(|s| s.symbol).collect();
    let status = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["record", "--duration", "4s", "--symbols", &symbols.join(","), "--out"])
        .arg(&rec)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for name in ["arb", "grid", "market_maker", "spread_watch"] {
        let options = BacktestOptions {
            strategy: root.join(format!("strategies/{name}.lua")),
            data: rec.clone(),
            from: None,
            to: None,
            latency: Duration::from_millis(5),
            fees: backtest::Fees::default(),
            limits: runner::exchange::binance::limits::pools::spot_defaults(),
            balances: backtest::default_balances(),
            stdlib_dir: root.join("stdlib"),
            report_dir: None,
        };
        let report = backtest::run(&options).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(report.strategy_errors, 0, "{name}");
        assert_eq!(report.limit_trips, 0, "{name}");
        assert!(
            report.events_replayed > 100,
            "{name}: {} events",
            report.events_replayed
        );
        if name == "market_maker" || name == "grid" {
            assert!(report.calls.placed > 0, "{name} placed nothing: {:?}", report.orders);
        }
    }
}
