//! The exchange answering in unexpected ways: order answers of another shape, error codes whose
//! outcome is unknown, the firewall's 403, the new-order limit, and a stream it refuses. Whatever
//! it answers, exactly the orders placed are known, with their fills, and one strategy's refused
//! stream does not stop the others' events.

use std::time::Duration;

use crate::client_support::{ctx, eventually, start, start_with};
use runner::exchange::binance::ClientOptions;
use runner::exchange::{
    grid, ClientOrderId, ErrorCode, MarketAmount, MarketEvent, OrderRef, OrderRequest, OrderStatus, Side, StreamKey,
    StreamKind, Venue,
};
use runner::sim::{AnswerMangle, FailKind, SimConfig};
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(15);

fn mangle(value: serde_json::Value) -> AnswerMangle {
    serde_json::from_value(value).expect("a mangle")
}

/// The shapes tried: a required field dropped, renamed or retyped; the fill quantities dropped or
/// retyped; unknown fields added (also over a known one).
fn shapes() -> Vec<(&'static str, AnswerMangle)> {
    vec![
        ("orderId dropped", mangle(json!({"drop": ["orderId"]}))),
        ("status renamed", mangle(json!({"rename": [["status", "orderStatus"]]}))),
        ("orderId retyped", mangle(json!({"retype": ["orderId"]}))),
        ("executedQty dropped", mangle(json!({"drop": ["executedQty"]}))),
        (
            "executedQty retyped",
            mangle(json!({"retype": ["executedQty", "price", "side"]})),
        ),
        (
            "unknown fields added",
            mangle(json!({"add": {"newField": {"a": [1, 2]}, "fills": "none", "transactTime": "soon"}})),
        ),
    ]
}

async fn market_buy(venue: &runner::exchange::binance::BinanceVenue, client_id: &str) -> OrderRequest {
    let info = venue.symbol("ETHUSDT").expect("ETHUSDT listed");
    let ticker = venue.ticker(&ctx("taker"), "ETHUSDT").await.unwrap();
    let qty = grid::round_qty(&info, 30.0 / ticker.price).unwrap();
    OrderRequest::market("ETHUSDT", Side::Buy, MarketAmount::Base(qty))
        .with_client_id(ClientOrderId::new(client_id).unwrap())
}

/// Places a filling market order per shape, through `options`' transport: never `network`, and
/// each order ends FILLED with the exchange's quantity, learned through `on_order`.
async fn every_mangled_placement_is_known_with_its_fill(options: ClientOptions) {
    let setup = start_with(
        SimConfig::default(),
        runner::exchange::binance::limits::pools::spot_defaults(),
        options,
    )
    .await;
    let venue = &setup.venue;
    for (i, (shape, mangled)) in shapes().into_iter().enumerate() {
        let client_id = format!("mangled-{i}");
        let request = market_buy(venue, &client_id).await;
        setup.sim.faults().mangle_order_answers(mangled);
        let placed = venue.place(&ctx("taker"), request).await;
        setup.sim.faults().clear();
        if let Err(error) = &placed {
            assert_eq!(
                error.code,
                ErrorCode::UnknownStatus,
                "{shape}: an answer that arrived is never {:?}: {error}",
                error.code
            );
        }
        let on_exchange = setup.sim.orders_by_client_id(&client_id);
        assert_eq!(on_exchange.len(), 1, "{shape}: one order on the exchange");
        let executed: f64 = on_exchange[0].executed_qty.try_into().unwrap();
        let order = setup
            .sink
            .order_reaching(&client_id, OrderStatus::Filled, PATIENCE)
            .await;
        assert!((order.filled_qty - executed).abs() < 1e-12, "{shape}: {order:?}");
        let known = venue
            .get_order(&ctx("taker"), "ETHUSDT", &OrderRef::ClientId(client_id.clone()))
            .await
            .unwrap();
        assert_eq!(known.status, OrderStatus::Filled, "{shape}");
    }
    assert_eq!(
        setup.sim.stats().orders_placed,
        shapes().len() as u64,
        "exactly the orders placed"
    );
    venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mangled_rest_order_answers_lose_no_order() {
    every_mangled_placement_is_known_with_its_fill(ClientOptions::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mangled_websocket_api_order_answers_lose_no_order() {
    let options = ClientOptions {
        order_transport: runner::exchange::binance::transport::ws_api::OrderTransport::WsApi,
        ..ClientOptions::default()
    };
    every_mangled_placement_is_known_with_its_fill(options).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mangled_cancel_answer_is_looked_up() {
    let setup = start().await;
    let venue = &setup.venue;
    let request = crate::client_support::resting_buy(venue, "maker", 0.8).await;
    let order = venue.place(&ctx("maker"), request).await.unwrap();
    setup
        .sim
        .faults()
        .mangle_order_answers(mangle(json!({"drop": ["executedQty", "origClientOrderId"]})));
    let cancel = venue
        .cancel(&ctx("maker"), "BTCUSDT", &OrderRef::ClientId(order.client_id.clone()))
        .await;
    setup.sim.faults().clear();
    if let Err(error) = &cancel {
        assert_eq!(error.code, ErrorCode::UnknownStatus, "{error}");
    }
    setup
        .sink
        .order_reaching(&order.client_id, OrderStatus::Canceled, PATIENCE)
        .await;
    assert!(venue.open_orders("maker", None).is_empty());
    venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_status_unknown_1006_is_looked_up_not_rejected() {
    let setup = start().await;
    let venue = &setup.venue;
    let request = market_buy(venue, "unknown-1006").await;
    setup.sim.faults().fail_next(1, FailKind::Unknown1006);
    let error = venue.place(&ctx("taker"), request).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::UnknownStatus, "{error}");
    assert_eq!(error.exchange_code, Some(-1006));
    setup
        .sink
        .order_reaching("unknown-1006", OrderStatus::Filled, PATIENCE)
        .await;
    assert_eq!(setup.sim.orders_by_client_id("unknown-1006").len(), 1);
    venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firewall_403_backs_off_like_a_429() {
    let setup = start().await;
    let venue = &setup.venue;
    setup.sim.faults().fail_next(1, FailKind::Firewall403);
    let error = venue.ticker(&ctx("reader"), "BTCUSDT").await.unwrap_err();
    assert_eq!(error.code, ErrorCode::Backoff, "{error}");
    let sent = setup.sim.request_log().len();
    let again = venue
        .ticker(&runner::exchange::CallCtx::new("reader", Duration::ZERO), "BTCUSDT")
        .await
        .unwrap_err();
    assert_eq!(
        again.code,
        ErrorCode::Backoff,
        "refused locally during the back-off: {again}"
    );
    assert_eq!(setup.sim.request_log().len(), sent, "nothing sent during the back-off");
    venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_new_orders_holds_new_orders_but_not_cancels() {
    let setup = start().await;
    let venue = &setup.venue;
    let resting = crate::client_support::resting_buy(venue, "maker", 0.8).await;
    let first = venue.place(&ctx("maker"), resting.clone()).await.unwrap();
    setup.sim.faults().hit_order_limit(30);
    let error = venue.place(&ctx("maker"), resting.clone()).await.unwrap_err();
    assert_eq!(error.exchange_code, Some(-1015), "{error}");
    // A cancel goes out at once, and is not banned.
    let canceled = venue
        .cancel(&ctx("maker"), "BTCUSDT", &OrderRef::ClientId(first.client_id.clone()))
        .await
        .unwrap();
    assert_eq!(canceled.status, OrderStatus::Canceled);
    // A new order waits for the hold instead of being sent into a ban.
    let sent = setup.sim.request_log().len();
    let held = venue.place(&ctx("maker"), resting).await.unwrap_err();
    assert_eq!(held.code, ErrorCode::Backoff, "{held}");
    assert_eq!(setup.sim.request_log().len(), sent, "the held order was not sent");
    assert_eq!(setup.sim.stats().bans, 0, "never banned");
    venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_stream_fails_only_the_strategy_that_asked_for_it() {
    let setup = start().await;
    let venue = &setup.venue;
    setup.sim.faults().refuse_streams(vec!["ethusdt@trade".into()]);
    let benign = std::sync::Arc::<str>::from("benign");
    let hostile = std::sync::Arc::<str>::from("hostile");
    let book = StreamKey {
        symbol: "BTCUSDT".into(),
        kind: StreamKind::Book,
    };
    let refused = StreamKey {
        symbol: "ETHUSDT".into(),
        kind: StreamKind::Trade,
    };
    venue.set_subscriptions(&benign, vec![book]).await.unwrap();
    venue.set_subscriptions(&hostile, vec![refused]).await.unwrap();
    let books = || {
        setup
            .sink
            .market
            .lock()
            .iter()
            .filter(|e| matches!(e, MarketEvent::Book(q) if &*q.symbol == "BTCUSDT"))
            .count()
    };
    // A reconnect asks for every stream again, the refused one included.
    setup.sim.faults().drop_websockets();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = books();
    eventually(
        PATIENCE,
        "book events for the benign strategy after the reconnect",
        || {
            let now = books();
            async move { (now > before + 5).then_some(()) }
        },
    )
    .await;
    venue.shutdown().await;
}
