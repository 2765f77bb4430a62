//! Helpers for tests that run the real `runner` binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Generous on a loaded 2-core machine, yet a hang still fails within a minute.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `runner` command started in the repository root with a private state dir.
pub fn runner(state_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner"));
    cmd.current_dir(repo_root())
        .env("RUST_LOG", "info")
        .env_remove("BINANCE_API_KEY")
        .env_remove("BINANCE_API_SECRET")
        .env_remove("BINANCE_TESTNET_API_KEY")
        .env_remove("BINANCE_TESTNET_API_SECRET")
        .env_remove("BINANCE_PRIVATE_KEY_FILE")
        .env_remove("BINANCE_TESTNET_PRIVATE_KEY_FILE")
        .env("RUNNER_STATE_DIR", state_dir);
    cmd
}

/// A running binary whose stdout and stderr lines are collected as they come.
pub struct Running {
    child: Child,
    lines: Receiver<String>,
    pub seen: Vec<String>,
}

impl Running {
    pub fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start runner");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for stream in [Box::new(out) as Box<dyn std::io::Read + Send>, Box::new(err)] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Running {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a line matching `pred`, returning it; panics with everything seen on timeout.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("timed out waiting for {what}; output:\n{}", self.seen.join("\n"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("runner exited before {what}; output:\n{}", self.seen.join("\n"))
                }
            }
        }
    }

    /// Waits for the process to exit and drains its output.
    pub fn finish(mut self) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("runner did not exit; output:\n{}", self.seen.join("\n"));
            }
            match self.lines.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => self.seen.push(line),
                Err(_) => continue,
            }
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(line);
        }
        (status, std::mem::take(&mut self.seen))
    }

    /// Takes in what the process has printed so far without waiting (`seen` then holds it).
    pub fn catch_up(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, as a service manager would.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command to completion (bounded), returning status and combined output.
pub fn run_to_end(cmd: Command) -> (ExitStatus, String) {
    let (status, lines) = Running::spawn(cmd).finish();
    (status, lines.join("\n"))
}

/// Writes a file atomically the way editors save: temp file, then rename over.
pub fn save_like_an_editor(path: &Path, text: &str) {
    let tmp = path.with_extension("lua.tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
