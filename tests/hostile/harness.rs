//! A simulated exchange with small limits in this process, the real `runner` binary attached
//! to it, and assertions made from the simulator's own records.
//!
//! `HOSTILE_DEBUG=1` adds the client's debug lines (server-time offset) to the runner's output
//! and prints the requests around any 429/418 the simulator answered.

use std::path::{Path, PathBuf};
use std::time::Duration;

use runner::ledger::limits::{IntervalUnit, PoolKind, RateLimit};
use runner::sim::{self, PoolStats, RequestRecord, SimConfig, SimHandle, SimStats};

use crate::support::{runner, Running};

/// Length of every window of the test pools: short, so a run crosses several of them quickly.
pub const WINDOW_SECS: u32 = 2;
/// Unfilled orders per window.
pub const ORDER_LIMIT: u64 = 20;
/// WebSocket connection attempts per window.
pub const CONNECTION_LIMIT: u64 = 6;
/// The summary line the runner prints when nothing was throttled or banned.
const CLEAN_SUMMARY: &str = "exchange throttles (429): 0, bans (418): 0";

/// The pools the simulator enforces (and announces, so the runner's ledger adopts them).
pub fn small_limits(weight: u64) -> Vec<RateLimit> {
    vec![
        RateLimit::new(PoolKind::RequestWeight, IntervalUnit::Second, WINDOW_SECS, weight),
        RateLimit::new(PoolKind::Orders, IntervalUnit::Second, WINDOW_SECS, ORDER_LIMIT),
        RateLimit::new(PoolKind::RawRequests, IntervalUnit::Minute, 1, 20_000),
        RateLimit::new(
            PoolKind::Connections,
            IntervalUnit::Second,
            WINDOW_SECS,
            CONNECTION_LIMIT,
        ),
    ]
}

/// A simulator served by its own runtime, so the test thread is free to drive the runner.
pub struct Exchange {
    sim: Option<SimHandle>,
    runtime: tokio::runtime::Runtime,
}

impl Exchange {
    pub fn start(limits: Vec<RateLimit>) -> Exchange {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("simulator runtime");
        let config = SimConfig {
            limits,
            // A ban long enough that one would show in every later window of the run.
            ban_base: Duration::from_secs(60),
            ..SimConfig::default()
        };
        let sim = runtime
            .block_on(sim::start(config, "127.0.0.1:0".parse().expect("loopback")))
            .expect("simulator starts");
        Exchange {
            sim: Some(sim),
            runtime,
        }
    }

    fn sim(&self) -> &SimHandle {
        self.sim.as_ref().expect("running until dropped")
    }

    /// The runner attached to this exchange, stopping by itself after `duration`.
    pub fn runner(&self, state_dir: &Path, strategies: &[PathBuf], duration: Duration) -> std::process::Command {
        let mut cmd = runner(state_dir);
        if std::env::var("HOSTILE_DEBUG").is_ok() {
            cmd.env("RUST_LOG", "info,runner::exchange=debug");
        }
        cmd.args(strategies)
            .arg("--rest-url")
            .arg(self.sim().rest_url())
            .arg("--duration")
            .arg(format!("{}ms", duration.as_millis()))
            .arg("--status-every")
            .arg("0");
        cmd
    }

    /// Runs `strategies` for `duration` without hot reload and gathers the records.
    pub fn run(&self, strategies: &[PathBuf], duration: Duration) -> Outcome {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = self.runner(&dir.path().join("state"), strategies, duration);
        cmd.arg("--no-reload");
        self.finish(Running::spawn(cmd))
    }

    /// Waits for a started runner to exit and gathers the records.
    pub fn finish(&self, run: Running) -> Outcome {
        let (status, output) = run.finish();
        Outcome {
            exit_ok: status.success(),
            output: output.iter().map(|line| without_colours(line)).collect(),
            stats: self.sim().stats(),
            requests: self.sim().request_log(),
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if let Some(sim) = self.sim.take() {
            self.runtime.block_on(sim.shutdown());
        }
    }
}

/// What one run left behind.
pub struct Outcome {
    pub exit_ok: bool,
    pub output: Vec<String>,
    pub stats: SimStats,
    pub requests: Vec<RequestRecord>,
}

impl Outcome {
    pub fn text(&self) -> String {
        self.output.join("\n")
    }

    pub fn pool(&self, kind: PoolKind) -> &PoolStats {
        self.stats
            .pools
            .iter()
            .find(|p| p.kind == kind)
            .unwrap_or_else(|| panic!("the simulator enforces a {kind} pool"))
    }

    /// The claim: the runner exited cleanly, and the exchange never throttled, banned or
    /// saw any pool over its limit in any window.
    pub fn assert_never_throttled(&self) {
        let text = self.text();
        assert!(self.exit_ok, "the runner must exit 0; output:\n{text}");
        assert!(text.contains(CLEAN_SUMMARY), "the summary must report 0/0:\n{text}");
        assert_eq!(
            (self.stats.count_429, self.stats.count_418, self.stats.bans),
            (0, 0, 0),
            "the exchange throttled or banned us: {:?}",
            self.stats
        );
        let refused: Vec<&RequestRecord> = self
            .requests
            .iter()
            .filter(|r| r.status == 429 || r.status == 418)
            .collect();
        assert!(refused.is_empty(), "requests answered 429/418: {refused:?}");
        for pool in &self.stats.pools {
            assert!(
                pool.peak <= pool.limit,
                "{} {} peaked over its limit: {pool:?}",
                pool.kind,
                pool.interval
            );
            for window in &pool.windows {
                assert!(
                    window.count <= pool.limit,
                    "{} {} window at {} held {} > {}",
                    pool.kind,
                    pool.interval,
                    window.start,
                    window.count,
                    pool.limit
                );
            }
        }
    }

    /// Demand exceeded the pool, so its busiest window must have used at least `share` of it.
    pub fn assert_budget_used(&self, kind: PoolKind, share: f64) {
        let pool = self.pool(kind);
        let wanted = (pool.limit as f64 * share).ceil() as u64;
        assert!(
            pool.peak >= wanted,
            "{kind}: peak window {} of {} is under {:.0} % (windows {:?}); output:\n{}",
            pool.peak,
            pool.limit,
            share * 100.0,
            pool.windows,
            self.text()
        );
    }

    /// The run crossed at least `n` windows of `kind` in which something was used.
    pub fn assert_windows_crossed(&self, kind: PoolKind, n: usize) {
        let pool = self.pool(kind);
        assert!(
            pool.windows.len() >= n,
            "{kind}: only {} windows with use, {n} wanted: {:?}",
            pool.windows.len(),
            pool.windows
        );
    }

    /// The process's peak resident memory, from the exit summary.
    pub fn peak_memory_mib(&self) -> f64 {
        self.output
            .iter()
            .find_map(|line| {
                let rest = line.split("process: peak memory ").nth(1)?;
                rest.split_whitespace().next()?.parse::<f64>().ok()
            })
            .unwrap_or_else(|| panic!("no peak memory in the summary:\n{}", self.text()))
    }

    /// Hostile strategies may not grow the process past the stated bound: the host's own share
    /// plus each strategy's Lua memory cap.
    pub fn assert_memory_bounded(&self, strategies: usize) {
        let peak = self.peak_memory_mib();
        let bound = HOST_MEMORY_MIB + strategies as f64 * LUA_MEMORY_CAP_MIB;
        assert!(peak <= bound, "peak memory {peak:.1} MiB, bound {bound} MiB");
    }

    /// One line of figures for the record (run with `--nocapture` to see it).
    pub fn report(&self, scenario: &str) {
        if std::env::var("HOSTILE_DEBUG").is_ok() {
            for (i, r) in self.requests.iter().enumerate() {
                if r.status == 429 || r.status == 418 {
                    for q in &self.requests[i.saturating_sub(6)..(i + 2).min(self.requests.len())] {
                        eprintln!("DEBUG {q:?}");
                    }
                }
            }
        }
        let figures = |kind: PoolKind| {
            let pool = self.pool(kind);
            let counts: Vec<u64> = pool.windows.iter().map(|w| w.count).collect();
            format!(
                "{kind} peak {}/{} ({:.1} %), windows {counts:?}",
                pool.peak,
                pool.limit,
                pool.peak as f64 * 100.0 / pool.limit as f64
            )
        };
        println!(
            "HOSTILE {scenario}: {}; {}; {}; REST {} WS-API {} WS handshakes {} orders {}; 429 {} 418 {} message-limit closes {}; peak memory {:.1} MiB",
            figures(PoolKind::RequestWeight),
            figures(PoolKind::Orders),
            figures(PoolKind::Connections),
            self.stats.rest_requests,
            self.stats.ws_api_requests,
            self.stats.ws_connections,
            self.stats.orders_placed,
            self.stats.count_429,
            self.stats.count_418,
            self.stats.ws_message_limit_closes,
            self.peak_memory_mib(),
        );
    }
}

/// The bound the README's reliability section states for the process's peak resident memory:
/// the host's own share (runtime, connections, bounded queues, timers and logs) plus the Lua
/// memory cap of each strategy (64 MiB).
pub const HOST_MEMORY_MIB: f64 = 48.0;
pub const LUA_MEMORY_CAP_MIB: f64 = 64.0;

/// A strategy file of this suite.
pub fn strategy(file: &str) -> PathBuf {
    crate::support::repo_root().join("tests/hostile").join(file)
}

/// A log line without its terminal colour codes (`ESC [ ... m`).
fn without_colours(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            plain.push(c);
        }
    }
    plain
}
