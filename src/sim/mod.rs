//! The simulated Binance-compatible exchange: the default paper-trading venue, and the ground
//! truth of the reliability tests.
//!
//! It speaks Binance spot's REST, market-stream and WebSocket-API protocols on one port, runs
//! a price-time matching engine over a seeded synthetic multi-symbol market, keeps balances
//! and filters, enforces the exchange's limits exactly (429 + Retry-After, escalating 418
//! bans) and records every request. Fault knobs inject latency, 5xx, lost answers, dropped
//! sockets, depth sequence gaps, forced 429/418, external weight and clock skew.
//!
//! - `api`: the endpoint table (weights declared per route) and handlers, shared by REST and the WebSocket API.
//! - `matching`: the exchange's state, matching and balances; `order_record`: users' orders;
//!   `symbol_state`: each symbol's book, trades and candles; `book`: the order book; `market`: the
//!   synthetic market; `order_lists`: OCO, OTO, OTOCO (judged by the client's own rules,
//!   `exchange::binance::orders::list_rules`); `stp`: self-trade prevention.
//! - `feed`: market streams published from the state; `user_reports`: execution reports and order shapes.
//! - `limiter`: the exchange's limits; `faults`: fault knobs; `record`: the request log.
//! - `rest`, `ws_market`, `ws_api`, `control`: transports (`ws_conn`: what the WebSocket ones share).

mod api;
mod api_lists;
pub(crate) mod book;
pub(crate) mod candles;
mod config;
mod control;
pub(crate) mod error;
mod faults;
mod feed;
pub(crate) mod hub;
pub(crate) mod limiter;
mod market;
pub(crate) mod matching;
pub(crate) mod num;
mod order_lists;
pub(crate) mod order_record;
mod params;
mod record;
pub(crate) mod replay;
mod rest;
mod run_state;
mod sign;
mod stats;
pub(crate) mod stp;
mod symbol_state;
mod user_reports;
mod ws_api;
mod ws_conn;
mod ws_market;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{any, get, post};
use axum::Router;
use rust_decimal::prelude::ToPrimitive;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::exchange::binance::wire::{DepthSnapshot, OrderWire};

pub use crate::exchange::binance::transport::sign::hmac_hex;
pub use config::{
    default_asset_prices, default_symbols, paper_credentials, Ed25519ApiKey, Fees, SimConfig, SymbolSpec,
    PAPER_API_KEY, PAPER_API_SECRET,
};
pub use error::SimError;
pub use faults::{AnswerMangle, FailKind, FaultControl, FaultState, FaultUpdate};
pub use limiter::{PoolStats, SimStats, WindowUsage};
pub use record::RequestRecord;

use run_state::Sim;

fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/api/v3/{*path}", any(rest::handle))
        .route("/ws", get(ws_market::raw_empty))
        .route("/ws/{*streams}", get(ws_market::raw_path))
        .route("/stream", get(ws_market::combined))
        .route("/ws-api/v3", get(ws_api::handle))
        .route("/sim/stats", get(control::stats))
        .route("/sim/faults", post(control::faults))
        .with_state(sim)
}

fn validate(config: &SimConfig) -> Result<(), SimError> {
    if let Some(key) = config.ed25519_keys.iter().find(|k| k.account >= config.accounts) {
        return Err(SimError::Config(format!(
            "the Ed25519 key {} names account {}, but the simulator serves {} account(s) (numbered from 0)",
            key.api_key, key.account, config.accounts
        )));
    }
    for spec in &config.symbols {
        for asset in [&spec.base, &spec.quote] {
            if !config.asset_prices.iter().any(|(a, p)| a == asset && *p > 0.0) {
                return Err(SimError::Config(format!(
                    "no positive starting price for asset {asset}"
                )));
            }
        }
        if spec.tick_size <= rust_decimal::Decimal::ZERO || spec.step_size <= rust_decimal::Decimal::ZERO {
            return Err(SimError::Config(format!(
                "{}: tick and step sizes must be positive",
                spec.symbol
            )));
        }
    }
    Ok(())
}

/// Serves until `shutdown` resolves: the market runs, every WebSocket is closed at the end.
async fn run(
    sim: Arc<Sim>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SimError> {
    let market = (!sim.config.market_tick.is_zero()).then(|| {
        let sim = sim.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(sim.config.market_tick);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                sim.step_market();
            }
        })
    });
    let drop_ws = sim.drop_ws.clone();
    // The peer address of each connection: the exchange counts weight per client IP.
    let service = router(sim).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, service)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Upgraded sockets are not tracked by the server: close them ourselves.
            drop_ws.send_modify(|generation| *generation += 1);
        })
        .await;
    if let Some(market) = market {
        market.abort();
    }
    served.map_err(SimError::Serve)
}

/// Runs a simulator on `listener` until `shutdown` resolves (for `runner sim --port N --seed S`).
pub async fn serve(
    config: SimConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SimError> {
    validate(&config)?;
    run(Sim::new(config), listener, shutdown).await
}

/// Starts a simulator in the background on `bind` (use `127.0.0.1:0` in tests).
pub async fn start(config: SimConfig, bind: SocketAddr) -> Result<SimHandle, SimError> {
    validate(&config)?;
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|source| SimError::Bind { addr: bind, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| SimError::Bind { addr: bind, source })?;
    let sim = Sim::new(config);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(sim.clone(), listener, async move {
        let _ = stopped.await;
    }));
    Ok(SimHandle {
        addr,
        sim,
        stop: Some(stop),
        task,
    })
}

/// A running simulator.
pub struct SimHandle {
    addr: SocketAddr,
    sim: Arc<Sim>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), SimError>>,
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`; the client appends `/api/v3/...`.
    pub fn rest_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://127.0.0.1:PORT`; the client appends `/ws/<stream>` or `/stream?streams=`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn ws_api_url(&self) -> String {
        format!("ws://{}/ws-api/v3", self.addr)
    }

    pub fn faults(&self) -> FaultControl {
        self.sim.faults.clone()
    }

    pub fn stats(&self) -> SimStats {
        self.sim.limiter.lock().stats()
    }

    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.sim.log.snapshot()
    }

    /// Every order ever placed with this client order id, oldest first.
    pub fn orders_by_client_id(&self, client_id: &str) -> Vec<OrderWire> {
        let world = self.sim.world.lock();
        world
            .ex
            .orders_by_client(client_id)
            .into_iter()
            .map(|o| world.ex.order_wire(o, true))
            .collect()
    }

    /// The simulator's current book of `symbol`, top `limit` levels per side.
    pub fn book(&self, symbol: &str, limit: usize) -> Option<DepthSnapshot> {
        let world = self.sim.world.lock();
        let i = world.ex.symbol_index(symbol)?;
        Some(world.ex.depth(i, limit))
    }

    /// Exchange time (wall clock plus any injected skew), epoch ms.
    pub fn now_ms(&self) -> i64 {
        self.sim.now()
    }

    /// One synthetic market step now (tests with `market_tick = 0` drive the market with this).
    pub fn step_market(&self) {
        self.sim.step_market();
    }

    /// Moves a symbol's fair price (its base asset is revalued); applied at the next market step.
    pub fn set_price(&self, symbol: &str, price: rust_decimal::Decimal) -> bool {
        let mut world = self.sim.world.lock();
        let run_state::World { ex, market } = &mut *world;
        match (ex.symbol_index(symbol), price.to_f64()) {
            (Some(i), Some(p)) if p > 0.0 => {
                market.set_price(ex, i, p);
                true
            }
            _ => false,
        }
    }

    /// A handle that moves this simulator's market from outside: paper trading on another
    /// exchange's market. Start the simulator with `market_tick = 0` so its own market stays still.
    pub fn market_port(&self) -> MarketPort {
        MarketPort(self.sim.clone())
    }

    /// Free and locked balance of one asset (of the first account).
    pub fn balance(&self, asset: &str) -> (rust_decimal::Decimal, rust_decimal::Decimal) {
        self.balance_of(0, asset)
    }

    /// Free and locked balance of one asset of `account`.
    pub fn balance_of(&self, account: u16, asset: &str) -> (rust_decimal::Decimal, rust_decimal::Decimal) {
        let world = self.sim.world.lock();
        let b = world.ex.balances_of(account).get(asset).copied().unwrap_or_default();
        (b.free, b.locked)
    }

    /// Orders of `account` open now.
    pub fn open_order_count(&self, account: u16) -> usize {
        let world = self.sim.world.lock();
        world
            .ex
            .orders()
            .filter(|o| o.account == account && o.status.is_open())
            .count()
    }

    /// Stops serving and closes every connection.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Moves a running simulator's market from outside (see [`SimHandle::market_port`]).
#[derive(Clone)]
pub struct MarketPort(Arc<Sim>);

impl MarketPort {
    /// Runs `change` on the engine at exchange time, then publishes what it changed (users' fills
    /// are published as they happen).
    pub(crate) fn apply<R>(&self, change: impl FnOnce(&mut matching::Exchange, i64) -> R) -> R {
        let now = self.0.now();
        let mut world = self.0.world.lock();
        let result = change(&mut world.ex, now);
        world.ex.after_change(now);
        result
    }

    /// The periodic stream output (depth diffs; klines and tickers too when `slow`) the synthetic
    /// market's steps would otherwise make.
    pub(crate) fn flush_streams(&self, slow: bool) {
        let now = self.0.now();
        let mut world = self.0.world.lock();
        world.ex.flush_streams(book::Cadence::Fast, 0, now);
        if slow {
            world.ex.flush_streams(book::Cadence::Slow, 0, now);
        }
    }

    /// The symbols the simulator lists.
    pub fn symbols(&self) -> Vec<String> {
        self.0.config.symbols.iter().map(|s| s.symbol.clone()).collect()
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
