//! Signed order round trips against the simulator on loopback.

use std::time::Duration;

use crate::client_support::{ctx, eventually, start};
use runner::exchange::grid;
use runner::exchange::{ClientOrderId, ErrorCode, MarketAmount, OrderRef, OrderRequest, OrderStatus, Side, Venue};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_order_rests_and_is_cancelled() {
    let setup = start().await;
    let venue = &setup.venue;
    let ctx = ctx("maker");
    let info = venue.symbol("BTCUSDT").expect("BTCUSDT listed");
    let quote = venue.book_ticker(&ctx, "BTCUSDT").await.unwrap();
    // Well below the market so it rests; notional comfortably above the minimum.
    let price = grid::round_price(&info, quote.bid * 0.9).unwrap();
    let qty = grid::round_qty(&info, 50.0 / price)
        .unwrap()
        .max(info.min_qty.try_into().unwrap());

    let order = venue
        .place(&ctx, OrderRequest::limit("BTCUSDT", Side::Buy, qty, price))
        .await
        .unwrap();
    assert_eq!(order.status, OrderStatus::New);
    assert_eq!(order.tif, Some(runner::exchange::TimeInForce::Gtc));
    assert!(order.id.is_some());
    assert_eq!(venue.open_orders("maker", Some("BTCUSDT")).len(), 1);
    assert!(venue.open_orders("other", None).is_empty(), "orders are per strategy");
    let sink = setup.sink.clone();
    let cid = order.client_id.clone();
    eventually(Duration::from_secs(5), "NEW through the sink", || {
        let seen = sink.statuses(&cid);
        async move { seen.contains(&OrderStatus::New).then_some(()) }
    })
    .await;
    // Another strategy cannot touch it.
    let err = venue
        .cancel(
            &crate::client_support::ctx("other"),
            "BTCUSDT",
            &OrderRef::ClientId(cid.clone()),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidOrder);

    let canceled = venue
        .cancel(&ctx, "BTCUSDT", &OrderRef::ClientId(cid.clone()))
        .await
        .unwrap();
    assert_eq!(canceled.status, OrderStatus::Canceled);
    assert!(venue.open_orders("maker", None).is_empty());
    sink.order_reaching(&cid, OrderStatus::Canceled, Duration::from_secs(5))
        .await;
    let on_exchange = setup.sim.orders_by_client_id(&cid);
    assert_eq!(on_exchange.len(), 1);
    assert_eq!(on_exchange[0].status, "CANCELED");
    // A cancel of a final order sends nothing.
    let before = setup.sim.request_log().len();
    let again = venue
        .cancel(&ctx, "BTCUSDT", &OrderRef::ClientId(cid.clone()))
        .await
        .unwrap();
    assert_eq!(again.status, OrderStatus::Canceled);
    assert_eq!(setup.sim.request_log().len(), before);
    venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_market_order_fills_and_balances_follow() {
    let setup = start().await;
    let venue = &setup.venue;
    let ctx = ctx("taker");
    let info = venue.symbol("ETHUSDT").expect("ETHUSDT listed");
    let usdt_before = venue.balances().get("USDT").copied().unwrap_or_default().free;
    let ticker = venue.ticker(&ctx, "ETHUSDT").await.unwrap();
    let qty = grid::round_qty(&info, 100.0 / ticker.price).unwrap();
    let order = venue
        .place(
            &ctx,
            OrderRequest::market("ETHUSDT", Side::Buy, MarketAmount::Base(qty)),
        )
        .await
        .unwrap();
    assert_eq!(order.status, OrderStatus::Filled);
    assert!((order.filled_qty - qty).abs() < 1e-12);
    assert!(order.avg_price > 0.0);
    let cid = order.client_id.clone();
    setup
        .sink
        .order_reaching(&cid, OrderStatus::Filled, Duration::from_secs(5))
        .await;
    eventually(Duration::from_secs(5), "USDT balance to drop", || {
        let now = venue.balances().get("USDT").copied().unwrap_or_default().free;
        async move { (now < usdt_before - 50.0).then_some(()) }
    })
    .await;
    assert!(*setup.sink.balance_changes.lock() > 0);
    assert!(venue.open_orders("taker", None).is_empty());
    venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_orders_are_refused_locally_with_no_request() {
    let setup = start().await;
    let venue = &setup.venue;
    let ctx = ctx("careless");
    let orders_sent = || {
        setup
            .sim
            .request_log()
            .iter()
            .filter(|r| r.path == "/api/v3/order")
            .count()
    };
    let before = orders_sent();
    let weight_before = venue.ledger_status("careless").mine.total_weight;
    for qty in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let err = venue
            .place(&ctx, OrderRequest::limit("BTCUSDT", Side::Buy, qty, 10_000.0))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidOrder, "quantity {qty}: {err}");
    }
    let err = venue
        .place(&ctx, OrderRequest::limit("NOPEUSDT", Side::Buy, 1.0, 1.0))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidOrder);
    assert!(err.message.contains("NOPEUSDT"), "{err}");
    let err = venue
        .place(&ctx, OrderRequest::limit("BTCUSDT", Side::Buy, 0.001, 10_000.000_1))
        .await
        .unwrap_err();
    assert!(err.message.contains("PRICE_FILTER"), "{err}");
    let err = venue.ticker(&ctx, "NOPEUSDT").await.unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidOrder);
    assert_eq!(orders_sent(), before, "nothing reached the exchange");
    assert_eq!(
        venue.ledger_status("careless").mine.total_weight,
        weight_before,
        "no weight spent"
    );

    // A strategy-given client id can be used once.
    let info = venue.symbol("BTCUSDT").unwrap();
    let quote = venue.book_ticker(&ctx, "BTCUSDT").await.unwrap();
    let price = grid::round_price(&info, quote.bid * 0.8).unwrap();
    let qty = grid::round_qty(&info, 20.0 / price).unwrap();
    let mut request = OrderRequest::limit("BTCUSDT", Side::Buy, qty, price);
    request.client_id = Some(ClientOrderId::new("my-order-1").unwrap());
    venue.place(&ctx, request.clone()).await.unwrap();
    let err = venue.place(&ctx, request).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidOrder);
    assert_eq!(setup.sim.orders_by_client_id("my-order-1").len(), 1);
    let canceled = venue.cancel_all(&ctx, "BTCUSDT").await.unwrap();
    assert_eq!(canceled.len(), 1);
    venue.shutdown().await;
}
