//! Shared by the host tests (`#[path]`-included): a test double of the `Venue` trait
//! and helpers. Strategies report what they saw by placing orders whose client id
//! carries the message; the double records them.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use runner::exchange::binance::orders::symbols::ValidOrder;
use runner::exchange::risk::Approved;
use runner::exchange::*;
use runner::ledger::{BackoffState, LedgerStatus, StrategyUsage};
use rust_decimal::Decimal;

pub struct TestVenue {
    symbols: BTreeMap<String, SymbolInfo>,
    pub quotes: Mutex<HashMap<String, Quote>>,
    pub placed: Mutex<Vec<(String, OrderRequest, CallCtx)>>,
    pub calls: Mutex<Vec<String>>,
    pub subscriptions: Mutex<HashMap<String, Vec<StreamKey>>>,
    /// Every exchange call waits this long (on the main runtime).
    pub latency: Mutex<Duration>,
    /// The next exchange call fails with this.
    pub fail_next: Mutex<Option<ApiError>>,
    next_id: AtomicU64,
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn info(symbol: &str, base: &str, quote: &str) -> SymbolInfo {
    SymbolInfo {
        symbol: symbol.into(),
        base: base.into(),
        quote: quote.into(),
        status: "TRADING".into(),
        tick_size: d("0.01"),
        min_price: d("0.01"),
        max_price: d("1000000"),
        step_size: d("0.0001"),
        min_qty: d("0.0001"),
        max_qty: d("9000"),
        market_step_size: d("0"),
        market_min_qty: d("0"),
        market_max_qty: d("0"),
        min_notional: d("5"),
        apply_min_to_market: true,
        max_notional: d("0"),
        apply_max_to_market: false,
        max_num_orders: Some(200),
        base_precision: 8,
        quote_precision: 8,
    }
}

impl TestVenue {
    pub fn new() -> Arc<TestVenue> {
        let symbols = [
            info("BTCUSDT", "BTC", "USDT"),
            info("ETHUSDT", "ETH", "USDT"),
            info("ETHBTC", "ETH", "BTC"),
        ]
        .into_iter()
        .map(|i| (i.symbol.clone(), i))
        .collect();
        Arc::new(TestVenue {
            symbols,
            quotes: Mutex::new(HashMap::new()),
            placed: Mutex::new(Vec::new()),
            calls: Mutex::new(Vec::new()),
            subscriptions: Mutex::new(HashMap::new()),
            latency: Mutex::new(Duration::ZERO),
            fail_next: Mutex::new(None),
            next_id: AtomicU64::new(1),
        })
    }

    /// Client ids of orders placed by `strategy` that start with `prefix`.
    pub fn reports(&self, strategy: &str, prefix: &str) -> Vec<String> {
        self.placed
            .lock()
            .iter()
            .filter(|(s, r, _)| s == strategy && r.client_id.as_ref().is_some_and(|c| c.as_str().starts_with(prefix)))
            .map(|(_, r, _)| r.client_id.as_ref().map(ClientOrderId::to_string).unwrap_or_default())
            .collect()
    }

    pub fn all_reports(&self, strategy: &str) -> Vec<String> {
        self.reports(strategy, "")
    }

    async fn exchange(&self, call: String) -> Result<(), ApiError> {
        self.calls.lock().push(call);
        let latency = *self.latency.lock();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match self.fail_next.lock().take() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    pub fn order_for(&self, strategy: &str, request: &OrderRequest) -> Order {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        Order {
            client_id: request
                .client_id
                .as_ref()
                .map_or_else(|| format!("c{id}"), ClientOrderId::to_string),
            symbol: request.symbol.clone(),
            side: request.side,
            order_type: request.kind.order_type(),
            tif: request.kind.tif(),
            price: request.kind.price().unwrap_or(0.0),
            quantity: request.kind.quantity().unwrap_or(0.0),
            ..order(strategy, id)
        }
    }
}

/// A LIMIT BUY of 1 BTCUSDT at 1.0, NEW on the exchange, with exchange id `id` and client id `c{id}`.
pub fn order(strategy: &str, id: u64) -> Order {
    Order {
        strategy: strategy.into(),
        id: Some(id),
        client_id: format!("c{id}"),
        symbol: "BTCUSDT".into(),
        side: Side::Buy,
        order_type: OrderType::Limit,
        tif: None,
        status: OrderStatus::New,
        price: 1.0,
        quantity: 1.0,
        filled_qty: 0.0,
        filled_quote: 0.0,
        avg_price: 0.0,
        last_fill_qty: 0.0,
        last_fill_price: 0.0,
        last_commission: 0.0,
        commission_asset: None,
        reject_reason: None,
        time: 1,
        update_time: 1,
        stop_price: None,
        list_id: None,
    }
}

pub fn quote(symbol: &str, bid: f64, update_id: u64) -> Quote {
    Quote {
        symbol: symbol.into(),
        bid,
        bid_qty: 1.5,
        ask: bid + 0.5,
        ask_qty: 2.5,
        update_id,
        time: 1_700_000_000_000,
    }
}

#[async_trait]
impl Venue for TestVenue {
    fn name(&self) -> &str {
        "test"
    }
    fn now_ms(&self) -> i64 {
        1_700_000_000_123
    }
    fn symbol(&self, symbol: &str) -> Option<SymbolInfo> {
        self.symbols.get(symbol).cloned()
    }
    fn symbols(&self) -> Vec<String> {
        self.symbols.keys().cloned().collect()
    }
    async fn ticker(&self, _: &CallCtx, symbol: &str) -> Result<Ticker, ApiError> {
        self.exchange(format!("ticker {symbol}")).await?;
        Ok(Ticker {
            symbol: symbol.into(),
            price: 100.25,
        })
    }
    async fn book_ticker(&self, _: &CallCtx, symbol: &str) -> Result<Quote, ApiError> {
        self.exchange(format!("book_ticker {symbol}")).await?;
        Ok(quote(symbol, 100.0, 7))
    }
    async fn depth(&self, ctx: &CallCtx, symbol: &str, limit: u32) -> Result<Depth, ApiError> {
        self.exchange(format!("depth {symbol} {limit} {}", ctx.wait.as_millis()))
            .await?;
        Ok(Depth {
            symbol: symbol.into(),
            update_id: 9,
            bids: vec![(100.0, 1.0), (99.5, 2.0)],
            asks: vec![(100.5, 3.0)],
        })
    }
    async fn klines(&self, _: &CallCtx, symbol: &str, interval: &str, limit: u32) -> Result<Vec<Kline>, ApiError> {
        self.exchange(format!("klines {symbol} {interval} {limit}")).await?;
        Ok(vec![Kline {
            open_time: 60_000,
            open: 1.0,
            high: 2.0,
            low: 0.5,
            close: 1.5,
            volume: 10.0,
            close_time: 119_999,
        }])
    }
    async fn trades(&self, _: &CallCtx, symbol: &str, limit: u32) -> Result<Vec<Trade>, ApiError> {
        self.exchange(format!("trades {symbol} {limit}")).await?;
        Ok(vec![Trade {
            symbol: symbol.into(),
            id: 5,
            price: 100.0,
            qty: 0.5,
            time: 3,
            buyer_maker: true,
        }])
    }
    async fn place(&self, ctx: &CallCtx, request: OrderRequest) -> Result<Order, ApiError> {
        self.exchange(format!("place {}", request.symbol)).await?;
        let order = self.order_for(&ctx.strategy, &request);
        self.placed
            .lock()
            .push((ctx.strategy.to_string(), request, ctx.clone()));
        Ok(order)
    }
    /// The symbol's real filter check.
    fn validate(&self, request: &OrderRequest) -> Result<ValidOrder, ApiError> {
        let info = self
            .symbols
            .get(&request.symbol)
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidOrder, "unknown symbol"))?;
        runner::exchange::binance::orders::symbols::validate(info, request, None)
    }
    /// An approved order, as `place` answers it (not recorded among the placed requests).
    async fn send(
        &self,
        ctx: &CallCtx,
        client_id: Option<ClientOrderId>,
        order: Approved<ValidOrder>,
    ) -> Result<Order, ApiError> {
        let valid = order.into_inner();
        self.exchange(format!("send {}", valid.symbol())).await?;
        let number = |d: Option<Decimal>| d.and_then(|d| d.to_string().parse().ok()).unwrap_or(0.0);
        let mut request = OrderRequest::limit(
            valid.symbol(),
            valid.side(),
            number(valid.kind().quantity()),
            number(valid.kind().price()),
        );
        request.client_id = client_id;
        Ok(self.order_for(&ctx.strategy, &request))
    }
    async fn cancel(&self, ctx: &CallCtx, symbol: &str, order: &OrderRef) -> Result<Order, ApiError> {
        self.exchange(format!("cancel {symbol} {order:?}")).await?;
        let mut request = OrderRequest::limit(symbol, Side::Buy, 1.0, 1.0);
        request.client_id = match order {
            OrderRef::ClientId(c) => ClientOrderId::new(c.as_str()).ok(),
            OrderRef::Id(_) => None,
        };
        let mut order = self.order_for(&ctx.strategy, &request);
        order.status = OrderStatus::Canceled;
        Ok(order)
    }
    async fn cancel_all(&self, _: &CallCtx, symbol: &str) -> Result<Vec<Order>, ApiError> {
        self.exchange(format!("cancel_all {symbol}")).await?;
        Ok(Vec::new())
    }
    async fn get_order(&self, ctx: &CallCtx, symbol: &str, order: &OrderRef) -> Result<Order, ApiError> {
        self.exchange(format!("get_order {symbol} {order:?}")).await?;
        let request = OrderRequest::limit(symbol, Side::Sell, 1.0, 1.0);
        Ok(self.order_for(&ctx.strategy, &request))
    }
    fn open_orders(&self, strategy: &str, symbol: Option<&str>) -> Vec<Order> {
        self.placed
            .lock()
            .iter()
            .filter(|(s, r, _)| s == strategy && symbol.is_none_or(|sym| sym == r.symbol))
            .map(|(s, r, _)| self.order_for(s, r))
            .collect()
    }
    fn balances(&self) -> BTreeMap<String, Balance> {
        BTreeMap::from([(
            "USDT".to_string(),
            Balance {
                free: 1000.0,
                locked: 5.0,
            },
        )])
    }
    fn quote(&self, symbol: &str) -> Option<Quote> {
        self.quotes.lock().get(symbol).cloned()
    }
    fn book(&self, symbol: &str, levels: usize) -> Option<Depth> {
        (symbol == "BTCUSDT").then(|| Depth {
            symbol: symbol.into(),
            update_id: 11,
            bids: vec![(100.0, 1.0); levels.min(3)],
            asks: vec![(101.0, 1.0); levels.min(3)],
        })
    }
    async fn set_subscriptions(&self, strategy: &StrategyId, streams: Vec<StreamKey>) -> Result<(), ApiError> {
        self.subscriptions.lock().insert(strategy.to_string(), streams);
        Ok(())
    }
    fn ledger_status(&self, _: &str) -> LedgerStatus {
        LedgerStatus {
            now_ms: 0,
            state: BackoffState::Normal,
            resume_at_ms: None,
            pools: Vec::new(),
            scope_names: Vec::new(),
            mine: StrategyUsage {
                weight: 12,
                orders: 3,
                total_weight: 40,
                total_orders: 5,
            },
            throttled_count: 0,
            banned_count: 0,
            sharing: None,
        }
    }
    async fn start(&self, _: Arc<dyn EventSink>) -> Result<(), ApiError> {
        Ok(())
    }
    async fn shutdown(&self) {}
}

/// A folder of strategy files for one test.
#[derive(Default)]
pub struct Files {
    pub dir: TempDir,
}

/// A fresh temporary folder (removed when dropped).
pub struct TempDir(tempfile::TempDir);

impl Default for TempDir {
    fn default() -> Self {
        TempDir(tempfile::tempdir().expect("temporary folder"))
    }
}

impl Files {
    pub fn new() -> Files {
        Files::default()
    }

    pub fn write(&self, name: &str, source: &str) -> PathBuf {
        let path = self.dir.0.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, source).unwrap();
        path
    }

    pub fn path(&self) -> &Path {
        self.dir.0.path()
    }
}

/// Polls `condition` every few ms; panics with `what` after `timeout`.
pub async fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Lua that reports `text` (a string expression) through an order's client id.
pub fn report(text: &str) -> String {
    format!(r#"orders.place{{symbol = "BTCUSDT", side = "BUY", type = "MARKET", quantity = 1, client_id = {text}}}"#)
}

pub fn stats(host: &runner::host::Host, name: &str) -> runner::host::StrategyStats {
    host.stats()
        .into_iter()
        .find(|s| s.name == name)
        .expect("strategy stats")
}

pub fn config(files: &Files) -> runner::host::HostConfig {
    runner::host::HostConfig {
        stdlib_dir: files.path().join("stdlib"),
        ..Default::default()
    }
}

/// [`config`], with strategy state saved under `state/` in `files`.
pub fn saving_config(files: &Files) -> runner::host::HostConfig {
    runner::host::HostConfig {
        state_dir: Some(files.path().join("state")),
        ..config(files)
    }
}

/// The strategy `source`, as `probe.lua` in `dir`, loaded straight into a VM with the real API over a [`TestVenue`]
/// and the shipped stdlib, for probing the API from Rust. There is no runtime, so exchange calls are unavailable;
/// the instruction budget is one no probe exhausts, and memory is ample for huge strings.
pub fn probe_vm(dir: &Path, source: &str) -> runner::host::vm::StrategyVm {
    let path = dir.join("probe.lua");
    std::fs::write(&path, source).unwrap();
    let known = |_: &str| true;
    runner::host::vm::StrategyVm::load(
        &path,
        runner::host::vm::VmOptions {
            venue: TestVenue::new(),
            calls: None,
            stdlib_dir: &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("stdlib"),
            memory_limit: 512 << 20,
            instruction_budget: u64::MAX / 2,
            stats: Arc::new(runner::host::stats::Stats::default()),
            timers: None,
            known_symbol: &known,
            state: None,
        },
    )
    .expect("the probe strategy loads")
}

/// The built-in simulator, the real client with `options`, and a host whose strategies save their
/// state (spinning between events when `busy_poll`), wired as the runner wires them.
pub async fn connected_to_sim(
    options: runner::exchange::binance::ClientOptions,
    busy_poll: bool,
) -> (
    runner::sim::SimHandle,
    Arc<runner::exchange::binance::BinanceVenue>,
    Arc<runner::host::Host>,
    Files,
) {
    use runner::exchange::binance::{limits::pools, BinanceVenue, Credentials, Profile};
    use runner::ledger::{Ledger, LedgerConfig, TokioClock};
    use runner::sim::{self, SimConfig};
    let sim = sim::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts");
    let ledger = Ledger::new(
        pools::spot_defaults(),
        LedgerConfig::default(),
        Arc::new(TokioClock::new()),
    );
    let profile = Profile::paper(
        &sim.rest_url(),
        &sim.ws_url(),
        &sim.ws_api_url(),
        Credentials::new(sim::PAPER_API_KEY, sim::PAPER_API_SECRET),
    );
    let venue = BinanceVenue::connect(profile, ledger, options)
        .await
        .expect("client connects");
    let files = Files::new();
    let config = runner::host::HostConfig {
        busy_poll,
        ..saving_config(&files)
    };
    let host = runner::host::Host::new(venue.clone(), config);
    let sink: Arc<dyn EventSink> = host.clone();
    venue.start(sink).await.expect("streams start");
    (sim, venue, host, files)
}

/// A strategy named "good" that counts its 20 ms timer ticks and its ETHUSDT quotes, reporting each
/// tick: the neighbour a misbehaving strategy must leave alone.
pub fn good_neighbour() -> String {
    format!(
        r#"
        local ticks = 0
        return {{
            name = "good",
            symbols = {{ "ETHUSDT" }},
            on_start = function() timer.every(20, "tick") end,
            on_timer = function() ticks = ticks + 1 {} end,
            on_book = function(q) state.quotes = (state.quotes or 0) + 1 end,
        }}
        "#,
        report(r#""tick:" .. ticks"#)
    )
}
