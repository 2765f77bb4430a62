//! An in-process simulator that outlives the runner processes started against it, the
//! strategy files of these tests, and readers of what the runner prints.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use runner::ledger::{IntervalUnit, PoolKind, RateLimit};
use runner::sim::{self, RequestRecord, SimConfig, SimHandle, SimStats};

use crate::support::{self, Running, PATIENCE};

/// A simulator on its own runtime, so synchronous tests can drive processes around it.
pub struct Exchange {
    runtime: tokio::runtime::Runtime,
    sim: Option<SimHandle>,
}

impl Exchange {
    pub fn start(config: SimConfig) -> Exchange {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the simulator");
        let sim = runtime
            .block_on(sim::start(config, ([127, 0, 0, 1], 0).into()))
            .expect("the simulator starts");
        Exchange {
            runtime,
            sim: Some(sim),
        }
    }

    pub fn sim(&self) -> &SimHandle {
        self.sim.as_ref().expect("running")
    }

    /// `runner --rest-url <this simulator> --no-reload <strategies>` with a private state dir.
    pub fn runner(&self, state_dir: &Path, strategies: &[PathBuf]) -> Command {
        let mut cmd = support::runner(state_dir);
        cmd.arg("--rest-url")
            .arg(self.sim().rest_url())
            .arg("--no-reload")
            .arg("--status-every")
            .arg("0")
            .args(strategies);
        cmd
    }

    pub fn log(&self) -> Vec<RequestRecord> {
        self.sim().request_log()
    }

    pub fn stats(&self) -> SimStats {
        self.sim().stats()
    }

    pub fn now_ms(&self) -> i64 {
        self.sim().now_ms()
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if let Some(sim) = self.sim.take() {
            self.runtime.block_on(sim.shutdown());
        }
    }
}

/// A simulator enforcing `weight` per `weight_secs` seconds (and otherwise Binance's pools),
/// with short bans so tests that provoke one stay quick.
pub fn config_with_weight(weight_secs: u32, weight: u64) -> SimConfig {
    SimConfig {
        limits: vec![
            RateLimit::new(PoolKind::RequestWeight, IntervalUnit::Second, weight_secs, weight),
            RateLimit::new(PoolKind::Orders, IntervalUnit::Second, 10, 100),
            RateLimit::new(PoolKind::Orders, IntervalUnit::Day, 1, 200_000),
            RateLimit::new(PoolKind::RawRequests, IntervalUnit::Minute, 5, 300_000),
            RateLimit::new(PoolKind::Connections, IntervalUnit::Minute, 5, 300),
        ],
        ban_base: Duration::from_secs(2),
        ..SimConfig::default()
    }
}

/// A strategy file of these tests (`tests/faults/lua/<name>.lua`).
pub fn strategy(name: &str) -> PathBuf {
    support::repo_root()
        .join("tests/faults/lua")
        .join(format!("{name}.lua"))
}

/// Polls `check` until it gives a value; panics after [`PATIENCE`] naming `what`.
pub fn poll_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of `key=<integer>` in a line, if present.
pub fn field(line: &str, key: &str) -> Option<i64> {
    let pattern = format!("{key}=");
    let at = line.find(&pattern)? + pattern.len();
    let digits: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    digits.parse().ok()
}

/// Requests that arrived strictly after `after_ms` and before `before_ms` (exchange time).
pub fn arrivals_between(log: &[RequestRecord], after_ms: i64, before_ms: i64) -> Vec<RequestRecord> {
    log.iter()
        .filter(|r| r.at_ms > after_ms && r.at_ms < before_ms)
        .cloned()
        .collect()
}

/// Stops a run with SIGTERM and returns everything it printed, asserting a clean exit.
pub fn stop(run: Running) -> String {
    run.terminate();
    let (status, lines) = run.finish();
    let text = lines.join("\n");
    assert!(status.success(), "the runner failed:\n{text}");
    assert!(!text.contains("panicked"), "the runner panicked:\n{text}");
    text
}

/// The numbers of the summary's last line: (429s, 418s) the runner received.
pub fn summary_throttles(text: &str) -> (i64, i64) {
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("exchange throttles (429):"))
        .unwrap_or_else(|| panic!("no summary in:\n{text}"));
    let number_after = |key: &str| {
        let at = line.find(key).map(|i| i + key.len()).expect("summary field");
        line[at..]
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .expect("a count")
    };
    (number_after("(429):"), number_after("(418):"))
}

/// Returns a line already printed that matches `pred`, or waits for one.
pub fn seen_or_wait(run: &mut Running, what: &str, pred: impl Fn(&str) -> bool) -> String {
    match run.seen.iter().find(|l| pred(l)) {
        Some(line) => line.clone(),
        None => run.wait_for(what, pred),
    }
}

/// Requests of the log with this method and path.
pub fn count_requests(log: &[RequestRecord], method: &str, path: &str) -> usize {
    log.iter().filter(|r| r.method == method && r.path == path).count()
}
