//! Log colours are for a person at a terminal: none in pipes and files, none under `NO_COLOR`.

use std::process::{Command, Stdio};

use crate::support::{run_to_end, runner};

const ESC: char = '\u{1b}';

/// A short paper run, so the runner logs a few lines and exits.
const ARGS: [&str; 3] = ["strategies/spread_watch.lua", "--duration", "1s"];

#[test]
fn logs_into_a_pipe_carry_no_colour_codes() {
    let state = tempfile::tempdir().unwrap();
    let mut cmd = runner(state.path());
    cmd.args(ARGS).env_remove("NO_COLOR");
    let (status, output) = run_to_end(cmd);
    assert!(status.success(), "{output}");
    assert!(output.contains("running; press Ctrl-C to stop"), "{output}");
    assert!(!output.contains(ESC), "colour codes in piped logs:\n{output:?}");
}

/// Runs the binary on a pseudo-terminal (util-linux `script`), returning what the terminal showed,
/// or `None` where `script` is missing.
fn on_a_terminal(no_color: Option<&str>) -> Option<String> {
    if Command::new("script").arg("--version").output().is_err() {
        return None;
    }
    let state = tempfile::tempdir().unwrap();
    let line = format!("{} {}", env!("CARGO_BIN_EXE_runner"), ARGS.join(" "));
    let mut cmd = Command::new("script");
    // The same private state dir and log level as `crate::support::runner` gives.
    cmd.args(["-q", "-e", "-c", &line, "/dev/null"])
        .current_dir(crate::support::repo_root())
        .env("RUST_LOG", "info")
        .env("RUNNER_STATE_DIR", state.path())
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    if let Some(value) = no_color {
        cmd.env("NO_COLOR", value);
    }
    let output = cmd.output().expect("run script");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{text}");
    assert!(text.contains("running; press Ctrl-C to stop"), "{text}");
    Some(text)
}

#[test]
fn a_terminal_gets_colours_unless_no_color_is_set() {
    let Some(coloured) = on_a_terminal(None) else {
        eprintln!("SKIPPED: util-linux `script` is missing, so no pseudo-terminal to log to");
        return;
    };
    assert!(coloured.contains(ESC), "a terminal should get colours:\n{coloured:?}");
    let plain = on_a_terminal(Some("1")).unwrap();
    assert!(!plain.contains(ESC), "NO_COLOR=1 still coloured:\n{plain:?}");
    // An empty NO_COLOR does not count (no-color.org).
    let empty = on_a_terminal(Some("")).unwrap();
    assert!(
        empty.contains(ESC),
        "an empty NO_COLOR should not turn colours off:\n{empty:?}"
    );
}
