//! `strategies/bracket.lua` on paper against the built-in simulator: it places an OTOCO list, its
//! entry fills and the exchange places the take-profit / stop-loss pair, and stopping the runner
//! cancels the list still open.

use crate::support::{runner, Running};

#[test]
fn the_bracket_example_places_an_order_list_on_paper() {
    let state = tempfile::tempdir().unwrap();
    let mut cmd = runner(state.path());
    cmd.arg("strategies/bracket.lua");
    let mut run = Running::spawn(cmd);
    let placed = run.wait_for("a bracket list placed", |l| l.contains("bracket 1 placed: list "));
    assert!(placed.contains("take profit at"), "{placed}");
    // The entry fills, and the exchange places the pair pending on it.
    run.wait_for("the entry filled", |l| l.contains("LIMIT BUY FILLED"));
    run.wait_for("the take-profit working", |l| l.contains("LIMIT_MAKER SELL NEW"));
    run.terminate();
    let (status, lines) = run.finish();
    let text = lines.join("\n");
    assert!(status.success(), "{text}");
    assert!(text.contains("brackets placed: "), "{text}");
    assert!(!text.contains("could not cancel"), "{text}");
}
