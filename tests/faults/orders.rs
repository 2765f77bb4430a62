//! Order placements that fail on the way: answered 5xx after being processed, answered
//! too late, or refused by the front end before the exchange saw them. In every case one
//! order exists afterwards, and the strategy learns the outcome through `on_order`.

use std::time::Duration;

use runner::sim::{FailKind, SimConfig};
use rust_decimal::Decimal;

use crate::harness::{count_requests, seen_or_wait, stop, strategy, Exchange};
use crate::support::Running;

const PLACE: (&str, &str) = ("POST", "/api/v3/order");
const LOOKUP: (&str, &str) = ("GET", "/api/v3/order");

/// Starts `one_order.lua` (with `args` for the runner), lets `inject` set a fault, then moves
/// the price so the strategy places.
fn place_through(args: &[&str], inject: impl FnOnce(&Exchange)) -> (Exchange, Running, tempfile::TempDir) {
    let exchange = Exchange::start(SimConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let mut command = exchange.runner(&dir.path().join("state"), &[strategy("one_order")]);
    command.args(args);
    let mut run = Running::spawn(command);
    run.wait_for("the strategy to start", |l| l.contains("one_order ready"));
    inject(&exchange);
    assert!(exchange.sim().set_price("BTCUSDT", Decimal::from(120_000)));
    (exchange, run, dir)
}

fn orders_placed(exchange: &Exchange) -> u64 {
    exchange.stats().orders_placed
}

#[test]
fn a_placement_processed_but_answered_503_is_learned_not_resent() {
    let (exchange, mut run, _dir) = place_through(&[], |e| e.sim().faults().fail_next(1, FailKind::Unknown1007));
    seen_or_wait(&mut run, "the unknown outcome", |l| {
        l.contains("place faults-1 -> error unknown_status")
    });
    seen_or_wait(&mut run, "on_order with the real state", |l| {
        l.contains("on_order faults-1 NEW")
    });

    assert_eq!(exchange.sim().orders_by_client_id("faults-1").len(), 1);
    assert_eq!(orders_placed(&exchange), 1, "exactly one order on the exchange");
    let text = stop(run);
    let log = exchange.log();
    assert_eq!(count_requests(&log, PLACE.0, PLACE.1), 1, "sent once, never re-sent");
    assert!(
        !text.contains("place faults-2"),
        "the strategy did not try again:\n{text}"
    );
}

#[test]
fn a_placement_whose_answer_comes_too_late_is_learned_not_resent() {
    // Longer than the runner's request timeout (10 s): the answer never reaches it.
    let (exchange, mut run, _dir) =
        place_through(&[], |e| e.sim().faults().delay_order_answers(Duration::from_secs(11)));
    seen_or_wait(&mut run, "the unknown outcome", |l| {
        l.contains("place faults-1 -> error unknown_status")
    });
    seen_or_wait(&mut run, "on_order with the real state", |l| {
        l.contains("on_order faults-1 NEW")
    });
    exchange.sim().faults().clear();

    assert_eq!(exchange.sim().orders_by_client_id("faults-1").len(), 1);
    assert_eq!(orders_placed(&exchange), 1, "exactly one order on the exchange");
    let text = stop(run);
    assert_eq!(count_requests(&exchange.log(), PLACE.0, PLACE.1), 1, "sent once");
    assert!(
        !text.contains("place faults-2"),
        "the strategy did not try again:\n{text}"
    );
}

#[test]
fn a_placement_the_exchange_never_processed_is_reported_rejected_and_placed_again_once() {
    // A grace shorter than the default (30 s): REJECTED coming sooner shows it reached the client.
    let (exchange, mut run, _dir) = place_through(&["--unknown-order-grace", "5s"], |e| {
        e.sim().faults().fail_next(1, FailKind::BadGateway)
    });
    seen_or_wait(&mut run, "the unknown outcome", |l| {
        l.contains("place faults-1 -> error unknown_status")
    });
    // The host looks the order up until its grace period says it never arrived.
    let unknown_at = std::time::Instant::now();
    seen_or_wait(&mut run, "on_order REJECTED", |l| {
        l.contains("on_order faults-1 REJECTED")
    });
    let waited = unknown_at.elapsed();
    println!(
        "figure not processed: REJECTED reached on_order {:.1} s after the strategy saw unknown_status",
        waited.as_secs_f64()
    );
    assert!(
        waited < Duration::from_secs(20),
        "the 5 s grace was not the one applied: {waited:?}"
    );
    seen_or_wait(&mut run, "the second attempt", |l| l.contains("place faults-2 -> NEW"));

    assert!(exchange.sim().orders_by_client_id("faults-1").is_empty());
    assert_eq!(exchange.sim().orders_by_client_id("faults-2").len(), 1);
    assert_eq!(orders_placed(&exchange), 1, "exactly one order on the exchange");
    let text = stop(run);
    let log = exchange.log();
    assert_eq!(
        count_requests(&log, PLACE.0, PLACE.1),
        2,
        "the lost one and the new one:\n{text}"
    );
    assert!(count_requests(&log, LOOKUP.0, LOOKUP.1) >= 1, "the first was looked up");
}
