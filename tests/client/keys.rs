//! Ed25519 API keys against the simulator: every signed call (REST, WebSocket API orders, the
//! user-data subscription) carries a base64 Ed25519 signature that the simulator verifies with the
//! key's public half; a request signed with another key is refused and nothing is placed.

use std::sync::Arc;

use crate::client_support::{ctx, on_strategy_thread, resting_buy, start_streams};
use ed25519_dalek::SigningKey;
use runner::exchange::binance::limits::pools;
use runner::exchange::binance::transport::sign::Signer;
use runner::exchange::binance::transport::ws_api::OrderTransport;
use runner::exchange::binance::{BinanceVenue, ClientOptions, Credentials, Profile};
use runner::exchange::{OrderRef, OrderStatus, Venue};
use runner::ledger::{Ledger, LedgerConfig, TokioClock};
use runner::sim::{self, Ed25519ApiKey, SimConfig, SimHandle};

const API_KEY: &str = "ed25519-test-key";

/// A deterministic key: the same seed, the same key pair.
fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// The simulator, knowing `API_KEY` as the public half of `key(1)`.
async fn exchange() -> SimHandle {
    let config = SimConfig {
        ed25519_keys: vec![Ed25519ApiKey {
            api_key: API_KEY.into(),
            public_key: key(1).verifying_key(),
            account: 0,
        }],
        ..SimConfig::default()
    };
    sim::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts")
}

/// The client, signing as `API_KEY` with `key(seed)`.
async fn connect(sim: &SimHandle, seed: u8, order_transport: OrderTransport) -> Result<Arc<BinanceVenue>, String> {
    let credentials = Credentials::with_signer(API_KEY, Signer::Ed25519(Arc::new(key(seed))));
    let profile = Profile::paper(&sim.rest_url(), &sim.ws_url(), &sim.ws_api_url(), credentials);
    let ledger = Ledger::new(
        pools::spot_defaults(),
        LedgerConfig::default(),
        Arc::new(TokioClock::new()),
    );
    let options = ClientOptions {
        order_transport,
        ..ClientOptions::default()
    };
    BinanceVenue::connect(profile, ledger, options)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ed25519_key_signs_every_call_over_rest_and_the_websocket_api() {
    for transport in [OrderTransport::Rest, OrderTransport::WsApi] {
        let sim = exchange().await;
        let venue = connect(&sim, 1, transport).await.expect("signed start-up calls pass");
        // The user-data subscription is a signed WebSocket API request.
        start_streams(&venue).await;

        let request = resting_buy(&venue, "maker", 0.9).await;
        let (placed, canceled) = on_strategy_thread(&venue, |venue| async move {
            let ctx = ctx("maker");
            let placed = venue.place(&ctx, request).await.expect("order placed");
            let canceled = venue
                .cancel(&ctx, "BTCUSDT", &OrderRef::ClientId(placed.client_id.clone()))
                .await
                .expect("order cancelled");
            (placed, canceled)
        })
        .await;
        assert_eq!(
            (placed.status, canceled.status),
            (OrderStatus::New, OrderStatus::Canceled),
            "{transport:?}"
        );

        let log = sim.request_log();
        let order_calls: Vec<_> = log
            .iter()
            .filter(|r| r.method == "order.place" || (r.path == "/api/v3/order" && r.method == "POST"))
            .collect();
        assert_eq!(order_calls.len(), 1, "{transport:?}: {log:?}");
        let expected = match transport {
            OrderTransport::Rest => "REST",
            OrderTransport::WsApi => "WS_API",
        };
        assert_eq!((order_calls[0].transport, order_calls[0].status), (expected, 200));
        assert!(log.iter().all(|r| r.status < 400), "{transport:?}: {log:?}");
        venue.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_signed_with_another_key_is_refused() {
    let sim = exchange().await;
    let err = match connect(&sim, 2, OrderTransport::Rest).await {
        Ok(_) => panic!("the start-up's signed call passed with the wrong key"),
        Err(e) => e,
    };
    assert!(err.contains("Signature for this request is not valid"), "{err}");
    let log = sim.request_log();
    let refused: Vec<_> = log.iter().filter(|r| r.status == 400).collect();
    assert_eq!(refused.len(), 1, "{log:?}");
    assert_eq!(refused[0].path, "/api/v3/account");
}
