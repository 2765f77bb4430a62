//! Order kinds beyond LIMIT and MARKET through both order transports: a stop-loss-limit order with
//! a self-trade prevention mode reaches the simulator as that kind, waits untriggered, and cancels.

use std::sync::Arc;

use runner::exchange::binance::limits::pools;
use runner::exchange::binance::transport::ws_api::OrderTransport;
use runner::exchange::binance::ClientOptions;
use runner::exchange::{
    grid, ClientOrderId, OrderKind, OrderRef, OrderRequest, OrderStatus, OrderType, SelfTradePrevention, Side,
    StopTrigger, TimeInForce, Venue,
};
use runner::sim::SimConfig;

use crate::client_support::{ctx, on_strategy_thread, start_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_loss_limit_order_waits_for_its_trigger_over_either_transport() {
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
        let info = setup.venue.symbol("BTCUSDT").expect("BTCUSDT listed");
        let quote = setup.venue.book_ticker(&ctx("stops"), "BTCUSDT").await.unwrap();
        // A SELL stop well below the market: it must not trigger while the test runs.
        let stop = grid::round_price(&info, quote.bid * 0.8).unwrap();
        let limit = grid::round_price(&info, quote.bid * 0.79).unwrap();
        let quantity = grid::round_qty(&info, 30.0 / limit).unwrap();
        let client_id = format!("stop-{transport:?}");
        let mut request = OrderRequest::new(
            "BTCUSDT",
            Side::Sell,
            OrderKind::StopLossLimit {
                price: limit,
                quantity,
                tif: TimeInForce::Gtc,
                trigger: StopTrigger {
                    stop_price: Some(stop),
                    trailing_delta: None,
                },
            },
        )
        .with_client_id(ClientOrderId::new(client_id.as_str()).unwrap());
        request.stp = Some(SelfTradePrevention::ExpireBoth);
        let placed = on_strategy_thread(&setup.venue, move |venue| async move {
            venue.place(&ctx("stops"), request).await
        })
        .await
        .expect("the stop order is accepted");
        assert_eq!(
            (placed.status, placed.order_type, placed.price, placed.quantity),
            (OrderStatus::New, OrderType::StopLossLimit, limit, quantity),
            "{transport:?}"
        );
        let at_sim = setup.sim.orders_by_client_id(&client_id);
        assert_eq!(at_sim.len(), 1, "{transport:?}: sent once");
        assert_eq!(at_sim[0].order_type, "STOP_LOSS_LIMIT");
        assert_eq!(at_sim[0].self_trade_prevention_mode.as_deref(), Some("EXPIRE_BOTH"));
        assert_eq!(at_sim[0].is_working, Some(false), "{transport:?}: not triggered");
        let venue = Arc::clone(&setup.venue);
        let canceled = venue
            .cancel(&ctx("stops"), "BTCUSDT", &OrderRef::ClientId(client_id.clone()))
            .await
            .unwrap();
        assert_eq!(canceled.status, OrderStatus::Canceled, "{transport:?}");
        setup.venue.shutdown().await;
    }
}

#[test]
fn a_stop_order_without_a_trigger_cannot_be_built() {
    let error = OrderKind::from_fields(
        OrderType::StopLoss,
        runner::exchange::OrderFields {
            quantity: Some(1.0),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(error.contains("stop_price or trailing_delta"), "{error}");
    let error = OrderKind::from_fields(
        OrderType::StopLoss,
        runner::exchange::OrderFields {
            quantity: Some(1.0),
            price: Some(1.0),
            stop_price: Some(1.0),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(error.contains("takes no price"), "{error}");
}
