//! An order list whose placement the exchange processed but whose answer was lost: the client looks
//! its orders up instead of sending it again, so exactly one list exists, and the strategy learns
//! each order's state (with the list's id) through `on_order`.

use runner::sim::{FailKind, SimConfig};
use rust_decimal::Decimal;

use crate::harness::{count_requests, seen_or_wait, stop, strategy, Exchange};
use crate::support::Running;

#[test]
fn a_list_placement_processed_but_unanswered_is_looked_up_not_resent() {
    let exchange = Exchange::start(SimConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let command = exchange.runner(&dir.path().join("state"), &[strategy("one_list")]);
    let mut run = Running::spawn(command);
    run.wait_for("the strategy to start", |l| l.contains("one_list ready"));
    exchange.sim().faults().fail_next(1, FailKind::Unknown1007);
    assert!(exchange.sim().set_price("BTCUSDT", Decimal::from(120_000)));

    seen_or_wait(&mut run, "the unknown outcome", |l| {
        l.contains("place_list list-1 -> error unknown_status")
    });
    // Each order's real state, found by looking it up: the working order rests, its pair waits.
    for (leg, status) in [
        ("list-1-w", "NEW"),
        ("list-1-a", "PENDING_NEW"),
        ("list-1-b", "PENDING_NEW"),
    ] {
        let line = seen_or_wait(&mut run, "on_order with the real state", |l| {
            l.contains(&format!("on_order {leg} {status} list="))
        });
        assert!(!line.contains("list=nil"), "the order knows its list: {line}");
        assert_eq!(exchange.sim().orders_by_client_id(leg).len(), 1, "{leg} exists once");
    }
    let text = stop(run);
    let log = exchange.log();
    assert_eq!(
        count_requests(&log, "POST", "/api/v3/orderList/otoco"),
        1,
        "sent once, never re-sent:\n{text}"
    );
    assert!(!text.contains("REJECTED"), "no order was given up:\n{text}");
}
