//! The README's first command must show the product doing its job: the paper market offers
//! arbitrage within seconds, and the strategy logs the cycles it trades.

use crate::support::{repo_root, runner, Running};

/// The README's `cargo run --release -- ...` arguments, with the duration shortened: the
/// promise is that cycles come within the first seconds, not only by the end of 30 s.
fn first_run_args() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let line = text
        .lines()
        .find(|l| l.starts_with("cargo run --release -- "))
        .expect("a cargo run line in README.md");
    let mut args: Vec<String> = line
        .split('#')
        .next()
        .unwrap_or(line)
        .trim_start_matches("cargo run --release -- ")
        .split_whitespace()
        .map(String::from)
        .collect();
    let duration = args
        .iter()
        .position(|a| a == "--duration")
        .expect("--duration in the command");
    args[duration + 1] = "10s".into();
    args
}

fn is_cycle_line(line: &str) -> bool {
    // e.g. "cycle 1 BTCUSDT/ETHBTC/ETHUSDT forward: done, pnl 2.23 USDT (...)"
    line.contains(" cycle ") && line.contains(": done, pnl ")
}

#[test]
fn the_first_run_logs_arbitrage_cycles_within_seconds() {
    let args = first_run_args();
    let state = tempfile::tempdir().unwrap();
    let mut cmd = runner(state.path());
    cmd.args(&args);
    let mut run = Running::spawn(cmd);
    let cycle = run.wait_for("a completed arbitrage cycle", is_cycle_line);
    assert!(
        cycle.contains("strategy=tri-arb") || cycle.contains("tri-arb"),
        "{cycle}"
    );
    let (status, lines) = run.finish();
    assert!(status.success(), "{}", lines.join("\n"));
    // At the default level the first run shows the strategy's story, not the HTTP stack's.
    let debug: Vec<&String> = lines.iter().filter(|l| l.contains(" DEBUG ")).collect();
    assert!(debug.is_empty(), "debug lines at level info: {debug:?}");
    let summary = lines
        .iter()
        .find(|l| l.contains("tri-arb: orders placed"))
        .unwrap_or_else(|| panic!("no summary line:\n{}", lines.join("\n")));
    let filled: u64 = summary
        .split("filled ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no fill count in {summary:?}"));
    assert!(filled >= 3, "a done cycle fills three legs: {summary}");
}
