//! Amend keep-priority and cancel-replace against the simulator: the quantity goes down in place,
//! an increase is refused locally, a replace cancels one order and places another in one request,
//! and both outcomes (or the exchange's refusal of either) reach the registry and the sink.

use std::time::Duration;

use runner::exchange::binance::transport::ws_api::OrderTransport;
use runner::exchange::binance::ClientOptions;
use runner::exchange::{grid, ErrorCode, OrderRef, OrderStatus, ReplaceMode, Venue};
use runner::sim::SimConfig;

use crate::client_support::{ctx, on_strategy_thread, resting_buy, start, start_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amend_lowers_the_quantity_and_refuses_an_increase_locally() {
    for transport in [OrderTransport::Rest, OrderTransport::WsApi] {
        let setup = start_with(
            SimConfig::default(),
            runner::exchange::binance::limits::pools::spot_defaults(),
            ClientOptions {
                order_transport: transport,
                ..ClientOptions::default()
            },
        )
        .await;
        let request = resting_buy(&setup.venue, "amend", 0.9).await;
        let placed = on_strategy_thread(&setup.venue, move |venue| async move {
            venue.place(&ctx("amend"), request).await
        })
        .await
        .expect("placed");
        let info = setup.venue.symbol("BTCUSDT").unwrap();
        let smaller = grid::round_qty(&info, placed.quantity / 2.0).unwrap();
        let id = OrderRef::ClientId(placed.client_id.clone());

        let bigger = placed.quantity * 2.0;
        let (up_id, down_id) = (id.clone(), id.clone());
        let refused = on_strategy_thread(&setup.venue, move |venue| async move {
            venue.amend(&ctx("amend"), "BTCUSDT", &up_id, bigger).await
        })
        .await
        .expect_err("an increase is refused");
        assert_eq!(refused.code, ErrorCode::InvalidOrder, "{refused}");
        assert!(refused.message.contains("only lower"), "{refused}");

        let amended = on_strategy_thread(&setup.venue, move |venue| async move {
            venue.amend(&ctx("amend"), "BTCUSDT", &down_id, smaller).await
        })
        .await
        .expect("amended");
        assert_eq!(
            (amended.client_id.as_str(), amended.status, amended.quantity),
            (placed.client_id.as_str(), OrderStatus::New, smaller),
            "{transport:?}"
        );
        // The exchange holds the same order, smaller.
        let listed = setup.venue.open_orders("amend", Some("BTCUSDT"));
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].id, listed[0].quantity), (placed.id, smaller));
        let on_exchange = setup.venue.get_order(&ctx("amend"), "BTCUSDT", &id).await.unwrap();
        assert_eq!(on_exchange.quantity, smaller);
        assert_eq!(
            setup.sink.last_order(&placed.client_id).map(|o| o.quantity),
            Some(smaller),
            "the amendment reached the sink"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_cancels_and_places_in_one_request_and_reports_both() {
    let setup = start().await;
    let first = resting_buy(&setup.venue, "replace", 0.9).await;
    let second = resting_buy(&setup.venue, "replace", 0.85).await;
    let old = on_strategy_thread(&setup.venue, move |venue| async move {
        venue.place(&ctx("replace"), first).await
    })
    .await
    .expect("placed");
    let cancel = OrderRef::ClientId(old.client_id.clone());
    let new = on_strategy_thread(&setup.venue, move |venue| async move {
        venue
            .replace(&ctx("replace"), &cancel, ReplaceMode::StopOnFailure, second)
            .await
    })
    .await
    .expect("replaced");
    assert_eq!(new.status, OrderStatus::New);
    assert_ne!(new.client_id, old.client_id);
    let gone = setup
        .sink
        .order_reaching(&old.client_id, OrderStatus::Canceled, Duration::from_secs(5))
        .await;
    assert_eq!(gone.id, old.id);
    let open = setup.venue.open_orders("replace", Some("BTCUSDT"));
    assert_eq!(
        open.iter().map(|o| o.client_id.as_str()).collect::<Vec<_>>(),
        vec![new.client_id.as_str()]
    );

    // Replacing the order just canceled: the exchange refuses the cancel (-2011) and, stopping on
    // failure, places nothing; the new order is reported REJECTED.
    let again = resting_buy(&setup.venue, "replace", 0.8).await;
    let cancel = OrderRef::ClientId(old.client_id.clone());
    let error = on_strategy_thread(&setup.venue, move |venue| async move {
        venue
            .replace(&ctx("replace"), &cancel, ReplaceMode::StopOnFailure, again)
            .await
    })
    .await
    .expect_err("the cancel fails");
    assert_eq!(
        (error.code, error.exchange_code),
        (ErrorCode::Rejected, Some(-2022)),
        "{error}"
    );
    assert!(error.message.contains("-2011"), "{error}");
    assert!(error.message.contains("NOT_ATTEMPTED"), "{error}");
    assert_eq!(setup.venue.open_orders("replace", None).len(), 1, "nothing placed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_of_an_order_never_placed_is_refused_with_the_exchanges_code() {
    let setup = start().await;
    let request = resting_buy(&setup.venue, "replace", 0.9).await;
    let error = on_strategy_thread(&setup.venue, move |venue| async move {
        venue
            .replace(
                &ctx("replace"),
                &OrderRef::ClientId("never-placed".into()),
                ReplaceMode::AllowFailure,
                request,
            )
            .await
    })
    .await
    .expect_err("unknown order");
    assert_eq!(
        (error.code, error.exchange_code),
        (ErrorCode::InvalidOrder, Some(-2011)),
        "{error}"
    );
    assert!(error.message.starts_with("Unknown order sent."), "{error}");
    assert!(setup.venue.open_orders("replace", None).is_empty(), "nothing was sent");
}
