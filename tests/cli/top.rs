//! `runner top` in a real terminal (tmux): attached to a paper run, it shows the pools as bars
//! and the strategy rows, says when the terminal is too small, and when the runner is gone.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::{runner, Running, PATIENCE};

/// tmux on a private socket, so the test's server is its own and nothing else's.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("run tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }

    /// Waits until the pane shows what `pred` wants; panics with the last screen on timeout.
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; the screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn resize(&self, width: u16, height: u16) {
        let out = self.run(&[
            "resize-window",
            "-t",
            "top",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn tmux_available() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn top_shows_pools_and_strategies_and_says_when_the_runner_is_gone() {
    if !tmux_available() {
        eprintln!("SKIPPED: tmux is not installed, so `runner top` cannot be driven in a real terminal here");
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let mut cmd = runner(state.path());
    cmd.args(["strategies/arb.lua", "--metrics", "127.0.0.1:0", "--no-reload"]);
    let mut run = Running::spawn(cmd);
    let line = run.wait_for("the metrics address", |l| l.contains("metrics listening"));
    let at = line.find("metrics=http://").expect("metrics URL") + "metrics=http://".len();
    let addr: String = line[at..].chars().take_while(|c| *c != '/').collect();

    let tmux = Tmux {
        socket: format!("runner-top-test-{}", std::process::id()),
    };
    let command = format!("{} top {addr}", env!("CARGO_BIN_EXE_runner"));
    let out = tmux.run(&["new-session", "-d", "-s", "top", "-x", "120", "-y", "40", &command]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Every pool as a bar with its count against the limit and its reset, and the strategy's row.
    let screen = tmux.wait_for("pool bars and the strategy row", |s| {
        s.contains("REQUEST_WEIGHT 1m") && s.contains("/6000") && s.contains("tri-arb")
    });
    assert!(screen.contains("ORDERS 10s"), "{screen}");
    assert!(screen.contains("resets in"), "{screen}");
    assert!(screen.contains("ledger NORMAL"), "{screen}");
    let row = screen
        .lines()
        .find(|l| l.contains("tri-arb") && l.contains("yes"))
        .unwrap_or_else(|| {
            panic!("no running tri-arb row:\n{screen}");
        });
    assert!(row.contains('%'), "a budget share in the row: {row}");
    assert!(screen.contains("weight per second"), "{screen}");

    // Pause freezes the view and says so; p again resumes.
    tmux.run(&["send-keys", "-t", "top", "p"]);
    tmux.wait_for("the paused mark", |s| s.contains("PAUSED"));
    tmux.run(&["send-keys", "-t", "top", "p"]);
    tmux.wait_for("the paused mark to go", |s| !s.contains("PAUSED"));

    // Too small a terminal gets a clear message instead of a broken layout, and recovers.
    tmux.resize(40, 10);
    tmux.wait_for("the too-small message", |s| s.contains("terminal too small"));
    tmux.resize(120, 40);
    tmux.wait_for("the view back", |s| s.contains("REQUEST_WEIGHT 1m"));

    // The runner goes away: top says so and keeps retrying.
    run.terminate();
    let (_status, _lines) = run.finish();
    let screen = tmux.wait_for("the runner-gone message", |s| s.contains("is not answering"));
    assert!(screen.contains(&addr), "{screen}");
    assert!(screen.contains("retrying"), "{screen}");

    // q quits: the pane's program ends and the session with it.
    tmux.run(&["send-keys", "-t", "top", "q"]);
    let deadline = Instant::now() + PATIENCE;
    while tmux.run(&["has-session", "-t", "top"]).status.success() {
        assert!(Instant::now() < deadline, "top did not quit on q:\n{}", tmux.screen());
        std::thread::sleep(Duration::from_millis(100));
    }
}
