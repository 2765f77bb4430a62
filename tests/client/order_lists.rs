//! Order lists through the client against the simulator, over REST and the WebSocket API: an OTOCO
//! whose working order fills places its pair, an OCO rests and is canceled whole, every order reaches
//! the registry and the sink with its list id, and an OCO on the wrong sides of the market is refused
//! locally with the exchange's code.

use std::time::Duration;

use runner::exchange::binance::transport::ws_api::OrderTransport;
use runner::exchange::binance::{BinanceVenue, ClientOptions};
use runner::exchange::{
    grid, ErrorCode, ListLegs, ListRef, ListRequest, OrderKind, OrderRequest, OrderStatus, Side, StopTrigger,
    TimeInForce, Venue,
};
use runner::sim::SimConfig;

use crate::client_support::{ctx, eventually, on_strategy_thread, start_with, Setup};

async fn setup(transport: OrderTransport) -> Setup {
    start_with(
        SimConfig::default(),
        runner::exchange::binance::limits::pools::spot_defaults(),
        ClientOptions {
            order_transport: transport,
            ..ClientOptions::default()
        },
    )
    .await
}

/// BTCUSDT's bid and a quantity worth about 30 USDT there.
async fn market(venue: &BinanceVenue) -> (f64, f64) {
    let quote = venue.book_ticker(&ctx("lists"), "BTCUSDT").await.unwrap();
    let info = venue.symbol("BTCUSDT").unwrap();
    (quote.bid, grid::round_qty(&info, 30.0 / quote.bid).unwrap())
}

fn price(venue: &BinanceVenue, value: f64) -> f64 {
    grid::round_price(&venue.symbol("BTCUSDT").unwrap(), value).unwrap()
}

fn limit_maker(side: Side, price: f64, quantity: f64) -> OrderRequest {
    OrderRequest::new("BTCUSDT", side, OrderKind::LimitMaker { price, quantity })
}

fn stop_loss_limit(side: Side, stop: f64, price: f64, quantity: f64) -> OrderRequest {
    OrderRequest::new(
        "BTCUSDT",
        side,
        OrderKind::StopLossLimit {
            price,
            quantity,
            tif: TimeInForce::Gtc,
            trigger: StopTrigger {
                stop_price: Some(stop),
                trailing_delta: None,
            },
        },
    )
}

fn list(legs: ListLegs<OrderRequest>) -> ListRequest {
    ListRequest {
        symbol: "BTCUSDT".into(),
        legs,
        client_id: None,
        stp: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_otoco_fills_its_working_order_then_its_pair_is_canceled_whole() {
    for transport in [OrderTransport::Rest, OrderTransport::WsApi] {
        let setup = setup(transport).await;
        let venue = &setup.venue;
        let (bid, qty) = market(venue).await;
        // The working BUY crosses the ask: it fills at once and the pair goes on the book.
        let request = list(ListLegs::Otoco {
            working: OrderRequest::limit("BTCUSDT", Side::Buy, qty, price(venue, bid * 1.02)),
            pending_above: limit_maker(Side::Sell, price(venue, bid * 1.2), qty),
            pending_below: stop_loss_limit(Side::Sell, price(venue, bid * 0.8), price(venue, bid * 0.79), qty),
        });
        let placed = on_strategy_thread(venue, move |venue| async move {
            venue.place_list(&ctx("lists"), request).await
        })
        .await
        .unwrap_or_else(|e| panic!("{transport:?}: {e}"));
        let list_id = placed.list_id.expect("the exchange's list id");
        let ListLegs::Otoco {
            working,
            pending_above,
            pending_below,
        } = &placed.orders
        else {
            panic!("an OTOCO answer")
        };
        for order in [working, pending_above, pending_below] {
            assert_eq!(order.list_id, Some(list_id), "{transport:?}: {order:?}");
        }
        setup
            .sink
            .order_reaching(&working.client_id, OrderStatus::Filled, Duration::from_secs(5))
            .await;
        for leg in [pending_above, pending_below] {
            let working = setup
                .sink
                .order_reaching(&leg.client_id, OrderStatus::New, Duration::from_secs(5))
                .await;
            assert_eq!(working.list_id, Some(list_id));
        }
        assert_eq!(venue.open_orders("lists", Some("BTCUSDT")).len(), 2);

        let canceled = on_strategy_thread(venue, move |venue| async move {
            venue.cancel_list(&ctx("lists"), "BTCUSDT", &ListRef::Id(list_id)).await
        })
        .await
        .unwrap_or_else(|e| panic!("{transport:?}: {e}"));
        assert_eq!(canceled.len(), 3);
        for leg in [pending_above, pending_below] {
            setup
                .sink
                .order_reaching(&leg.client_id, OrderStatus::Canceled, Duration::from_secs(5))
                .await;
        }
        assert!(venue.open_orders("lists", None).is_empty(), "{transport:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oco_rests_both_orders_and_a_filled_one_ends_the_other() {
    for transport in [OrderTransport::Rest, OrderTransport::WsApi] {
        let setup = setup(transport).await;
        let venue = &setup.venue;
        let (bid, qty) = market(venue).await;
        let request = list(ListLegs::Oco {
            above: limit_maker(Side::Sell, price(venue, bid * 1.03), qty),
            below: stop_loss_limit(Side::Sell, price(venue, bid * 0.97), price(venue, bid * 0.96), qty),
        });
        let placed = on_strategy_thread(venue, move |venue| async move {
            venue.place_list(&ctx("lists"), request).await
        })
        .await
        .unwrap_or_else(|e| panic!("{transport:?}: {e}"));
        let ListLegs::Oco { above, below } = &placed.orders else {
            panic!("an OCO answer")
        };
        assert_eq!((above.status, below.status), (OrderStatus::New, OrderStatus::New));
        assert!(above.list_id.is_some() && above.list_id == below.list_id);
        assert_eq!(setup.sim.orders_by_client_id(&above.client_id).len(), 1);

        // The market rises through the limit-maker: it fills and its stop-loss expires.
        setup
            .sim
            .set_price("BTCUSDT", rust_decimal::Decimal::try_from(bid * 1.1).unwrap());
        setup
            .sink
            .order_reaching(&above.client_id, OrderStatus::Filled, Duration::from_secs(10))
            .await;
        setup
            .sink
            .order_reaching(&below.client_id, OrderStatus::Expired, Duration::from_secs(5))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contradicting_lists_are_refused_locally_and_nothing_is_sent() {
    let setup = setup(OrderTransport::Rest).await;
    let venue = &setup.venue;
    // The mid price the check uses comes from the streamed quote.
    venue
        .set_subscriptions(
            &"lists".into(),
            vec![runner::exchange::StreamKey {
                symbol: "BTCUSDT".into(),
                kind: runner::exchange::StreamKind::Book,
            }],
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "a streamed quote", || {
        let quote = venue.quote("BTCUSDT");
        async move { quote }
    })
    .await;
    let (bid, qty) = market(venue).await;
    let sent_before = setup.sim.request_log().len();
    // Both above the market.
    let wrong_sides = list(ListLegs::Oco {
        above: limit_maker(Side::Sell, price(venue, bid * 1.1), qty),
        below: stop_loss_limit(Side::Sell, price(venue, bid * 1.05), price(venue, bid * 1.04), qty),
    });
    let error = on_strategy_thread(venue, move |venue| async move {
        venue.place_list(&ctx("lists"), wrong_sides).await
    })
    .await
    .expect_err("refused");
    assert_eq!(
        (error.code, error.exchange_code),
        (ErrorCode::InvalidOrder, Some(-2010)),
        "{error}"
    );
    assert!(
        error
            .message
            .starts_with("The relationship of the prices for the orders is not correct."),
        "{error}"
    );
    // A stop-loss above in a sell OCO.
    let swapped = list(ListLegs::Oco {
        above: stop_loss_limit(Side::Sell, price(venue, bid * 1.05), price(venue, bid * 1.04), qty),
        below: limit_maker(Side::Sell, price(venue, bid * 0.9), qty),
    });
    let error = on_strategy_thread(venue, move |venue| async move {
        venue.place_list(&ctx("lists"), swapped).await
    })
    .await
    .expect_err("refused");
    assert_eq!(error.exchange_code, Some(-1197), "{error}");
    assert!(venue.open_orders("lists", None).is_empty(), "nothing registered");
    let lists_sent = setup.sim.request_log()[sent_before..]
        .iter()
        .filter(|r| format!("{r:?}").contains("orderList"))
        .count();
    assert_eq!(lists_sent, 0, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_risk_guard_values_a_list_by_what_can_fill_and_counts_each_order() {
    use runner::exchange::risk::{RiskGuard, RiskLimits};
    use std::collections::BTreeMap;

    let setup = setup(OrderTransport::Rest).await;
    let venue = &setup.venue;
    // Each order is worth about 30 USDT.
    let (bid, qty) = market(venue).await;
    let cap = |max_open_orders| RiskLimits {
        max_order_notional: BTreeMap::from([("USDT".to_string(), 40.0)]),
        max_open_orders,
    };
    let oco = || {
        list(ListLegs::Oco {
            above: limit_maker(Side::Sell, price(venue, bid * 1.03), qty),
            below: stop_loss_limit(Side::Sell, price(venue, bid * 0.97), price(venue, bid * 0.96), qty),
        })
    };
    // An OCO trades one of its orders at most: about 31 USDT, within the cap (its two orders sum to 60).
    let guard = RiskGuard::new(venue.clone(), cap(Some(3)));
    let placed = guard.place_list(&ctx("risk"), oco()).await.expect("within the limits");
    assert!(placed.list_id.is_some());
    // A second list would make four open orders.
    let error = guard
        .place_list(&ctx("risk"), oco())
        .await
        .expect_err("over max_open_orders");
    assert!(error.message.contains("max_open_orders"), "{error}");

    // Both orders of an OTO can fill: about 27 + 33 USDT, over the cap.
    let oto = list(ListLegs::Oto {
        working: OrderRequest::limit("BTCUSDT", Side::Buy, qty, price(venue, bid * 0.9)),
        pending: limit_maker(Side::Sell, price(venue, bid * 1.1), qty),
    });
    let error = RiskGuard::new(venue.clone(), cap(None))
        .place_list(&ctx("risk-2"), oto)
        .await
        .expect_err("over the cap");
    assert_eq!(error.code, ErrorCode::InvalidOrder, "{error}");
    assert!(error.message.contains("max_order_notional 40 USDT"), "{error}");
    assert!(venue.open_orders("risk-2", None).is_empty(), "nothing was sent");
}
