//! Risk limits in front of the real client: an order over a limit is refused as `invalid_order`
//! and never reaches the simulator; orders within the limits go through unchanged.

use std::collections::BTreeMap;

use crate::client_support::{ctx, resting_buy, start, Setup};
use runner::exchange::risk::{Halt, RiskGuard, RiskLimits};
use runner::exchange::{ErrorCode, MarketAmount, OrderKind, OrderRef, OrderRequest, OrderStatus, Side, Venue};

/// Orders the simulator has seen placed.
fn placements(setup: &Setup) -> usize {
    setup
        .sim
        .request_log()
        .iter()
        .filter(|r| r.path == "/api/v3/order" && r.method == "POST")
        .count()
}

fn usdt_cap(cap: f64) -> RiskLimits {
    RiskLimits {
        max_order_notional: BTreeMap::from([("USDT".to_string(), cap)]),
        max_open_orders: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_worth_more_than_the_cap_is_refused_before_it_is_sent() {
    let setup = start().await;
    // `resting_buy` is worth about 30 USDT.
    let guard = RiskGuard::new(setup.venue.clone(), usdt_cap(50.0));
    let small = resting_buy(&setup.venue, "capped", 0.9).await;
    let placed = guard
        .place(&ctx("capped"), small.clone())
        .await
        .expect("within the cap");
    assert_eq!(placed.status, OrderStatus::New);

    let OrderKind::Limit { price, quantity, tif } = small.kind else {
        panic!("resting_buy is a LIMIT order")
    };
    let big = OrderRequest {
        kind: OrderKind::Limit {
            price,
            quantity: quantity * 4.0,
            tif,
        },
        ..small.clone()
    };
    let err = guard.place(&ctx("capped"), big).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidOrder, "{err:?}");
    assert!(
        err.message.contains("risk limit") && err.message.contains("max_order_notional 50 USDT"),
        "{}",
        err.message
    );

    // A MARKET order is valued by its quote quantity, or not at all without a streamed quote.
    let market = |amount| OrderRequest::market("BTCUSDT", Side::Buy, amount);
    let err = guard
        .place(&ctx("capped"), market(MarketAmount::Quote(60.0)))
        .await
        .unwrap_err();
    assert!(err.message.contains("worth 60 USDT"), "{}", err.message);
    let err = guard
        .place(&ctx("capped"), market(MarketAmount::Base(0.001)))
        .await
        .unwrap_err();
    assert!(err.message.contains("cannot be valued"), "{}", err.message);
    assert_eq!(
        placements(&setup),
        1,
        "only the order within the cap reached the exchange"
    );

    // Quote assets without a cap are not limited.
    let guard = RiskGuard::new(
        setup.venue.clone(),
        RiskLimits {
            max_order_notional: BTreeMap::from([("BTC".to_string(), 0.0001)]),
            max_open_orders: None,
        },
    );
    guard.place(&ctx("capped"), small).await.expect("USDT is not capped");
    assert_eq!(placements(&setup), 2);
    setup.venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strategy_at_its_open_order_limit_must_cancel_before_it_places() {
    let setup = start().await;
    let limits = RiskLimits {
        max_order_notional: BTreeMap::new(),
        max_open_orders: Some(2),
    };
    let guard = RiskGuard::new(setup.venue.clone(), limits);
    let mut open = Vec::new();
    for factor in [0.9, 0.85] {
        let request = resting_buy(&setup.venue, "limited", factor).await;
        open.push(guard.place(&ctx("limited"), request).await.expect("under the limit"));
    }
    let third = resting_buy(&setup.venue, "limited", 0.8).await;
    let err = guard.place(&ctx("limited"), third.clone()).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidOrder);
    assert!(err.message.contains("2 open orders"), "{}", err.message);
    // The limit is per strategy: another one may still place.
    guard
        .place(&ctx("other"), third.clone())
        .await
        .expect("another strategy's first order");

    let first = OrderRef::ClientId(open[0].client_id.clone());
    guard.cancel(&ctx("limited"), "BTCUSDT", &first).await.expect("cancel");
    guard
        .place(&ctx("limited"), third)
        .await
        .expect("room again after a cancel");
    assert_eq!(placements(&setup), 4, "the refused order was never sent");
    setup.venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_refuses_new_orders_but_lets_cancels_out() {
    let setup = start().await;
    let halt = Halt::default();
    let guard = RiskGuard::with_halt(setup.venue.clone(), RiskLimits::default(), halt.clone());
    let request = resting_buy(&setup.venue, "halted", 0.9).await;
    let resting = guard
        .place(&ctx("halted"), request.clone())
        .await
        .expect("before the halt");

    halt.halt();
    let err = guard.place(&ctx("halted"), request.clone()).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidOrder);
    assert!(err.message.contains("halted by the operator"), "{}", err.message);
    let cancelled = guard
        .cancel(
            &ctx("halted"),
            "BTCUSDT",
            &OrderRef::ClientId(resting.client_id.clone()),
        )
        .await
        .expect("a cancel goes out during the halt");
    assert_eq!(cancelled.status, OrderStatus::Canceled);
    assert_eq!(placements(&setup), 1, "nothing was placed during the halt");

    halt.resume();
    guard.place(&ctx("halted"), request).await.expect("after the resume");
    assert_eq!(placements(&setup), 2);
    setup.venue.shutdown().await;
}
