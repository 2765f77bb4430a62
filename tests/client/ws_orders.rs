//! Order entry over the WebSocket API (`--order-transport ws-api`) against the simulator: a strategy's
//! orders and cancels go over its own connection, answers read as REST's would, and the failure
//! rules are REST's: unanswered means "outcome unknown, looked up", never a second order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client_support::{ctx, on_strategy_thread, resting_buy, start_with, strategy_thread, Setup};
use runner::exchange::binance::limits::pools;
use runner::exchange::binance::transport::ws_api::OrderTransport;
use runner::exchange::binance::ClientOptions;
use runner::exchange::latency::{LatencySamples, Trigger};
use runner::exchange::{CallCtx, ClientOrderId, ErrorCode, OrderRef, OrderRequest, OrderStatus, Side, Venue};
use runner::sim::{FailKind, RequestRecord, SimConfig};

async fn start_ws(options: ClientOptions) -> Setup {
    let options = ClientOptions {
        order_transport: OrderTransport::WsApi,
        ..options
    };
    start_with(SimConfig::default(), pools::spot_defaults(), options).await
}

fn count(log: &[RequestRecord], transport: &str, method: &str) -> usize {
    log.iter()
        .filter(|r| r.transport == transport && r.method == method)
        .count()
}

/// One `order.place` went over the WebSocket API, answered `status`, and no order went over REST.
fn assert_placed_once_over_the_ws_api(log: &[RequestRecord], status: u16) {
    let placed: Vec<u16> = log
        .iter()
        .filter(|r| r.transport == "WS_API" && r.method == "order.place")
        .map(|r| r.status)
        .collect();
    assert_eq!(placed, vec![status], "{log:?}");
    assert!(
        !log.iter().any(|r| r.transport == "REST" && r.method == "POST"),
        "{log:?}"
    );
}

fn rest_order_calls(log: &[RequestRecord]) -> usize {
    log.iter()
        .filter(|r| r.transport == "REST" && r.path.starts_with("/api/v3/order"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strategys_orders_and_cancels_go_over_its_own_connection() {
    let setup = start_ws(ClientOptions::default()).await;
    let first = resting_buy(&setup.venue, "maker", 0.9).await;
    let second = resting_buy(&setup.venue, "maker", 0.8).await;
    let connects_before = count(&setup.sim.request_log(), "WS_API", "CONNECT");

    let (placed, canceled) = on_strategy_thread(&setup.venue, |venue| async move {
        let ctx = ctx("maker");
        let a = venue.place(&ctx, first).await.expect("first order");
        let b = venue.place(&ctx, second).await.expect("second order");
        let canceled = venue
            .cancel(&ctx, "BTCUSDT", &OrderRef::ClientId(a.client_id.clone()))
            .await
            .expect("cancel");
        ([a, b], canceled)
    })
    .await;

    assert!(placed.iter().all(|o| o.status == OrderStatus::New && o.id.is_some()));
    assert_eq!(canceled.status, OrderStatus::Canceled);
    assert_eq!(
        setup.sim.orders_by_client_id(&placed[0].client_id)[0].status,
        "CANCELED"
    );
    assert_eq!(setup.sim.orders_by_client_id(&placed[1].client_id)[0].status, "NEW");
    let log = setup.sim.request_log();
    assert_eq!(count(&log, "WS_API", "order.place"), 2);
    assert_eq!(count(&log, "WS_API", "order.cancel"), 1);
    assert_eq!(rest_order_calls(&log), 0, "no order went over REST");
    assert_eq!(
        count(&log, "WS_API", "CONNECT") - connects_before,
        1,
        "one connection for the strategy's thread, kept between orders"
    );
    // Its usage was reconciled from the answers' rateLimits.
    assert!(setup.ledger.status("maker").pools.iter().any(|p| p.used > 0));
    setup.venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_own_calls_stay_on_rest() {
    let setup = start_ws(ClientOptions::default()).await;
    let request = resting_buy(&setup.venue, "background", 0.9).await;
    // Called from a multi-thread runtime, as the client's own work is.
    let order = setup.venue.place(&ctx("background"), request).await.unwrap();
    assert_eq!(order.status, OrderStatus::New);
    let log = setup.sim.request_log();
    assert_eq!(count(&log, "WS_API", "order.place"), 0);
    assert_eq!(rest_order_calls(&log), 1);
    setup.venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_refusal_reads_as_it_does_over_rest() {
    let setup = start_ws(ClientOptions::default()).await;
    let info = setup.venue.symbol("BTCUSDT").unwrap();
    let quote = setup.venue.book_ticker(&ctx("broke"), "BTCUSDT").await.unwrap();
    let price = runner::exchange::grid::round_price(&info, quote.bid * 0.9).unwrap();
    // Within the symbol's filters, but far more than the paper account holds.
    let quantity = runner::exchange::grid::round_qty(&info, 5_000_000.0 / price).unwrap();
    let request = OrderRequest::limit("BTCUSDT", Side::Buy, quantity, price);
    let over_rest = setup.venue.place(&ctx("broke"), request.clone()).await.unwrap_err();
    let over_ws = on_strategy_thread(&setup.venue, |venue| async move {
        venue.place(&ctx("broke"), request).await.unwrap_err()
    })
    .await;
    assert_eq!(over_ws.exchange_code, Some(-2010), "{over_ws}");
    assert_eq!(
        (over_ws.code, over_ws.exchange_code),
        (over_rest.code, over_rest.exchange_code)
    );
    assert_eq!(over_ws.message, over_rest.message);
    assert_eq!(count(&setup.sim.request_log(), "WS_API", "order.place"), 1);
    setup.venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_before_the_answer_leaves_exactly_one_order_found_by_lookup() {
    let setup = start_ws(ClientOptions::default()).await;
    let mut request = resting_buy(&setup.venue, "unlucky", 0.9).await;
    request.client_id = Some(ClientOrderId::new("lost-answer-1").unwrap());
    let retry = resting_buy(&setup.venue, "unlucky", 0.85).await;
    // The exchange places the order at once but answers only after a while; the socket drops first.
    setup.sim.faults().delay_order_answers(Duration::from_secs(30));
    let (dropped, on_dropped) = tokio::sync::oneshot::channel::<()>();
    let strategy = strategy_thread(&setup.venue, move |venue| async move {
        let ctx = ctx("unlucky");
        let (lost, _) = tokio::join!(venue.place(&ctx, request), on_dropped);
        // The next order on the same thread opens a new connection and goes through.
        let after = venue.place(&ctx, retry).await;
        (lost, after)
    });
    crate::client_support::eventually(Duration::from_secs(10), "the order on the exchange", || {
        let found = setup.sim.orders_by_client_id("lost-answer-1").len();
        async move { (found == 1).then_some(()) }
    })
    .await;
    setup.sim.faults().clear();
    setup.sim.faults().drop_websockets();
    dropped.send(()).unwrap();
    let (lost, after) = strategy.await.unwrap();
    let err = lost.unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownStatus, "{err}");
    setup
        .sink
        .order_reaching("lost-answer-1", OrderStatus::New, Duration::from_secs(10))
        .await;
    assert_eq!(
        setup.sim.orders_by_client_id("lost-answer-1").len(),
        1,
        "never sent twice"
    );
    assert_eq!(after.expect("the next order").status, OrderStatus::New);
    assert_eq!(setup.sim.stats().orders_placed, 2);
    setup.venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_order_times_out_as_unknown_and_is_looked_up() {
    let options = ClientOptions {
        request_timeout: Duration::from_millis(500),
        ..ClientOptions::default()
    };
    let setup = start_ws(options).await;
    let mut request = resting_buy(&setup.venue, "slow", 0.9).await;
    request.client_id = Some(ClientOrderId::new("slow-answer-1").unwrap());
    setup.sim.faults().delay_order_answers(Duration::from_secs(3));
    let err = on_strategy_thread(&setup.venue, |venue| async move {
        venue.place(&ctx("slow"), request).await.unwrap_err()
    })
    .await;
    assert_eq!(err.code, ErrorCode::UnknownStatus, "{err}");
    setup.sim.faults().clear();
    setup
        .sink
        .order_reaching("slow-answer-1", OrderStatus::New, Duration::from_secs(10))
        .await;
    assert_eq!(setup.sim.orders_by_client_id("slow-answer-1").len(), 1);
    setup.venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_over_the_ws_api_backs_everyone_off_and_nothing_is_sent_meanwhile() {
    let setup = start_ws(ClientOptions::default()).await;
    let first = resting_buy(&setup.venue, "eager", 0.9).await;
    let second = resting_buy(&setup.venue, "eager", 0.85).await;
    let warm = resting_buy(&setup.venue, "eager", 0.8).await;
    let faults = setup.sim.faults();
    let (refused, meanwhile) = on_strategy_thread(&setup.venue, |venue| async move {
        // The strategy's connection is open first, so the 429 lands on an order, not on the handshake.
        venue.place(&ctx("eager"), warm).await.expect("warm-up order");
        faults.force_429(30);
        let refused = venue.place(&ctx("eager"), first).await.unwrap_err();
        // The wait is far longer than this call may wait for budget: refused without a request.
        let quick = CallCtx {
            wait: Duration::from_millis(200),
            ..ctx("eager")
        };
        let meanwhile = venue.place(&quick, second).await.unwrap_err();
        (refused, meanwhile)
    })
    .await;
    // As over REST: the exchange's wait, for everyone.
    assert_eq!(refused.code, ErrorCode::Backoff, "{refused}");
    assert!(refused.retry_after_ms.is_some_and(|ms| ms >= 20_000), "{refused:?}");
    assert_eq!(meanwhile.code, ErrorCode::Backoff, "{meanwhile}");
    let log = setup.sim.request_log();
    let throttled = log.iter().position(|r| r.status == 429).expect("the 429 is logged");
    assert!(
        log[throttled + 1..].is_empty(),
        "nothing was sent during the back-off: {:?}",
        &log[throttled + 1..]
    );
    // Every strategy waits, not only the one that was throttled.
    assert!(setup
        .venue
        .book_ticker(
            &CallCtx {
                wait: Duration::from_millis(100),
                ..ctx("bystander")
            },
            "BTCUSDT"
        )
        .await
        .is_err());
    setup.venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_placed_for_a_market_event_records_its_latency_once_written() {
    for transport in [OrderTransport::Rest, OrderTransport::WsApi] {
        let setup = start_with(
            SimConfig::default(),
            pools::spot_defaults(),
            ClientOptions {
                order_transport: transport,
                ..ClientOptions::default()
            },
        )
        .await;
        let request = resting_buy(&setup.venue, "timed", 0.9).await;
        let refused = OrderRequest::limit("BTCUSDT", Side::Buy, 0.0, 1.0);
        let samples = Arc::new(LatencySamples::default());
        let trigger = Trigger {
            received: Instant::now(),
            samples: samples.clone(),
        };
        let (placed, took) = on_strategy_thread(&setup.venue, move |venue| async move {
            let ctx = CallCtx {
                trigger: Some(trigger),
                ..ctx("timed")
            };
            // Refused locally: nothing written, nothing recorded.
            assert!(venue.place(&ctx, refused).await.is_err());
            let placed = venue.place(&ctx, request).await;
            (placed, ctx.trigger.map(|t| t.received.elapsed()))
        })
        .await;
        assert_eq!(placed.expect("placed").status, OrderStatus::New, "{transport:?}");
        let summary = samples.summary().expect("one sample");
        assert_eq!(summary.count, 1, "{transport:?}");
        assert!(
            summary.max <= took.unwrap(),
            "{transport:?}: written before it returned"
        );
        setup.venue.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_order_connection_answers_the_exchanges_pings_and_stays_open() {
    let config = SimConfig {
        ws_ping_interval: Duration::from_millis(50),
        ws_pong_timeout: Duration::from_millis(150),
        ..SimConfig::default()
    };
    let options = ClientOptions {
        order_transport: OrderTransport::WsApi,
        ..ClientOptions::default()
    };
    let setup = start_with(config, pools::spot_defaults(), options).await;
    let first = resting_buy(&setup.venue, "patient", 0.9).await;
    let second = resting_buy(&setup.venue, "patient", 0.85).await;
    let connects_before = count(&setup.sim.request_log(), "WS_API", "CONNECT");
    on_strategy_thread(&setup.venue, |venue| async move {
        venue.place(&ctx("patient"), first).await.expect("first order");
        // Idle for many ping periods: a connection that did not answer would be closed after three.
        tokio::time::sleep(Duration::from_millis(800)).await;
        venue.place(&ctx("patient"), second).await.expect("second order");
    })
    .await;
    assert_eq!(
        count(&setup.sim.request_log(), "WS_API", "CONNECT") - connects_before,
        1,
        "the same connection carried both orders"
    );
    setup.venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_answered_minus_1007_over_the_ws_api_is_learned_not_resent() {
    let setup = start_ws(ClientOptions::default()).await;
    let mut request = resting_buy(&setup.venue, "lucky", 0.9).await;
    request.client_id = Some(ClientOrderId::new("answer-lost-1").unwrap());
    // The exchange places it but the answer says "unknown" (-1007).
    setup.sim.faults().fail_next(1, FailKind::Unknown1007);
    let err = on_strategy_thread(&setup.venue, |venue| async move {
        venue.place(&ctx("lucky"), request).await.unwrap_err()
    })
    .await;
    assert_eq!(
        (err.code, err.exchange_code),
        (ErrorCode::UnknownStatus, Some(-1007)),
        "{err}"
    );
    setup
        .sink
        .order_reaching("answer-lost-1", OrderStatus::New, Duration::from_secs(10))
        .await;
    assert_eq!(setup.sim.orders_by_client_id("answer-lost-1").len(), 1);
    assert_eq!(setup.sim.stats().orders_placed, 1, "never sent again");
    assert_placed_once_over_the_ws_api(&setup.sim.request_log(), 503);
    setup.venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_the_front_end_dropped_is_rejected_after_the_grace_period() {
    let setup = start_ws(ClientOptions {
        unknown_order_grace: Duration::from_millis(1500),
        ..ClientOptions::default()
    })
    .await;
    let mut request = resting_buy(&setup.venue, "unlucky", 0.9).await;
    request.client_id = Some(ClientOrderId::new("front-end-1").unwrap());
    // A 503 from the front end: the outcome is unknown to the client, and the order does not exist.
    setup.sim.faults().fail_next(1, FailKind::Unavailable);
    let err = on_strategy_thread(&setup.venue, |venue| async move {
        venue.place(&ctx("unlucky"), request).await.unwrap_err()
    })
    .await;
    assert_eq!(err.code, ErrorCode::UnknownStatus, "{err}");
    setup
        .sink
        .order_reaching("front-end-1", OrderStatus::Rejected, Duration::from_secs(15))
        .await;
    assert!(setup.sim.orders_by_client_id("front-end-1").is_empty());
    assert_eq!(setup.sim.stats().orders_placed, 0, "never re-sent under any id");
    assert_placed_once_over_the_ws_api(&setup.sim.request_log(), 503);
    setup.venue.shutdown().await;
}
