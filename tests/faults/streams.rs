//! Dropped sockets and skipped depth sequences: the local books resync to the exchange's
//! (library level, where the books can be compared), and a strategy following a book keeps
//! getting `on_depth` afterwards (the real binary).

use std::sync::Arc;
use std::time::Duration;

use runner::exchange::{StreamKey, StreamKind, Venue};

use crate::client_support::{eventually, start, Setup};
use crate::harness::{count_requests, field, poll_until, stop, strategy, Exchange};
use crate::support::Running;

const SYMBOLS: [&str; 2] = ["BTCUSDT", "ETHUSDT"];

/// Waits until the local book of `symbol` equals the simulator's, level for level and update id.
async fn book_matches(setup: &Setup, symbol: &str) {
    eventually(
        Duration::from_secs(20),
        "the local book to equal the exchange's",
        || {
            let local = setup.venue.book_levels(symbol, 10);
            let local_id = setup.venue.book(symbol, 10).map(|d| d.update_id);
            let remote = setup.sim.book(symbol, 10);
            async move {
                let (bids, asks) = local?;
                let remote = remote?;
                let same = local_id == Some(remote.last_update_id)
                    && bids.iter().map(|(p, q)| [*p, *q]).eq(remote.bids.iter().copied())
                    && asks.iter().map(|(p, q)| [*p, *q]).eq(remote.asks.iter().copied());
                same.then_some(())
            }
        },
    )
    .await;
}

fn snapshots(setup: &Setup) -> usize {
    count_requests(&setup.sim.request_log(), "GET", "/api/v3/depth")
}

async fn new_snapshots(setup: &Setup, before: usize, at_least: usize) {
    eventually(Duration::from_secs(20), "new depth snapshots", || {
        let n = snapshots(setup);
        async move { (n >= before + at_least).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_books_resync_to_the_exchange_after_drops_and_gaps() {
    let setup = start().await;
    let keys = SYMBOLS
        .iter()
        .map(|s| StreamKey {
            symbol: (*s).into(),
            kind: StreamKind::Depth,
        })
        .collect();
    setup.venue.set_subscriptions(&Arc::from("books"), keys).await.unwrap();
    for symbol in SYMBOLS {
        book_matches(&setup, symbol).await;
    }
    for _ in 0..2 {
        // Every socket dropped: every book starts over from a new snapshot.
        let before = snapshots(&setup);
        setup.sim.faults().drop_websockets();
        new_snapshots(&setup, before, SYMBOLS.len()).await;
        for symbol in SYMBOLS {
            book_matches(&setup, symbol).await;
        }
        // A gap in one diff: the book that saw it starts over.
        let before = snapshots(&setup);
        setup.sim.faults().skip_depth(3);
        new_snapshots(&setup, before, 1).await;
        for symbol in SYMBOLS {
            book_matches(&setup, symbol).await;
        }
    }
    let stats = setup.sim.stats();
    assert_eq!((stats.count_429, stats.count_418), (0, 0));
    assert_eq!(setup.venue.malformed_frames(), 0);
    setup.venue.shutdown().await;
}

/// Waits for `on_depth` showing a book past every update the exchange had made by now.
fn wait_for_depth_past_now(run: &mut Running, exchange: &Exchange) {
    let now_id = exchange.sim().book("BTCUSDT", 1).expect("BTCUSDT").last_update_id as i64;
    run.wait_for("on_depth after the fault", |l| {
        l.contains("depth BTCUSDT") && field(l, "update_id").is_some_and(|id| id > now_id)
    });
}

#[test]
fn a_strategy_following_a_book_keeps_getting_on_depth_after_drops_and_gaps() {
    let exchange = Exchange::start(runner::sim::SimConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let mut run = Running::spawn(exchange.runner(&dir.path().join("state"), &[strategy("depth_watcher")]));
    run.wait_for("on_depth", |l| l.contains("depth BTCUSDT update_id="));
    let depth_snapshots = || count_requests(&exchange.log(), "GET", "/api/v3/depth");

    let before = depth_snapshots();
    exchange.sim().faults().drop_websockets();
    poll_until("a new snapshot after the drop", || {
        (depth_snapshots() > before).then_some(())
    });
    wait_for_depth_past_now(&mut run, &exchange);

    let before = depth_snapshots();
    exchange.sim().faults().skip_depth(5);
    poll_until("a new snapshot after the gap", || {
        (depth_snapshots() > before).then_some(())
    });
    wait_for_depth_past_now(&mut run, &exchange);

    let text = stop(run);
    assert!(!text.contains("ERROR"), "{text}");
}
