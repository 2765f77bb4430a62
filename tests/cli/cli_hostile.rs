//! Odd command lines and damaged files: a clear line and exit code 2, at once.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd` to its end (killing it after `limit`): its exit code and everything it printed.
fn run_within(mut cmd: Command, limit: Duration) -> (Option<i32>, String) {
    let out = tempfile::NamedTempFile::new().unwrap();
    cmd.stdout(Stdio::from(out.reopen().unwrap()))
        .stderr(Stdio::from(out.reopen().unwrap()));
    let mut child = cmd.spawn().expect("the runner starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "still running after {limit:?}:\n{}",
                std::fs::read_to_string(out.path()).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), std::fs::read_to_string(out.path()).unwrap())
}

const STRATEGY: &str = "return { name = 'idle', symbols = { 'BTCUSDT' } }\n";

#[test]
fn a_huge_cpu_list_is_refused_at_once_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("idle.lua");
    std::fs::write(&file, STRATEGY).unwrap();
    let mut cmd = crate::support::runner(&dir.path().join("state"));
    cmd.arg(&file).args(["--pin-strategies", "0-99999999999"]);
    let (code, output) = run_within(cmd, Duration::from_secs(20));
    assert_eq!(code, Some(2), "{output}");
    assert!(output.contains("out of range"), "{output}");
}

/// A 5-second run of an idle strategy with its own (empty) state dir, for a test to spoil first.
fn idle_run() -> (tempfile::TempDir, std::path::PathBuf, std::process::Command) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("idle.lua");
    std::fs::write(&file, STRATEGY).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mut cmd = crate::support::runner(&state);
    cmd.arg(&file).args(["--duration", "5s"]);
    (dir, state, cmd)
}

/// A second runner on a state dir another is using is refused before it sends anything.
#[test]
fn a_second_runner_on_the_same_state_dir_exits_2_saying_why() {
    let (_dir, state, cmd) = idle_run();
    // This test process stands for the first runner: it holds the journal's lock.
    let held = std::fs::File::create(state.join("orders.jsonl.lock")).unwrap();
    held.lock().unwrap();
    let (code, output) = run_within(cmd, Duration::from_secs(60));
    assert_eq!(code, Some(2), "{output}");
    assert!(output.contains("its own --state-dir"), "{output}");
    assert!(!output.contains("panicked"), "{output}");
}

#[test]
fn a_corrupt_order_journal_exits_2_naming_the_file_and_line() {
    let (_dir, state, cmd) = idle_run();
    std::fs::write(state.join("orders.jsonl"), b"{\"ok\":1}\n\xff\xfe\x00garbage\n").unwrap();
    let (code, output) = run_within(cmd, Duration::from_secs(60));
    assert_eq!(code, Some(2), "{output}");
    assert!(output.contains("orders.jsonl line 2"), "{output}");
    assert!(!output.contains("panicked"), "{output}");
}
