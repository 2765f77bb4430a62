//! Market streams against the simulator: quotes, and local books that resync
//! after dropped connections and sequence gaps.

use std::sync::Arc;
use std::time::Duration;

use crate::client_support::{eventually, start, Setup};
use runner::exchange::{MarketEvent, StreamKey, StreamKind, Venue};

fn key(symbol: &str, kind: StreamKind) -> StreamKey {
    StreamKey {
        symbol: symbol.into(),
        kind,
    }
}

/// Waits until the local book's top levels equal the simulator's.
async fn book_matches(setup: &Setup, symbol: &str) {
    eventually(
        Duration::from_secs(10),
        "the local book to equal the exchange's",
        || {
            let local = setup.venue.book_levels(symbol, 10);
            let remote = setup.sim.book(symbol, 10);
            async move {
                let (bids, asks) = local?;
                let remote = remote?;
                let same = bids.iter().map(|(p, q)| [*p, *q]).eq(remote.bids.iter().copied())
                    && asks.iter().map(|(p, q)| [*p, *q]).eq(remote.asks.iter().copied());
                same.then_some(())
            }
        },
    )
    .await;
}

fn depth_snapshots(setup: &Setup) -> usize {
    setup
        .sim
        .request_log()
        .iter()
        .filter(|r| r.path == "/api/v3/depth")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_and_books_follow_the_exchange_through_drops_and_gaps() {
    let setup = start().await;
    let venue = &setup.venue;
    venue
        .set_subscriptions(
            &Arc::from("a"),
            vec![key("BTCUSDT", StreamKind::Book), key("BTCUSDT", StreamKind::Depth)],
        )
        .await
        .unwrap();
    // Reference-counted: a second strategy on the same stream adds no subscription.
    venue
        .set_subscriptions(&Arc::from("b"), vec![key("BTCUSDT", StreamKind::Book)])
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "a streamed quote", || {
        let q = venue.quote("BTCUSDT");
        async move { q.filter(|q| q.ask > q.bid) }
    })
    .await;
    book_matches(&setup, "BTCUSDT").await;
    let sink = setup.sink.clone();
    assert!(sink
        .market
        .lock()
        .iter()
        .any(|e| matches!(e, MarketEvent::DepthChanged(s) if &**s == "BTCUSDT")));

    // A dropped connection: reconnect, resnapshot, same book again.
    let snapshots = depth_snapshots(&setup);
    setup.sim.faults().drop_websockets();
    eventually(Duration::from_secs(10), "a new depth snapshot after the drop", || {
        let n = depth_snapshots(&setup);
        async move { (n > snapshots).then_some(()) }
    })
    .await;
    book_matches(&setup, "BTCUSDT").await;

    // A skipped sequence range: the gap is noticed and the book resyncs.
    let snapshots = depth_snapshots(&setup);
    setup.sim.faults().skip_depth(5);
    eventually(Duration::from_secs(10), "a new depth snapshot after the gap", || {
        let n = depth_snapshots(&setup);
        async move { (n > snapshots).then_some(()) }
    })
    .await;
    book_matches(&setup, "BTCUSDT").await;

    // Unsubscribing everything stops the book.
    venue.set_subscriptions(&Arc::from("a"), vec![]).await.unwrap();
    assert!(venue.book("BTCUSDT", 5).is_none());
    assert_eq!(venue.malformed_frames(), 0);
    venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_symbols_cannot_be_subscribed() {
    let setup = start().await;
    let err = setup
        .venue
        .set_subscriptions(&Arc::from("a"), vec![key("NOPE", StreamKind::Trade)])
        .await
        .unwrap_err();
    assert_eq!(err.code, runner::exchange::ErrorCode::InvalidOrder);
    setup.venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_churn_is_paced_under_the_message_limit() {
    let setup = start().await;
    let venue = &setup.venue;
    let symbols = [
        "BTCUSDT", "ETHUSDT", "ETHBTC", "BNBUSDT", "BNBBTC", "BNBETH", "SOLUSDT", "SOLBTC",
    ];
    venue
        .set_subscriptions(&Arc::from("first"), vec![key("BTCUSDT", StreamKind::Book)])
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the connection to be up", || {
        let q = venue.quote("BTCUSDT");
        async move { q }
    })
    .await;
    // Twenty-four changes within half a second, from several strategies, on a live
    // connection: sent one message each, the exchange would cut the connection.
    for (i, symbol) in symbols.iter().enumerate() {
        let strategy: Arc<str> = Arc::from(format!("s{i}"));
        for streams in [
            vec![key(symbol, StreamKind::Book), key(symbol, StreamKind::Trade)],
            vec![key(symbol, StreamKind::Trade)],
            vec![key(symbol, StreamKind::Book)],
        ] {
            venue.set_subscriptions(&strategy, streams).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for symbol in symbols {
        eventually(Duration::from_secs(10), "a quote for every subscribed symbol", || {
            let q = venue.quote(symbol);
            async move { q }
        })
        .await;
    }
    let connects = setup
        .sim
        .request_log()
        .iter()
        .filter(|r| r.transport == "WS" && r.path == "/stream")
        .count();
    assert_eq!(connects, 1, "one connection, never dropped for sending too fast");
    venue.shutdown().await;
}
