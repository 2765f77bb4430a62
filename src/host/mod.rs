//! Sandboxed Lua VMs, one per strategy, and the strategy API.
//!
//! Each strategy runs in its own Lua 5.4 VM on its own OS thread ([`worker`]), with
//! limited memory and CPU per callback ([`limits`]) and only the API of
//! `docs/strategy-api.md` ([`api`]). The [`Host`] owns them all: it routes market events by
//! subscription and order events by owner into per-strategy inboxes ([`inbox`]) that
//! never block the venue, reloads strategies in place, and stops them cleanly. A strategy's
//! exchange calls run on its own thread too ([`calls`]), so nothing is handed to another thread
//! between its callback deciding to trade and the order request leaving.

pub mod affinity;
pub mod api;
pub mod calls;
mod dispatch;
mod error;
pub mod inbox;
pub(crate) mod limits;
mod lua_values;
pub mod market_run;
mod require;
pub(crate) mod sandbox;
pub(crate) mod spec;
pub(crate) mod state_table;
pub mod stats;
mod strlib;
pub(crate) mod timers;
pub mod vm;
mod watchdog;
mod worker;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, oneshot};

pub use error::LoadError;
pub use spec::StrategyMeta;

use crate::exchange::binance::orders::symbols::ValidOrder;
use crate::exchange::latency::LatencySummary;
use crate::exchange::risk::Approved;
use crate::exchange::{
    ApiError, Balance, CallCtx, ClientOrderId, Depth, ErrorCode, EventSink, Kline, MarketEvent, Order, OrderRef,
    OrderRequest, Quote, StrategyId, StreamKey, SymbolInfo, Ticker, Trade, Venue,
};
use crate::ledger::{BackoffState, LedgerStatus, StrategyUsage};
use inbox::{Event, Inbox};
use stats::Stats;
use vm::{StrategyVm, VmOptions};
use worker::{Control, Shared, StrategyShared};

/// A running strategy's name (unique within one host).
pub type StrategyName = String;

#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where `require` finds the shared Lua modules.
    pub stdlib_dir: PathBuf,
    /// Memory per VM.
    pub memory_limit: usize,
    /// Work allowed per callback (counted in Lua instructions; waiting does not count).
    pub cpu_limit: Duration,
    /// A strategy that hits its limits this often within `trip_window` is stopped.
    pub max_trips: u32,
    pub trip_window: Duration,
    /// `state` is saved under `state_dir/strategies/<name>.json`; `None` keeps it in memory.
    pub state_dir: Option<PathBuf>,
    /// How often a running strategy's `state` is saved (it is also saved on stop).
    pub state_save_every: Duration,
    /// Each strategy's thread spins while it waits for an event instead of sleeping: lower
    /// latency, at the cost of a whole core per strategy.
    pub busy_poll: bool,
    /// CPUs reserved for strategy threads (see [`affinity`]): the n-th strategy added runs on the
    /// n-th, round robin. Empty: the OS places them.
    pub strategy_cpus: Vec<usize>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            stdlib_dir: PathBuf::from("stdlib"),
            memory_limit: 64 << 20,
            cpu_limit: Duration::from_millis(200),
            max_trips: 3,
            trip_window: Duration::from_secs(60),
            state_dir: None,
            state_save_every: worker::DEFAULT_SAVE_EVERY,
            busy_poll: false,
            strategy_cpus: Vec::new(),
        }
    }
}

/// Why a strategy is being stopped; `on_stop` receives it as a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Shutdown,
    Duration,
    Error,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Shutdown => "shutdown",
            StopReason::Duration => "duration",
            StopReason::Error => "error",
        }
    }
}

/// A successful hot reload.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadOutcome {
    pub name: String,
    /// Building and validating the new version in a fresh VM.
    pub load: Duration,
    /// From the reload request to the new version being in place (events wait meanwhile).
    pub swap: Duration,
    pub subscriptions_changed: bool,
    pub warnings: Vec<String>,
    /// The new version's `on_reload` tripped the limits often enough to stop the strategy.
    pub stopped: bool,
}

/// One strategy's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct StrategyStats {
    pub name: String,
    pub running: bool,
    pub events_received: u64,
    pub events_handled: u64,
    pub events_coalesced: u64,
    pub trades_dropped: u64,
    pub errors: u64,
    pub trips: u64,
    pub orders_placed: u64,
    pub orders_filled: u64,
    pub orders_cancelled: u64,
    pub orders_rejected: u64,
    /// Order updates that filled something (partial fills included).
    pub fills: u64,
    /// The latest failed callback's message.
    pub last_error: Option<String>,
    /// Net asset flows from fills (base and quote, minus commissions): realised PnL per asset.
    pub flows: BTreeMap<String, f64>,
    pub open_orders: usize,
    /// Events waiting in the strategy's inbox.
    pub pending: usize,
    /// Over its latest orders placed from market callbacks: from the client reading the market
    /// frame to the order written to the exchange (`None` before the first).
    pub tick_to_order: Option<LatencySummary>,
}

struct Slot {
    strategy: Arc<StrategyShared>,
    control: mpsc::UnboundedSender<Control>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Owns every strategy. Implements [`EventSink`]: hand it to the venue's `start`.
pub struct Host {
    shared: Arc<Shared>,
    slots: RwLock<HashMap<String, Arc<Slot>>>,
    /// Order events for strategies not added yet (e.g. orders restored from the journal
    /// and resolved while the strategies load), handed over when they are added.
    /// Taken before `slots` wherever both are held.
    unclaimed: Mutex<HashMap<String, Vec<Order>>>,
    /// Strategies added so far, for handing out reserved CPUs in turn.
    added: AtomicUsize,
}

impl Host {
    /// Must be called inside a tokio runtime: subscription changes run on it (a strategy's own
    /// exchange calls run on its thread, see [`calls`]).
    pub fn new(venue: Arc<dyn Venue>, config: HostConfig) -> Arc<Host> {
        // Started here, not by the first callback: a thread inherits its parent's CPUs, and the
        // first callback may run on a strategy thread pinned to a reserved CPU.
        watchdog::start();
        Arc::new(Host {
            shared: Arc::new(Shared {
                venue,
                handle: tokio::runtime::Handle::current(),
                config,
                dispatch: dispatch::Dispatch::default(),
            }),
            slots: RwLock::new(HashMap::new()),
            unclaimed: Mutex::new(HashMap::new()),
            added: AtomicUsize::new(0),
        })
    }

    /// The reserved CPU for the next strategy, if CPUs are reserved.
    fn next_cpu(&self, path: &Path) -> Option<usize> {
        let cpus = &self.shared.config.strategy_cpus;
        if cpus.is_empty() {
            return None;
        }
        let n = self.added.fetch_add(1, Ordering::Relaxed);
        let cpu = cpus[n % cpus.len()];
        if n >= cpus.len() && self.shared.config.busy_poll {
            tracing::warn!(
                strategy = %path.display(),
                cpu,
                "more busy-polling strategies than reserved CPUs: this one shares its core with another spinner"
            );
        }
        Some(cpu)
    }

    /// Loads and validates the strategy at `path` on its own thread, subscribes its
    /// streams, then calls `on_start`.
    pub async fn add(&self, path: &Path) -> Result<StrategyName, LoadError> {
        let stats = Arc::new(Stats::default());
        let strategy = Arc::new(StrategyShared {
            path: path.to_path_buf(),
            inbox: Inbox::new(stats.clone()),
            stats,
            files: Mutex::new(Arc::new(Mutex::new(vec![path.to_path_buf()]))),
            stop_requested: tokio::sync::Notify::new(),
            calls: calls::Calls::default(),
        });
        let (ready_tx, ready_rx) = oneshot::channel();
        let (control, control_rx) = mpsc::unbounded_channel();
        let cpu = self.next_cpu(path);
        let thread = {
            let shared = self.shared.clone();
            let strategy = strategy.clone();
            std::thread::Builder::new()
                .name(format!("strategy:{}", spec::default_name(path)))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        match affinity::pin_current_thread(cpu) {
                            Ok(()) => tracing::info!(strategy = %strategy.path.display(), cpu, "strategy pinned"),
                            Err(err) => tracing::warn!(strategy = %strategy.path.display(), "not pinned: {err}"),
                        }
                    }
                    let (stats, path) = (strategy.stats.clone(), strategy.path.clone());
                    let run = std::panic::AssertUnwindSafe(|| worker::run(shared, strategy, ready_tx, control_rx));
                    if let Err(panic) = std::panic::catch_unwind(run) {
                        // Marked stopped, the strategy is started afresh by the next reload (a good save).
                        stats.stopped.store(true, Ordering::Relaxed);
                        tracing::error!(
                            strategy = %path.display(),
                            "the strategy's thread died ({}); saving its file starts it again",
                            panic_message(panic.as_ref())
                        );
                    }
                })
                .map_err(|err| LoadError::Thread(err.to_string()))?
        };
        let meta = match ready_rx.await {
            Ok(Ok(meta)) => meta,
            Ok(Err(err)) => {
                join(thread).await;
                return Err(err);
            }
            Err(_) => {
                join(thread).await;
                return Err(LoadError::Thread("the strategy's thread ended while loading".into()));
            }
        };
        let name = meta.name.clone();
        let registered = {
            let mut unclaimed = self.unclaimed.lock();
            let mut slots = self.slots.write();
            let taken = slots
                .get(&name)
                .is_some_and(|slot| !slot.strategy.stats.stopped.load(Ordering::Relaxed));
            if !taken {
                slots.insert(
                    name.clone(),
                    Arc::new(Slot {
                        strategy: strategy.clone(),
                        control: control.clone(),
                        thread: Mutex::new(None),
                    }),
                );
                // Delivered after on_start, like every event.
                for order in unclaimed.remove(&name).unwrap_or_default() {
                    strategy.inbox.push(Event::Order(Box::new(order)));
                }
            }
            !taken
        };
        if !registered {
            drop(control);
            join(thread).await;
            return Err(LoadError::Duplicate(name));
        }
        if let Some(slot) = self.slots.read().get(&name) {
            *slot.thread.lock() = Some(thread);
        }
        let keys = meta.stream_keys();
        self.shared.dispatch.set(&name, &strategy.inbox, keys.clone());
        let id: StrategyId = Arc::from(name.as_str());
        if let Err(error) = self.shared.venue.set_subscriptions(&id, keys).await {
            self.shared.dispatch.remove(&name);
            let slot = self.slots.write().remove(&name);
            drop(control);
            // Dropping every control sender tells the waiting thread to end.
            let thread = slot.and_then(|slot| {
                let thread = slot.thread.lock().take();
                thread
            });
            if let Some(thread) = thread {
                join(thread).await;
            }
            return Err(LoadError::Subscribe { name, error });
        }
        strategy
            .stats
            .tick_to_order
            .report_to(metrics::histogram!("runner_tick_to_order_seconds", "strategy" => name.clone()));
        let _ = control.send(Control::Start);
        tracing::info!(strategy = %name, path = %path.display(), "strategy started");
        Ok(name)
    }

    /// Builds the strategy's file in a fresh VM and swaps it in between two events,
    /// carrying `state`; on failure the running version keeps running.
    /// A strategy that is no longer running (stopped for hitting its limits, its file removed,
    /// or its thread died) is started afresh instead, from its file and saved state.
    pub async fn reload(&self, name: &str) -> Result<ReloadOutcome, LoadError> {
        let slot = self.slot(name)?;
        if slot.strategy.stats.stopped.load(Ordering::Relaxed) || slot.control.is_closed() {
            return self.restart(name, &slot).await;
        }
        let (reply, outcome) = oneshot::channel();
        slot.control
            .send(Control::Reload(reply))
            .map_err(|_| LoadError::Stopped(name.to_owned()))?;
        outcome.await.map_err(|_| LoadError::Stopped(name.to_owned()))?
    }

    async fn restart(&self, name: &str, slot: &Slot) -> Result<ReloadOutcome, LoadError> {
        let started = std::time::Instant::now();
        let thread = slot.thread.lock().take();
        if let Some(thread) = thread {
            join(thread).await;
        }
        let restarted = self.add(&slot.strategy.path).await?;
        if restarted != name {
            // Started under its new name: the old entry only named a stopped strategy.
            let mut slots = self.slots.write();
            if slots
                .get(name)
                .is_some_and(|s| s.strategy.stats.stopped.load(Ordering::Relaxed))
            {
                slots.remove(name);
            }
        }
        tracing::info!(strategy = %restarted, "restarted: the strategy was not running");
        Ok(ReloadOutcome {
            name: restarted,
            load: started.elapsed(),
            swap: started.elapsed(),
            subscriptions_changed: true,
            warnings: Vec::new(),
            stopped: false,
        })
    }

    /// The strategy file and every file it `require`d.
    pub fn watched_files(&self, name: &str) -> Vec<PathBuf> {
        match self.slots.read().get(name) {
            Some(slot) => slot.strategy.files.lock().lock().clone(),
            None => Vec::new(),
        }
    }

    /// Stops one strategy: `on_stop(reason)`, timers and subscriptions dropped, state saved.
    pub async fn stop(&self, name: &str, reason: StopReason) {
        if let Ok(slot) = self.slot(name) {
            stop_slot(&slot, reason).await;
        }
    }

    /// Stops every strategy (concurrently) and joins their threads.
    pub async fn stop_all(&self, reason: StopReason) {
        let slots: Vec<Arc<Slot>> = self.slots.read().values().cloned().collect();
        futures_util::future::join_all(slots.iter().map(|slot| stop_slot(slot, reason))).await;
    }

    pub fn stats(&self) -> Vec<StrategyStats> {
        let slots = self.slots.read();
        let mut all: Vec<StrategyStats> = slots
            .iter()
            .map(|(name, slot)| {
                let s = &slot.strategy.stats;
                StrategyStats {
                    name: name.clone(),
                    running: !s.stopped.load(Ordering::Relaxed),
                    events_received: Stats::get(&s.events_received),
                    events_handled: Stats::get(&s.events_handled),
                    events_coalesced: Stats::get(&s.events_coalesced),
                    trades_dropped: Stats::get(&s.trades_dropped),
                    errors: Stats::get(&s.errors),
                    trips: Stats::get(&s.trips),
                    orders_placed: Stats::get(&s.orders_placed),
                    orders_filled: Stats::get(&s.orders_filled),
                    orders_cancelled: Stats::get(&s.orders_cancelled),
                    orders_rejected: Stats::get(&s.orders_rejected),
                    fills: Stats::get(&s.fills),
                    last_error: s.last_error(),
                    flows: s.flows(),
                    open_orders: self.shared.venue.open_orders(name, None).len(),
                    pending: slot.strategy.inbox.len(),
                    tick_to_order: s.tick_to_order.summary(),
                }
            })
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.slots.read().keys().cloned().collect();
        names.sort();
        names
    }

    fn slot(&self, name: &str) -> Result<Arc<Slot>, LoadError> {
        self.slots
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| LoadError::NotFound(name.to_owned()))
    }
}

async fn stop_slot(slot: &Slot, reason: StopReason) {
    let (done, stopped) = oneshot::channel();
    // A callback that never returns (a loop of exchange calls) would hold the stop forever.
    slot.strategy.stop_requested.notify_one();
    if slot.control.send(Control::Stop(reason, done)).is_ok() {
        let _ = stopped.await;
    }
    let thread = slot.thread.lock().take();
    if let Some(thread) = thread {
        join(thread).await;
    }
}

/// What a panic said, for the log.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}

/// Joins a strategy's thread without blocking the runtime.
async fn join(thread: std::thread::JoinHandle<()>) {
    let joined = tokio::task::spawn_blocking(move || thread.join()).await;
    if !matches!(joined, Ok(Ok(()))) {
        tracing::error!("a strategy thread panicked");
    }
}

impl EventSink for Host {
    fn market(&self, event: MarketEvent) {
        self.market_received(event, std::time::Instant::now());
    }

    fn market_received(&self, event: MarketEvent, received: std::time::Instant) {
        self.shared.dispatch.route(event, received);
    }

    fn market_batch(&self, events: &mut Vec<(MarketEvent, std::time::Instant)>) {
        self.shared.dispatch.route_batch(events.drain(..));
    }

    fn order(&self, order: Order) {
        let mut unclaimed = self.unclaimed.lock();
        match self.slots.read().get(&*order.strategy) {
            Some(slot) if !slot.strategy.stats.stopped.load(Ordering::Relaxed) => {
                slot.strategy.inbox.push(Event::Order(Box::new(order)))
            }
            None => unclaimed.entry(order.strategy.to_string()).or_default().push(order),
            Some(_) => tracing::warn!(
                strategy = %order.strategy,
                client_id = %order.client_id,
                "order event for a strategy that is not running"
            ),
        }
    }
}

/// `runner check`: loads and validates a strategy exactly as [`Host::add`] does, without
/// an exchange (API calls made while the file loads fail with `stopped`).
pub fn check(path: &Path, config: &HostConfig, known_symbol: &dyn Fn(&str) -> bool) -> Result<StrategyMeta, LoadError> {
    let vm = StrategyVm::load(
        path,
        VmOptions {
            venue: Arc::new(Offline),
            calls: None,
            stdlib_dir: &config.stdlib_dir,
            memory_limit: config.memory_limit,
            instruction_budget: worker::instruction_budget(config),
            stats: Arc::new(Stats::default()),
            timers: None,
            known_symbol,
            state: None,
        },
    )?;
    Ok(vm.meta)
}

/// The venue `check` builds VMs against: knows no symbols, refuses every call.
struct Offline;

fn offline() -> ApiError {
    ApiError::new(ErrorCode::Stopped, "not connected to an exchange (checking only)")
}

#[async_trait]
impl Venue for Offline {
    fn name(&self) -> &str {
        "offline"
    }
    fn now_ms(&self) -> i64 {
        crate::ledger::clock::system_ms()
    }
    fn symbol(&self, _: &str) -> Option<SymbolInfo> {
        None
    }
    fn symbols(&self) -> Vec<String> {
        Vec::new()
    }
    async fn ticker(&self, _: &CallCtx, _: &str) -> Result<Ticker, ApiError> {
        Err(offline())
    }
    async fn book_ticker(&self, _: &CallCtx, _: &str) -> Result<Quote, ApiError> {
        Err(offline())
    }
    async fn depth(&self, _: &CallCtx, _: &str, _: u32) -> Result<Depth, ApiError> {
        Err(offline())
    }
    async fn klines(&self, _: &CallCtx, _: &str, _: &str, _: u32) -> Result<Vec<Kline>, ApiError> {
        Err(offline())
    }
    async fn trades(&self, _: &CallCtx, _: &str, _: u32) -> Result<Vec<Trade>, ApiError> {
        Err(offline())
    }
    fn validate(&self, _: &OrderRequest) -> Result<ValidOrder, ApiError> {
        Err(offline())
    }
    async fn send(&self, _: &CallCtx, _: Option<ClientOrderId>, _: Approved<ValidOrder>) -> Result<Order, ApiError> {
        Err(offline())
    }
    async fn cancel(&self, _: &CallCtx, _: &str, _: &OrderRef) -> Result<Order, ApiError> {
        Err(offline())
    }
    async fn cancel_all(&self, _: &CallCtx, _: &str) -> Result<Vec<Order>, ApiError> {
        Err(offline())
    }
    async fn get_order(&self, _: &CallCtx, _: &str, _: &OrderRef) -> Result<Order, ApiError> {
        Err(offline())
    }
    fn open_orders(&self, _: &str, _: Option<&str>) -> Vec<Order> {
        Vec::new()
    }
    fn balances(&self) -> BTreeMap<String, Balance> {
        BTreeMap::new()
    }
    fn quote(&self, _: &str) -> Option<Quote> {
        None
    }
    fn book(&self, _: &str, _: usize) -> Option<Depth> {
        None
    }
    async fn set_subscriptions(&self, _: &StrategyId, _: Vec<StreamKey>) -> Result<(), ApiError> {
        Ok(())
    }
    fn ledger_status(&self, _: &str) -> LedgerStatus {
        LedgerStatus {
            now_ms: 0,
            state: BackoffState::Normal,
            resume_at_ms: None,
            pools: Vec::new(),
            scope_names: Vec::new(),
            mine: StrategyUsage::default(),
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
