//! Shared set-up for the client's integration tests: a simulator on loopback, a
//! ledger, a connected `BinanceVenue` and a sink that records what it is told.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use runner::exchange::binance::limits::pools;
use runner::exchange::binance::{BinanceVenue, ClientOptions, Credentials, Profile};
use runner::exchange::{grid, CallCtx, EventSink, MarketEvent, Order, OrderRequest, OrderStatus, Side, Venue};
use runner::ledger::{Ledger, LedgerConfig, RateLimit, TokioClock};
use runner::sim::{self, SimConfig, SimHandle};
use tokio::sync::Notify;

/// Records every event; tests wait on it with [`eventually`].
#[derive(Default)]
pub struct RecordingSink {
    pub orders: Mutex<Vec<Order>>,
    pub market: Mutex<Vec<MarketEvent>>,
    pub balance_changes: Mutex<u64>,
    pub notify: Notify,
}

impl EventSink for RecordingSink {
    fn market(&self, event: MarketEvent) {
        self.market.lock().push(event);
        self.notify.notify_waiters();
    }

    fn order(&self, order: Order) {
        self.orders.lock().push(order);
        self.notify.notify_waiters();
    }

    fn balances_changed(&self) {
        *self.balance_changes.lock() += 1;
        self.notify.notify_waiters();
    }
}

impl RecordingSink {
    /// The last event seen for `client_id`.
    pub fn last_order(&self, client_id: &str) -> Option<Order> {
        self.orders
            .lock()
            .iter()
            .rev()
            .find(|o| o.client_id == client_id)
            .cloned()
    }

    /// Waits until the last event seen for `client_id` has `status`, and returns that order.
    pub async fn order_reaching(&self, client_id: &str, status: OrderStatus, timeout: Duration) -> Order {
        let what = format!("{status:?} for {client_id} through the sink");
        eventually(timeout, &what, || {
            let last = self.last_order(client_id);
            async move { last.filter(|o| o.status == status) }
        })
        .await
    }

    pub fn statuses(&self, client_id: &str) -> Vec<OrderStatus> {
        self.orders
            .lock()
            .iter()
            .filter(|o| o.client_id == client_id)
            .map(|o| o.status)
            .collect()
    }
}

/// Polls `check` until it returns `Some`, failing the test after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct Setup {
    pub sim: SimHandle,
    pub ledger: Ledger,
    pub venue: Arc<BinanceVenue>,
    pub sink: Arc<RecordingSink>,
}

pub fn ctx(strategy: &str) -> CallCtx {
    CallCtx::new(strategy, Duration::from_secs(5))
}

/// A BTCUSDT BUY resting at `factor` × the bid (read as `strategy`), worth about 30 USDT.
pub async fn resting_buy(venue: &BinanceVenue, strategy: &str, factor: f64) -> OrderRequest {
    let info = venue.symbol("BTCUSDT").expect("BTCUSDT listed");
    let quote = venue.book_ticker(&ctx(strategy), "BTCUSDT").await.unwrap();
    let price = grid::round_price(&info, quote.bid * factor).unwrap();
    let qty = grid::round_qty(&info, 30.0 / price).unwrap();
    OrderRequest::limit("BTCUSDT", Side::Buy, qty, price)
}

pub fn paper_profile(sim: &SimHandle) -> Profile {
    Profile::paper(
        &sim.rest_url(),
        &sim.ws_url(),
        &sim.ws_api_url(),
        Credentials::new(sim::PAPER_API_KEY, sim::PAPER_API_SECRET),
    )
}

/// Starts `venue`'s streams into a new recording sink and waits for the user-data stream.
pub async fn start_streams(venue: &BinanceVenue) -> Arc<RecordingSink> {
    let sink = Arc::new(RecordingSink::default());
    runner::exchange::Venue::start(venue, sink.clone())
        .await
        .expect("streams start");
    eventually(Duration::from_secs(10), "the user-data stream", || {
        let up = venue.user_stream_up();
        async move { up.then_some(()) }
    })
    .await;
    sink
}

/// Starts `work` as a strategy runs its calls: on a thread of its own, with a current-thread runtime.
pub fn strategy_thread<T, F, Fut>(venue: &Arc<BinanceVenue>, work: F) -> tokio::task::JoinHandle<T>
where
    F: FnOnce(Arc<BinanceVenue>) -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let venue = Arc::clone(venue);
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
        runtime.block_on(work(venue))
    })
}

/// [`strategy_thread`], awaited.
pub async fn on_strategy_thread<T, F, Fut>(venue: &Arc<BinanceVenue>, work: F) -> T
where
    F: FnOnce(Arc<BinanceVenue>) -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    strategy_thread(venue, work).await.expect("the strategy thread ran")
}

pub async fn start_with(config: SimConfig, ledger_limits: Vec<RateLimit>, options: ClientOptions) -> Setup {
    let sim = sim::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts");
    let ledger = Ledger::new(ledger_limits, LedgerConfig::default(), Arc::new(TokioClock::new()));
    let venue = BinanceVenue::connect(paper_profile(&sim), ledger.clone(), options)
        .await
        .expect("client connects to the simulator");
    // Tests inject faults into "the next request": let the start-up traffic settle first.
    let sink = start_streams(&venue).await;
    Setup {
        sim,
        ledger,
        venue,
        sink,
    }
}

pub async fn start() -> Setup {
    start_with(SimConfig::default(), pools::spot_defaults(), ClientOptions::default()).await
}
