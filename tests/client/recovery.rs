//! Recovery paths: restart from the order journal, clock drift (-1021), orders the
//! exchange never saw, per-strategy cancel_all, and shutdown of in-flight calls.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::client_support::{ctx, eventually, paper_profile, resting_buy, start, start_with, RecordingSink};
use runner::exchange::binance::limits::pools;
use runner::exchange::binance::{BinanceVenue, ClientOptions};
use runner::exchange::{ClientOrderId, ErrorCode, OrderRef, OrderStatus, Venue};
use runner::sim::{FailKind, SimConfig};
use rust_decimal::Decimal;

/// Client options that keep the journal and the ledger under `state`, as a run does.
fn persisted(state: &Path) -> ClientOptions {
    ClientOptions {
        state_dir: Some(state.to_path_buf()),
        ..ClientOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reloads_the_journal_and_learns_what_happened_meanwhile() {
    let state = tempfile::tempdir().unwrap();
    let options = persisted(state.path());
    let setup = start_with(SimConfig::default(), pools::spot_defaults(), options.clone()).await;
    let request = resting_buy(&setup.venue, "keeper", 0.95).await;
    let price = request.kind.price().unwrap();
    let order = setup.venue.place(&ctx("keeper"), request).await.unwrap();
    assert_eq!(order.status, OrderStatus::New);
    setup.venue.shutdown().await;
    drop(setup.venue);

    // While the client is down the market trades through the order's price.
    let below = Decimal::try_from(price * 0.9).unwrap();
    assert!(setup.sim.set_price("BTCUSDT", below));
    eventually(Duration::from_secs(10), "the exchange to fill the order", || {
        let status = setup.sim.orders_by_client_id(&order.client_id)[0].status.clone();
        async move { (status == "FILLED").then_some(()) }
    })
    .await;

    let venue = BinanceVenue::connect(paper_profile(&setup.sim), setup.ledger.clone(), options)
        .await
        .unwrap();
    let restored = venue.open_orders("keeper", Some("BTCUSDT"));
    assert_eq!(restored.len(), 1, "the journal brought the order and its owner back");
    assert_eq!(restored[0].client_id, order.client_id);
    let sink = Arc::new(RecordingSink::default());
    venue.start(sink.clone()).await.unwrap();
    let cid = order.client_id.clone();
    let filled = sink
        .order_reaching(&cid, OrderStatus::Filled, Duration::from_secs(10))
        .await;
    assert_eq!(&*filled.strategy, "keeper");
    assert!(venue.open_orders("keeper", None).is_empty());
    // Ids minted after the restart never repeat earlier ones.
    let next = venue
        .place(&ctx("keeper"), resting_buy(&venue, "keeper", 0.5).await)
        .await
        .unwrap();
    assert_ne!(next.client_id, order.client_id);
    assert_eq!(setup.sim.orders_by_client_id(&next.client_id).len(), 1);
    venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_drift_is_resynced_after_minus_1021() {
    let setup = start().await;
    let venue = &setup.venue;
    let request = resting_buy(venue, "drift", 0.9).await;
    setup.sim.faults().set_clock_skew_ms(20_000);
    let err = venue.place(&ctx("drift"), request.clone()).await.unwrap_err();
    assert_eq!(
        (err.code, err.exchange_code),
        (ErrorCode::Rejected, Some(-1021)),
        "{err}"
    );
    // The time was resynced; the strategy's retry goes through.
    let order = venue.place(&ctx("drift"), request).await.unwrap();
    assert_eq!(order.status, OrderStatus::New);
    assert_eq!(setup.sim.stats().orders_placed, 1);
    assert!((venue.now_ms() - setup.sim.now_ms()).abs() < 1_000);
    venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_the_exchange_never_saw_is_rejected_after_the_grace_period() {
    let options = ClientOptions {
        unknown_order_grace: Duration::from_millis(1500),
        ..ClientOptions::default()
    };
    let setup = start_with(SimConfig::default(), pools::spot_defaults(), options).await;
    let venue = &setup.venue;
    let request = resting_buy(venue, "unlucky", 0.9).await;
    // A plain 503 from the front end: the outcome is unknown to us, and the order does not exist.
    setup.sim.faults().fail_next(1, FailKind::Unavailable);
    let err = venue.place(&ctx("unlucky"), request).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownStatus, "{err}");
    let cid = venue.open_orders("unlucky", None)[0].client_id.clone();
    let rejected = setup
        .sink
        .order_reaching(&cid, OrderStatus::Rejected, Duration::from_secs(15))
        .await;
    assert!(rejected
        .reject_reason
        .as_deref()
        .unwrap_or_default()
        .contains("does not know"));
    assert!(setup.sim.orders_by_client_id(&cid).is_empty());
    assert_eq!(setup.sim.stats().orders_placed, 0, "never re-sent under any id");
    venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_answered_minus_1007_is_learned_not_resent() {
    let setup = start().await;
    let venue = &setup.venue;
    let request = resting_buy(venue, "lucky", 0.9).await;
    // The exchange placed it but the answer says "unknown" (503, -1007).
    setup.sim.faults().fail_next(1, FailKind::Unknown1007);
    let err = venue.place(&ctx("lucky"), request).await.unwrap_err();
    assert_eq!(
        (err.code, err.exchange_code),
        (ErrorCode::UnknownStatus, Some(-1007)),
        "{err}"
    );
    let cid = venue.open_orders("lucky", None)[0].client_id.clone();
    setup
        .sink
        .order_reaching(&cid, OrderStatus::New, Duration::from_secs(10))
        .await;
    assert_eq!(setup.sim.orders_by_client_id(&cid).len(), 1);
    assert_eq!(setup.sim.stats().orders_placed, 1);
    venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_all_touches_only_the_calling_strategys_orders() {
    let setup = start().await;
    let venue = &setup.venue;
    let mine = venue
        .place(&ctx("a"), resting_buy(venue, "a", 0.9).await)
        .await
        .unwrap();
    let mine2 = venue
        .place(&ctx("a"), resting_buy(venue, "a", 0.85).await)
        .await
        .unwrap();
    let theirs = venue
        .place(&ctx("b"), resting_buy(venue, "b", 0.9).await)
        .await
        .unwrap();
    let canceled = venue.cancel_all(&ctx("a"), "BTCUSDT").await.unwrap();
    let mut ids: Vec<_> = canceled.iter().map(|o| o.client_id.clone()).collect();
    ids.sort();
    let mut expected = vec![mine.client_id.clone(), mine2.client_id.clone()];
    expected.sort();
    assert_eq!(ids, expected);
    assert!(canceled.iter().all(|o| o.status == OrderStatus::Canceled));
    assert_eq!(setup.sim.orders_by_client_id(&theirs.client_id)[0].status, "NEW");
    assert_eq!(venue.open_orders("b", None).len(), 1);
    assert!(!setup
        .sim
        .request_log()
        .iter()
        .any(|r| r.path == "/api/v3/openOrders" && r.method == "DELETE"));
    // get_order is served locally while the user stream is up: no request.
    let before = setup.sim.request_log().len();
    let local = venue
        .get_order(&ctx("b"), "BTCUSDT", &OrderRef::ClientId(theirs.client_id.clone()))
        .await
        .unwrap();
    assert_eq!(local.status, OrderStatus::New);
    assert_eq!(setup.sim.request_log().len(), before);
    venue.shutdown().await;
}

/// An order already sent when the client shuts down has an unknown outcome, not "not sent": it
/// stays in the journal, so the next start knows it and its owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_in_flight_at_shutdown_is_kept_for_the_next_start() {
    let state = tempfile::tempdir().unwrap();
    let options = persisted(state.path());
    let setup = start_with(SimConfig::default(), pools::spot_defaults(), options.clone()).await;
    setup.sim.faults().delay_order_answers(Duration::from_secs(3));
    let mut request = resting_buy(&setup.venue, "late", 0.95).await;
    request.client_id = Some(ClientOrderId::new("inflight-1").unwrap());
    let call = tokio::spawn({
        let venue = setup.venue.clone();
        async move { venue.place(&ctx("late"), request).await }
    });
    eventually(Duration::from_secs(10), "the order to reach the exchange", || {
        let seen = !setup.sim.orders_by_client_id("inflight-1").is_empty();
        async move { seen.then_some(()) }
    })
    .await;
    setup.venue.shutdown().await;
    let result = tokio::time::timeout(Duration::from_secs(2), call)
        .await
        .expect("ends promptly")
        .unwrap();
    assert_eq!(result.unwrap_err().code, ErrorCode::UnknownStatus);
    drop(setup.venue);

    let venue = BinanceVenue::connect(paper_profile(&setup.sim), setup.ledger.clone(), options)
        .await
        .unwrap();
    let restored = venue.open_orders("late", None);
    assert_eq!(restored.len(), 1, "the journal kept the order: {restored:?}");
    venue.start(Arc::new(RecordingSink::default())).await.unwrap();
    eventually(Duration::from_secs(10), "the order's state to be known", || {
        let known = venue
            .open_orders("late", None)
            .iter()
            .any(|o| o.client_id == "inflight-1" && o.status == OrderStatus::New && o.id.is_some());
        async move { known.then_some(()) }
    })
    .await;
    assert_eq!(setup.sim.orders_by_client_id("inflight-1").len(), 1, "never sent twice");
    venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_in_flight_calls_with_stopped() {
    let setup = start().await;
    let venue = setup.venue.clone();
    setup.sim.faults().set_latency(Duration::from_secs(5));
    let call = tokio::spawn({
        let venue = venue.clone();
        async move { venue.ticker(&ctx("slow"), "BTCUSDT").await }
    });
    venue.shutdown().await;
    let result = tokio::time::timeout(Duration::from_secs(2), call)
        .await
        .expect("ends promptly")
        .unwrap();
    assert_eq!(result.unwrap_err().code, ErrorCode::Stopped);
    let after = venue.ticker(&ctx("late"), "BTCUSDT").await.unwrap_err();
    assert_eq!(after.code, ErrorCode::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_user_stream_outage_orders_and_balances_are_requeried() {
    let setup = start().await;
    let venue = &setup.venue;
    let order = venue
        .place(&ctx("a"), resting_buy(venue, "a", 0.9).await)
        .await
        .unwrap();
    let count = |method: &str, path: &str| {
        setup
            .sim
            .request_log()
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    };
    let (lookups, accounts) = (count("GET", "/api/v3/order"), count("GET", "/api/v3/account"));
    setup.sim.faults().drop_websockets();
    eventually(Duration::from_secs(10), "the user stream to go down", || {
        let up = venue.user_stream_up();
        async move { (!up).then_some(()) }
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "re-queries after the user stream is back",
        || {
            let done = venue.user_stream_up()
                && count("GET", "/api/v3/order") > lookups
                && count("GET", "/api/v3/account") > accounts;
            async move { done.then_some(()) }
        },
    )
    .await;
    let current = venue.open_orders("a", None);
    assert_eq!(current.len(), 1);
    assert_eq!(
        (current[0].client_id.as_str(), current[0].status),
        (order.client_id.as_str(), OrderStatus::New)
    );
    venue.shutdown().await;
}

/// A power loss can take the record of an order sent just before it (the default `background`
/// journal policy syncs it right after the send). After a run that did not end cleanly, the next
/// start asks the exchange for its open orders and reports any the journal does not know; after a
/// clean end it asks nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_unclean_end_open_orders_the_journal_lost_are_reported() {
    let state = tempfile::tempdir().unwrap();
    let options = persisted(state.path());
    let setup = start_with(SimConfig::default(), pools::spot_defaults(), options.clone()).await;
    let open_order_checks = || {
        setup
            .sim
            .request_log()
            .iter()
            .filter(|r| r.method == "GET" && r.path == "/api/v3/openOrders")
            .count()
    };
    for (id, factor) in [("kept-1", 0.95), ("lost-1", 0.9)] {
        let mut request = resting_buy(&setup.venue, "victim", factor).await;
        request.client_id = Some(ClientOrderId::new(id).unwrap());
        setup.venue.place(&ctx("victim"), request).await.unwrap();
    }
    // The power goes: no shutdown, and the last order's record never reached the disk.
    drop(setup.venue);
    let journal = state
        .path()
        .join(runner::exchange::binance::orders::journal::JOURNAL_FILE);
    let text = std::fs::read_to_string(&journal).expect("the journal");
    let surviving: String = text
        .lines()
        .filter(|l| !l.contains("lost-1"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(surviving, text, "the lost order had records");
    std::fs::write(&journal, surviving).unwrap();

    let venue = BinanceVenue::connect(paper_profile(&setup.sim), setup.ledger.clone(), options.clone())
        .await
        .unwrap();
    let unknown: Vec<&str> = venue
        .open_orders_unknown_to_the_journal()
        .iter()
        .map(|o| o.client_order_id.as_str())
        .collect();
    assert_eq!(unknown, ["lost-1"], "only the order whose record was lost");
    assert_eq!(open_order_checks(), 1);
    assert_eq!(
        venue.open_orders("victim", None).len(),
        1,
        "the journaled order is still the strategy's"
    );
    assert_eq!(
        setup.sim.orders_by_client_id("lost-1")[0].status,
        "NEW",
        "reported, never touched"
    );
    venue.shutdown().await;
    drop(venue);

    // A clean end: the next start trusts the journal and asks nothing.
    let venue = BinanceVenue::connect(paper_profile(&setup.sim), setup.ledger.clone(), options)
        .await
        .unwrap();
    assert!(venue.open_orders_unknown_to_the_journal().is_empty());
    assert_eq!(open_order_checks(), 1);
    venue.shutdown().await;
}
