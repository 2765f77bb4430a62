//! Start-up failures of the Binance client: missing credentials, unreachable hosts.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runner::exchange::binance::limits::pools;
use runner::exchange::binance::{
    BinanceVenue, ClientError, ClientOptions, Credentials, Profile, ProfileKind, RetryPolicy,
};
use runner::exchange::ErrorCode;
use runner::ledger::{Ledger, LedgerConfig, TokioClock};

fn ledger() -> Ledger {
    Ledger::new(
        pools::spot_defaults(),
        LedgerConfig::default(),
        Arc::new(TokioClock::new()),
    )
}

#[test]
fn missing_credentials_name_the_environment_variables() {
    for (kind, key, secret) in [
        (
            ProfileKind::Testnet,
            "BINANCE_TESTNET_API_KEY",
            "BINANCE_TESTNET_API_SECRET",
        ),
        (ProfileKind::Live, "BINANCE_API_KEY", "BINANCE_API_SECRET"),
    ] {
        let err = Credentials::from_lookup(kind, |_| None).unwrap_err().to_string();
        assert!(err.contains(key) && err.contains(secret), "{err}");
    }
}

#[test]
fn from_env_reads_the_profile_variables() {
    // The only test in this binary touching these variables.
    std::env::remove_var("BINANCE_TESTNET_API_KEY");
    std::env::remove_var("BINANCE_TESTNET_API_SECRET");
    std::env::remove_var("BINANCE_TESTNET_PRIVATE_KEY_FILE");
    let err = Credentials::from_env(ProfileKind::Testnet).unwrap_err().to_string();
    assert!(err.contains("BINANCE_TESTNET_API_KEY"), "{err}");
    std::env::set_var("BINANCE_TESTNET_API_KEY", "testkey-123456789");
    std::env::set_var("BINANCE_TESTNET_API_SECRET", "testsecret");
    let creds = Credentials::from_env(ProfileKind::Testnet).unwrap();
    assert_eq!(creds.api_key(), "testkey-123456789");
    assert!(!format!("{creds:?}").contains("testsecret"));
}

fn local_profile(port: u16) -> Profile {
    Profile::custom(
        &format!("http://127.0.0.1:{port}"),
        &format!("ws://127.0.0.1:{port}"),
        &format!("ws://127.0.0.1:{port}/ws-api/v3"),
        Credentials::new("key", "secret"),
    )
}

fn options(attempts: u32) -> ClientOptions {
    ClientOptions {
        retry: RetryPolicy {
            attempts,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        },
        request_timeout: Duration::from_secs(2),
        ..ClientOptions::default()
    }
}

#[tokio::test]
async fn an_unreachable_host_is_a_clear_network_error() {
    // A port that nothing listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        BinanceVenue::connect(local_profile(port), ledger(), options(3)),
    )
    .await
    .expect("connect must give up by itself");
    let Err(ClientError::Startup { error, what }) = result else {
        panic!("expected a start-up error");
    };
    assert_eq!((what, error.code), ("GET /api/v3/time", ErrorCode::Network), "{error}");
    assert!(
        error.message.contains(&format!("127.0.0.1:{port}")),
        "names the host: {error}"
    );
    assert!(!error.message.contains("secret"), "{error}");
}

#[tokio::test]
async fn reads_retry_a_bounded_number_of_times_with_backoff() {
    // Accepts connections and drops them at once: every attempt fails in transport.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    let started = Instant::now();
    let result = BinanceVenue::connect(local_profile(port), ledger(), options(4)).await;
    let elapsed = started.elapsed();
    let Err(ClientError::Startup { error, .. }) = result else {
        panic!("expected a start-up error");
    };
    assert_eq!(error.code, ErrorCode::Network, "{error}");
    assert_eq!(accepted.load(Ordering::SeqCst), 4, "exactly the configured attempts");
    // Backoff 100, 200, 400 ms, each at least halved by jitter: no busy loop.
    assert!(elapsed >= Duration::from_millis(350), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}
