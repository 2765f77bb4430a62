//! Paper trading on a real market talks to two servers, and the ledger keeps each one's pools apart:
//! market data spends the source's budget (and only the source's answers reconcile it), paper orders
//! and account requests spend the paper exchange's. The source here is a second simulator on loopback.

use std::sync::Arc;
use std::time::Duration;

use runner::exchange::binance::limits::pools::{self, IP, SOURCE_IP};
use runner::exchange::binance::{BinanceVenue, ClientOptions, Credentials, Profile};
use runner::exchange::{CallCtx, ErrorCode, OrderRequest, OrderStatus, Side, Venue};
use runner::ledger::{IntervalUnit, Ledger, LedgerConfig, PoolKind, RateLimit, Scope, TokioClock};
use runner::sim::{self, SimConfig, SimHandle};

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
/// The source's daily request-weight limit: four depth requests of weight 250.
const SOURCE_DAILY_WEIGHT: u64 = 1_000;

struct TwoServers {
    /// The market: public data and streams only.
    source: SimHandle,
    /// Where the orders go.
    paper: SimHandle,
    venue: Arc<BinanceVenue>,
    ledger: Ledger,
}

impl TwoServers {
    /// A venue wired as `--paper --market URL` wires it: orders, account and WebSocket API on the
    /// paper exchange, public market data from the source, one ledger with both servers' pools.
    async fn start() -> TwoServers {
        let still = |limits| SimConfig {
            market_tick: Duration::ZERO,
            limits,
            ..SimConfig::default()
        };
        // The source announces a small daily weight limit beside the usual minute one.
        let mut source_limits = pools::spot_defaults();
        source_limits
            .push(RateLimit::new(PoolKind::RequestWeight, IntervalUnit::Day, 1, SOURCE_DAILY_WEIGHT).scoped(IP));
        let source = sim::start(still(source_limits), ([127, 0, 0, 1], 0).into())
            .await
            .unwrap();
        let paper = sim::start(still(pools::spot_defaults()), ([127, 0, 0, 1], 0).into())
            .await
            .unwrap();
        let profile = Profile::paper(
            &paper.rest_url(),
            &source.ws_url(),
            &paper.ws_api_url(),
            Credentials::new(sim::PAPER_API_KEY, sim::PAPER_API_SECRET),
        )
        .with_market_rest(&source.rest_url());
        let ledger = Ledger::new(
            pools::with_source_pools(pools::spot_defaults()),
            LedgerConfig::default(),
            Arc::new(TokioClock::new()),
        );
        let venue = BinanceVenue::connect(profile, ledger.clone(), ClientOptions::default())
            .await
            .unwrap();
        TwoServers {
            source,
            paper,
            venue,
            ledger,
        }
    }

    /// The ledger's count of the request-weight pool of `scope` and window `window_ms`.
    fn weight(&self, scope: Scope, window_ms: i64) -> Option<(u64, u64)> {
        self.ledger
            .status("")
            .pools
            .iter()
            .find(|p| p.kind == PoolKind::RequestWeight && p.scope == scope && p.interval.millis() == window_ms)
            .map(|p| (p.used, p.limit))
    }

    async fn stop(self) {
        self.venue.shutdown().await;
        self.source.shutdown().await;
        self.paper.shutdown().await;
    }
}

/// A resting BTCUSDT buy well under the paper exchange's market (about 30 USDT).
fn resting_buy() -> OrderRequest {
    OrderRequest::limit("BTCUSDT", Side::Buy, 0.001, 30_000.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn market_data_is_rate_limited_by_the_sources_pools_while_paper_orders_still_go_through() {
    let servers = TwoServers::start().await;
    // The source's announced limits became its pools; the paper exchange's stayed Binance's.
    assert_eq!(
        servers.weight(SOURCE_IP, DAY_MS).map(|(_, limit)| limit),
        Some(SOURCE_DAILY_WEIGHT)
    );
    assert_eq!(servers.weight(IP, MINUTE_MS).map(|(_, limit)| limit), Some(6_000));
    assert_eq!(
        servers.weight(IP, DAY_MS),
        None,
        "the source's daily limit is not the paper exchange's"
    );

    // A hostile caller asks for the dearest depth (weight 250) without waiting, until refused.
    let hostile = CallCtx::new("hostile", Duration::ZERO);
    let mut answered = 0u64;
    let refusal = loop {
        match servers.venue.depth(&hostile, "BTCUSDT", 5000).await {
            Ok(_) => answered += 1,
            Err(e) => break e,
        }
        assert!(
            answered <= 4,
            "more depth answers than the source's daily weight allows"
        );
    };
    assert_eq!(refusal.code, ErrorCode::RateLimited, "{refusal:?}");
    assert!(answered >= 1, "the first depth request fits the source's budget");

    // What the source saw proves the pools were its own: exactly the answered requests, no 429,
    // and the ledger's count of the source's day is the source's own count.
    let seen = servers.source.request_log();
    let depth_weight: u64 = seen
        .iter()
        .filter(|r| r.path == "/api/v3/depth")
        .map(|r| r.weight)
        .sum();
    assert_eq!(depth_weight, answered * 250, "{seen:?}");
    let source_stats = servers.source.stats();
    assert_eq!(source_stats.count_429 + source_stats.count_418, 0);
    let source_day = source_stats
        .pools
        .iter()
        .find(|p| p.kind == PoolKind::RequestWeight && p.limit == SOURCE_DAILY_WEIGHT)
        .map(|p| p.current)
        .unwrap();
    let (ledger_day, _) = servers.weight(SOURCE_IP, DAY_MS).unwrap();
    assert_eq!(ledger_day, source_day, "the ledger counts what the source counted");
    assert!(
        servers.paper.request_log().iter().all(|r| r.path != "/api/v3/depth"),
        "no market-data request went to the paper exchange"
    );
    // None of the depth weight landed on the paper exchange's pool.
    let (local_minute, _) = servers.weight(IP, MINUTE_MS).unwrap();
    assert!(local_minute < 250, "the paper exchange's pool holds {local_minute}");

    // The same caller's paper orders go through: they spend the paper exchange's budget only.
    let trader = CallCtx::new("hostile", Duration::from_secs(5));
    for _ in 0..3 {
        let order = servers.venue.place(&trader, resting_buy()).await.unwrap();
        assert_eq!(order.status, OrderStatus::New, "{order:?}");
    }
    assert_eq!(servers.paper.stats().orders_placed, 3);
    assert_eq!(servers.source.stats().orders_placed, 0, "no order reached the source");
    assert_eq!(
        servers.weight(SOURCE_IP, DAY_MS).map(|(used, _)| used),
        Some(ledger_day),
        "paper orders spent none of the source's budget"
    );
    let order_pools: Vec<Scope> = servers
        .ledger
        .status("")
        .pools
        .iter()
        .filter(|p| p.kind == PoolKind::Orders)
        .map(|p| p.scope)
        .collect();
    assert!(
        order_pools.iter().all(|s| *s == pools::ACCOUNT),
        "only the paper account's order pools: {order_pools:?}"
    );
    servers.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_paper_exchanges_usage_headers_reconcile_its_own_pools_never_the_sources() {
    let servers = TwoServers::start().await;
    // Others on the paper exchange's IP have spent 4 000 of its weight this minute: its usage
    // headers now say so on every answer.
    servers.paper.faults().add_external_weight(4_000);
    let order = servers
        .venue
        .place(&CallCtx::new("trader", Duration::from_secs(5)), resting_buy())
        .await
        .unwrap();
    assert_eq!(order.status, OrderStatus::New);
    let (local_minute, _) = servers.weight(IP, MINUTE_MS).unwrap();
    assert!(
        local_minute >= 4_000,
        "the paper exchange's X-MBX-USED-WEIGHT-1M reconciles its own pool: {local_minute}"
    );
    let (source_minute, _) = servers.weight(SOURCE_IP, MINUTE_MS).unwrap();
    assert!(
        source_minute < 4_000,
        "the paper exchange's usage headers raised the source's pool to {source_minute}"
    );

    // And the other way round: only the source's answers reconcile the source's pools.
    servers.source.faults().add_external_weight(500);
    servers
        .venue
        .depth(&CallCtx::new("trader", Duration::from_secs(5)), "BTCUSDT", 5)
        .await
        .unwrap();
    let (source_day, _) = servers.weight(SOURCE_IP, DAY_MS).unwrap();
    assert!(source_day >= 500, "the source's header raised its pool: {source_day}");
    let (local_after, _) = servers.weight(IP, MINUTE_MS).unwrap();
    assert!(
        local_after <= local_minute,
        "a market-data request charged the paper exchange's pool: {local_minute} -> {local_after}"
    );
    servers.stop().await;
}
