//! The real `runner` binary refuses circuit-breaker thresholds that make no sense, at start.

use std::fs;

use crate::support::{run_to_end, runner};

#[test]
fn nonsense_breaker_thresholds_are_refused_with_one_line_and_exit_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let strategy = dir.path().join("idle.lua");
    fs::write(&strategy, "return {}\n").unwrap();
    for (section, expected) in [
        ("window = \"0s\"", "breaker.window must be longer than zero"),
        (
            "failure_rate = 1.5",
            "breaker.failure_rate is 1.5: it must be above 0 and at most 1",
        ),
        (
            "failure_rate = -0.1",
            "breaker.failure_rate is -0.1: it must be above 0 and at most 1",
        ),
        (
            "cool_down = \"-5s\"",
            "breaker.cool_down is \"-5s\": a duration cannot be negative",
        ),
    ] {
        let config = dir.path().join("runner.toml");
        fs::write(&config, format!("[breaker]\n{section}\n")).unwrap();
        let mut cmd = runner(&state);
        cmd.arg(&strategy).arg("--config").arg(&config);
        let (status, output) = run_to_end(cmd);
        assert_eq!(status.code(), Some(2), "{section}: {output}");
        let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{section}: one line, got:\n{output}");
        assert!(
            lines[0].contains(expected),
            "{section}: expected {expected:?} in:\n{output}"
        );
    }
}
