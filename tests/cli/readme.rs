//! The README is the front door: its commands must work as written.

use crate::support::{repo_root, run_to_end, runner};

fn readme() -> String {
    std::fs::read_to_string(repo_root().join("README.md")).expect("README.md")
}

/// The arguments of the README's `cargo run --release -- ...` line.
fn run_command_args() -> Vec<String> {
    let text = readme();
    let line = text
        .lines()
        .find(|l| l.starts_with("cargo run --release -- "))
        .expect("a cargo run line in README.md");
    let command = line.split('#').next().unwrap_or(line);
    command
        .trim_start_matches("cargo run --release -- ")
        .split_whitespace()
        .map(String::from)
        .collect()
}

#[test]
fn the_readme_run_command_trades_on_paper_and_exits_cleanly() {
    let args = run_command_args();
    assert_eq!(args.first().map(String::as_str), Some("strategies/arb.lua"));
    let state = tempfile::tempdir().unwrap();
    let mut cmd = runner(state.path());
    cmd.args(&args);
    let (status, output) = run_to_end(cmd);
    assert!(status.success(), "{output}");
    assert!(output.contains("tri-arb: orders placed"), "{output}");
    assert!(
        output.contains("exchange throttles (429): 0, bans (418): 0"),
        "{output}"
    );
}

#[test]
fn the_readme_example_strategy_is_the_shipped_file_and_passes_check() {
    let text = readme();
    let start = text.find("```lua\n").expect("a Lua example") + "```lua\n".len();
    let end = start + text[start..].find("```").unwrap();
    let shipped = std::fs::read_to_string(repo_root().join("strategies/spread_watch.lua")).unwrap();
    assert_eq!(
        &text[start..end],
        shipped,
        "README example and strategies/spread_watch.lua differ"
    );

    let state = tempfile::tempdir().unwrap();
    let mut cmd = runner(state.path());
    cmd.arg("check").args([
        "strategies/arb.lua",
        "strategies/market_maker.lua",
        "strategies/grid.lua",
        "strategies/bracket.lua",
    ]);
    cmd.arg("strategies/spread_watch.lua");
    let (status, output) = run_to_end(cmd);
    assert!(status.success(), "{output}");
    assert_eq!(output.matches("ok ").count(), 5, "{output}");
}
