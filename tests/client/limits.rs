//! The client under the exchange's limits: 429 and 418 stop everything until they
//! pass, other users of the IP are seen through the usage headers, and an order
//! whose answer never comes is resolved without being sent twice.

use std::time::Duration;

use crate::client_support::{ctx, eventually, resting_buy, start, start_with};
use runner::exchange::binance::limits::pools;
use runner::exchange::binance::ClientOptions;
use runner::exchange::{CallCtx, ErrorCode, OrderStatus, Venue};
use runner::ledger::{IntervalUnit, PoolKind, RateLimit};
use runner::sim::SimConfig;

fn no_wait(strategy: &str) -> CallCtx {
    CallCtx {
        wait: Duration::ZERO,
        ..ctx(strategy)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_429_nothing_is_sent_until_retry_after_passes() {
    let setup = start().await;
    let venue = &setup.venue;
    setup.sim.faults().force_429(2);
    let err = venue.ticker(&ctx("a"), "BTCUSDT").await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Backoff, "{err}");
    assert!(err.retry_after_ms.is_some_and(|ms| ms >= 1_000), "{err:?}");
    let throttled_at = setup
        .sim
        .request_log()
        .iter()
        .find(|r| r.status == 429)
        .expect("the sim answered 429")
        .at_ms;
    // Every lane, every strategy: refused locally while the wait runs.
    for strategy in ["a", "b", "c"] {
        let err = venue.ticker(&no_wait(strategy), "ETHUSDT").await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Backoff, "{err}");
    }
    // A caller willing to wait gets through once the wait is over.
    let ticker = venue.ticker(&ctx("a"), "BTCUSDT").await.unwrap();
    assert!(ticker.price > 0.0);
    let log = setup.sim.request_log();
    let during: Vec<_> = log
        .iter()
        .filter(|r| r.at_ms > throttled_at && r.at_ms < throttled_at + 2_000)
        .collect();
    assert!(
        during.is_empty(),
        "requests arrived during the Retry-After wait: {during:?}"
    );
    assert_eq!(setup.sim.stats().count_418, 0, "no 418");
    venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_418_nothing_is_sent_until_the_ban_ends() {
    let setup = start().await;
    let venue = &setup.venue;
    setup.sim.faults().force_418(2);
    let err = venue.book_ticker(&ctx("a"), "BTCUSDT").await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Banned, "{err}");
    let banned_at = setup
        .sim
        .request_log()
        .iter()
        .find(|r| r.status == 418)
        .expect("418")
        .at_ms;
    let err = venue.depth(&no_wait("b"), "BTCUSDT", 10).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Banned);
    assert_eq!(venue.ledger_status("b").state.as_str(), "banned");
    let depth = venue.depth(&ctx("b"), "BTCUSDT", 10).await.unwrap();
    assert!(!depth.bids.is_empty());
    let during = setup
        .sim
        .request_log()
        .iter()
        .filter(|r| r.at_ms > banned_at && r.at_ms < banned_at + 2_000)
        .count();
    assert_eq!(during, 0, "requests arrived during the ban");
    venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_used_by_another_process_is_seen_in_the_headers() {
    let small = vec![
        RateLimit::new(PoolKind::RequestWeight, IntervalUnit::Minute, 1, 400),
        RateLimit::new(PoolKind::Orders, IntervalUnit::Second, 10, 100),
        RateLimit::new(PoolKind::RawRequests, IntervalUnit::Minute, 5, 300_000),
    ];
    let config = SimConfig {
        limits: small.clone(),
        ..SimConfig::default()
    };
    let setup = start_with(config, pools::spot_defaults(), ClientOptions::default()).await;
    let venue = &setup.venue;
    // Another process on the same IP spends most of the window.
    setup.sim.faults().add_external_weight(300);
    let mut ok = 0;
    let mut refused = 0;
    for _ in 0..80 {
        match venue.ticker(&no_wait("greedy"), "BTCUSDT").await {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(e.code, ErrorCode::RateLimited, "{e}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "the client must have stopped itself");
    assert!(ok < 50, "at most the remaining budget was used: {ok}");
    let stats = setup.sim.stats();
    assert_eq!((stats.count_429, stats.count_418), (0, 0), "never a 429 or 418");
    venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_placement_is_resolved_without_a_second_order() {
    let options = ClientOptions {
        request_timeout: Duration::from_millis(700),
        ..ClientOptions::default()
    };
    let setup = start_with(SimConfig::default(), pools::spot_defaults(), options).await;
    let venue = &setup.venue;
    let ctx = ctx("patient");
    let request = resting_buy(venue, "patient", 0.9).await;
    setup.sim.faults().delay_order_answers(Duration::from_secs(3));
    let err = venue.place(&ctx, request).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownStatus, "{err}");
    let pending = venue.open_orders("patient", Some("BTCUSDT"));
    assert_eq!(
        pending.len(),
        1,
        "the order is tracked (PENDING, or NEW if the user stream already told)"
    );
    let cid = pending[0].client_id.clone();
    assert!(err.message.contains(&cid), "{err}");
    let sink = setup.sink.clone();
    let resolved = eventually(Duration::from_secs(10), "the order's state through the sink", || {
        let last = sink.last_order(&cid);
        async move { last.filter(|o| o.status != OrderStatus::Pending) }
    })
    .await;
    assert_eq!(resolved.status, OrderStatus::New);
    assert_eq!(setup.sim.orders_by_client_id(&cid).len(), 1, "exactly one order exists");
    // The sim counts placements as it processes them (the delayed answer may never be sent:
    // the client hung up on it); lookups are GETs.
    assert_eq!(setup.sim.stats().orders_placed, 1, "never re-sent");
    let posts = setup
        .sim
        .request_log()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v3/order")
        .count();
    assert!(posts <= 1, "{posts} placements logged");
    venue.shutdown().await;
}
