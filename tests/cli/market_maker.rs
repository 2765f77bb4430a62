//! The market-making example on paper: edited while it runs to quote less, it shrinks its resting
//! quotes in place (`orders.amend`, which keeps their place in the queue) instead of cancelling them.

use std::fs;

use crate::support::{repo_root, runner, save_like_an_editor, Running};

/// The number just before `label` in a report line ("..., 2 placed, 1 amended, ...").
fn count_before(line: &str, label: &str) -> u64 {
    let end = line.find(label).unwrap_or_else(|| panic!("{label} in {line}"));
    let digits: String = line[..end]
        .trim_end()
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.chars().rev().collect::<String>().parse().unwrap()
}

#[test]
fn quoting_less_after_an_edit_shrinks_the_resting_quotes_in_place() {
    let example = fs::read_to_string(repo_root().join("strategies/market_maker.lua")).unwrap();
    let edited = |order_qty: &str| {
        let text = example
            .replace("report_ms = 30000", "report_ms = 300")
            .replace("order_qty = 0.01,", &format!("order_qty = {order_qty},"));
        assert_ne!(text, example, "the example's knobs moved; update this test");
        text
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("market_maker.lua");
    fs::write(&file, edited("0.01")).unwrap();
    let mut cmd = runner(&dir.path().join("state"));
    cmd.arg(&file).args(["--duration", "120s"]);
    let mut run = Running::spawn(cmd);

    // Both quotes placed, nothing amended yet.
    let quoting = run.wait_for("both quotes", |l| {
        l.contains("report: position") && count_before(l, " placed") >= 2
    });
    assert_eq!(count_before(&quoting, " amended"), 0, "{quoting}");

    // Half the size: the quotes still resting are lowered where they stand.
    save_like_an_editor(&file, &edited("0.005"));
    let shrunk = run.wait_for("a quote amended", |l| {
        l.contains("report: position") && count_before(l, " amended") >= 1
    });
    assert!(count_before(&shrunk, " amended") <= 2, "{shrunk}");
    run.terminate();
    let (status, lines) = run.finish();
    assert!(status.success(), "{}", lines.join("\n"));
}
