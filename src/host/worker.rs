//! A strategy's own OS thread: a current-thread runtime and `LocalSet` (Lua is !Send)
//! that handles the strategy's events one at a time, in order, and swaps in reloaded
//! versions between two events.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

use super::calls::Calls;
use super::dispatch::Dispatch;
use super::error::LoadError;
use super::inbox::{Event, Inbox, Popped};
use super::limits::INSTRUCTIONS_PER_SECOND;
use super::market_run::{MarketRun, RunEvent};
use super::require::LoadedFiles;
use super::spec::{self, StrategyMeta};
use super::state_table::{self, StateValue};
use super::stats::Stats;
use super::timers::Timers;
use super::vm::{CallOutcome, StrategyVm, VmOptions};
use super::{HostConfig, ReloadOutcome, StopReason};
use crate::exchange::stage_timing;
use crate::exchange::{ApiError, ErrorCode, Order, StreamKey, Venue};

/// Host-wide things every worker uses.
pub struct Shared {
    pub venue: Arc<dyn Venue>,
    pub handle: tokio::runtime::Handle,
    pub config: HostConfig,
    pub dispatch: Dispatch,
}

/// What the host and a strategy's thread both see.
pub struct StrategyShared {
    pub path: PathBuf,
    pub inbox: Arc<Inbox>,
    pub stats: Arc<Stats>,
    /// The running version's loaded files (replaced on reload).
    pub files: Mutex<LoadedFiles>,
    /// Signalled before a `Control::Stop` is sent: cuts short the callback in progress.
    pub stop_requested: tokio::sync::Notify,
    /// The strategy's exchange calls under way (they run on its thread).
    pub calls: Calls,
}

pub enum Control {
    Start,
    Reload(oneshot::Sender<Result<ReloadOutcome, LoadError>>),
    Stop(StopReason, oneshot::Sender<()>),
}

/// Body of the strategy's thread.
pub fn run(
    shared: Arc<Shared>,
    strategy: Arc<StrategyShared>,
    ready: oneshot::Sender<Result<StrategyMeta, LoadError>>,
    control: mpsc::UnboundedReceiver<Control>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            let _ = ready.send(Err(LoadError::Thread(err.to_string())));
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    if shared.config.busy_poll {
        // The thread never sleeps, not even while a callback waits for the exchange's answer: a
        // runtime with nothing to run would park it, and waking a parked thread (and its idle CPU)
        // takes tens to hundreds of µs, which the next market event would wait for.
        local.spawn_local(async {
            loop {
                tokio::task::yield_now().await;
            }
        });
    }
    local.block_on(&runtime, async move {
        let timers = Timers::new(strategy.inbox.clone());
        let vm = match load_initial(&shared, &strategy, &timers) {
            Ok(vm) => vm,
            Err(err) => {
                let _ = ready.send(Err(err));
                return;
            }
        };
        *strategy.files.lock() = vm_files(&vm);
        if ready.send(Ok(vm.meta.clone())).is_err() {
            return;
        }
        let mut worker = Worker {
            name: vm.meta.name.clone(),
            shared,
            strategy,
            timers,
            vm,
            control,
            trips: VecDeque::new(),
            last_save: Instant::now(),
            batch: VecDeque::new(),
        };
        worker.run().await;
        worker.finish_calls().await;
    });
}

/// The running version's list of loaded files (it grows if a callback `require`s lazily).
fn vm_files(vm: &StrategyVm) -> LoadedFiles {
    vm.loaded_files()
}

/// Loads the strategy with the state it saved last time (looked up by file name first,
/// then by the name the strategy declares, if that differs).
fn load_initial(shared: &Shared, strategy: &StrategyShared, timers: &Rc<Timers>) -> Result<StrategyVm, LoadError> {
    let saved = |name: &str| -> Option<StateValue> {
        let dir = shared.config.state_dir.as_ref()?;
        match state_table::load(&state_table::file_for(dir, name)) {
            Ok(saved) => saved,
            Err(err) => {
                tracing::warn!(strategy = name, "could not restore state: {err}");
                None
            }
        }
    };
    let stem = spec::default_name(&strategy.path);
    let vm = load_vm(shared, strategy, timers, saved(&stem))?;
    if vm.meta.name != stem {
        if let Some(state) = saved(&vm.meta.name) {
            return load_vm(shared, strategy, timers, Some(state));
        }
    }
    Ok(vm)
}

fn load_vm(
    shared: &Shared,
    strategy: &StrategyShared,
    timers: &Rc<Timers>,
    state: Option<StateValue>,
) -> Result<StrategyVm, LoadError> {
    let venue = shared.venue.clone();
    let known = move |symbol: &str| venue.symbol(symbol).is_some();
    let vm = StrategyVm::load(
        &strategy.path,
        VmOptions {
            venue: shared.venue.clone(),
            calls: Some(strategy.calls.clone()),
            stdlib_dir: &shared.config.stdlib_dir,
            memory_limit: shared.config.memory_limit,
            instruction_budget: instruction_budget(&shared.config),
            stats: strategy.stats.clone(),
            timers: Some(timers.clone()),
            known_symbol: &known,
            state,
        },
    )?;
    for warning in &vm.meta.warnings {
        tracing::warn!(strategy = %vm.meta.name, "{warning}");
    }
    Ok(vm)
}

pub fn instruction_budget(config: &HostConfig) -> u64 {
    (config.cpu_limit.as_secs_f64() * INSTRUCTIONS_PER_SECOND) as u64
}

struct Worker {
    name: String,
    shared: Arc<Shared>,
    strategy: Arc<StrategyShared>,
    timers: Rc<Timers>,
    vm: StrategyVm,
    control: mpsc::UnboundedReceiver<Control>,
    trips: VecDeque<Instant>,
    last_save: Instant,
    /// Events taken from the inbox in one go, handled before the next look at it.
    batch: VecDeque<Popped>,
}

/// Events taken from the inbox under one lock.
const BATCH: usize = 64;

enum Flow {
    Continue,
    Exit,
}

impl Worker {
    /// Calls a cut-short callback left behind still decide orders: they are seen through before the
    /// thread ends, so a stop returns only when every order it could send is sent or refused (and
    /// cancel-on-exit sees them all). Each is bounded by its budget wait and the request timeout.
    async fn finish_calls(self) {
        let (calls, name) = (self.strategy.calls.clone(), self.name.clone());
        // A cut-short callback's coroutine, and the calls inside it, live as long as the VM: only
        // dropping it hands those calls over as tasks, so it must go first.
        drop(self);
        if calls.running() > 0 {
            tracing::info!(strategy = %name, calls = calls.running(), "finishing exchange calls under way");
            calls.all_finished().await;
        }
    }

    async fn run(&mut self) {
        // Wait for the host to register routes and subscriptions.
        loop {
            match self.control.recv().await {
                Some(Control::Start) => break,
                Some(Control::Stop(_, done)) => {
                    let _ = done.send(());
                    return;
                }
                Some(Control::Reload(reply)) => {
                    let _ = reply.send(Err(LoadError::Stopped(self.name.clone())));
                }
                None => return,
            }
        }
        self.vm.activate();
        let outcome = interruptible(&self.strategy, &self.name, "on_start", self.vm.on_start()).await;
        if let Flow::Exit = self.after_call(outcome, "on_start").await {
            return;
        }
        let mut dropped_logged = 0;
        loop {
            loop {
                let message = match self.control.try_recv() {
                    Ok(message) => message,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => Control::Stop(StopReason::Shutdown, oneshot::channel().0),
                };
                if let Flow::Exit = self.on_control(message).await {
                    return;
                }
            }
            if self.batch.is_empty() {
                // Once per batch, not per event: reading the clock is a cost at a million events a second.
                if self.last_save.elapsed() >= self.shared.config.state_save_every {
                    self.save_state();
                }
                self.strategy.inbox.pop_batch(&mut self.batch, BATCH);
            }
            let flow = if starts_market_run(&self.batch) {
                Some(self.on_market_run().await)
            } else if let Some(popped) = self.batch.pop_front() {
                Some(self.on_event(popped).await)
            } else {
                None
            };
            if let Some(flow) = flow {
                stage_timing::work_done();
                if let Flow::Exit = flow {
                    return;
                }
                let dropped = self.strategy.stats.trades_dropped.load(Ordering::Relaxed);
                if dropped >= dropped_logged + 1000
                    || (dropped > dropped_logged && self.batch.is_empty() && self.strategy.inbox.is_empty())
                {
                    tracing::warn!(strategy = %self.name, dropped, "trades dropped while the strategy was busy");
                    dropped_logged = dropped;
                }
                continue;
            }
            if self.shared.config.busy_poll {
                // A sleeping thread takes tens of µs to wake; a spinning one sees the next event at
                // once. Yielding lets this thread's runtime poll its sockets and timers, without
                // blocking, between looks.
                tokio::task::yield_now().await;
                continue;
            }
            let save_at = tokio::time::Instant::from_std(self.last_save + self.shared.config.state_save_every);
            tokio::select! {
                message = self.control.recv() => {
                    let message = message.unwrap_or_else(|| Control::Stop(StopReason::Shutdown, oneshot::channel().0));
                    if let Flow::Exit = self.on_control(message).await {
                        return;
                    }
                }
                _ = self.strategy.inbox.ready() => {}
                _ = tokio::time::sleep_until(save_at) => self.save_state(),
            }
        }
    }

    async fn on_control(&mut self, message: Control) -> Flow {
        match message {
            Control::Start => Flow::Continue,
            Control::Reload(reply) => {
                // A failure is logged by whoever asked (the file watcher), once.
                let result = self.reload().await;
                let flow = match &result {
                    Ok(outcome) if outcome.stopped => Flow::Exit,
                    _ => Flow::Continue,
                };
                let _ = reply.send(result);
                flow
            }
            Control::Stop(reason, done) => {
                self.stop(reason).await;
                let _ = done.send(());
                Flow::Exit
            }
        }
    }

    async fn on_event(&mut self, Popped { event, received }: Popped) -> Flow {
        let what = match &event {
            Event::Book(_) => "on_book",
            Event::Depth(_) => "on_depth",
            Event::Trade(_) => "on_trade",
            Event::Kline { .. } => "on_kline",
            Event::Order(order) => {
                self.account_order(order);
                "on_order"
            }
            Event::Timer(_) => "on_timer",
        };
        self.strategy.stats.events_handled.fetch_add(1, Ordering::Relaxed);
        // Orders the callback places are timed from when its market event was read.
        self.vm.set_market_event_received(received);
        let outcome = interruptible(&self.strategy, &self.name, what, self.vm.deliver(&event)).await;
        self.vm.set_market_event_received(None);
        self.after_call(outcome, what).await
    }

    /// Delivers the quotes and trades at the front of the batch as one run (see
    /// [`StrategyVm::deliver_run`]); a callback that fails or trips is handled as any other, and the
    /// run goes on after it.
    async fn on_market_run(&mut self) -> Flow {
        loop {
            let mut batch = std::mem::take(&mut self.batch);
            let mut run = BatchRun {
                batch: &mut batch,
                taken: 0,
                last: "on_book",
            };
            let outcome = interruptible(&self.strategy, &self.name, "on_book", async {
                Some(self.vm.deliver_run(&mut run).await)
            })
            .await;
            let (taken, what) = (run.taken, run.last);
            self.batch = batch;
            self.vm.set_market_event_received(None);
            self.strategy.stats.events_handled.fetch_add(taken, Ordering::Relaxed);
            match outcome {
                // Done, or cut short by a stop (the control message that follows handles it).
                None | Some(CallOutcome::Done) => return Flow::Continue,
                failed => {
                    if let Flow::Exit = self.after_call(failed, what).await {
                        return Flow::Exit;
                    }
                    if !starts_market_run(&self.batch) {
                        return Flow::Continue;
                    }
                }
            }
        }
    }

    /// Counts the order's state change and adds its new fills to the asset flows.
    fn account_order(&self, order: &Order) {
        let info = (order.filled_qty > 0.0)
            .then(|| self.shared.venue.symbol(&order.symbol))
            .flatten();
        self.strategy.stats.record_order(order, info.as_ref());
    }

    /// Logs failures and counts trips; too many trips in the window stop the strategy.
    async fn after_call(&mut self, outcome: Option<CallOutcome>, what: &str) -> Flow {
        match outcome {
            None | Some(CallOutcome::Done) => Flow::Continue,
            Some(CallOutcome::Failed(message)) => {
                self.strategy.stats.record_error(&message);
                tracing::error!(strategy = %self.name, event = what, "{message}");
                Flow::Continue
            }
            Some(CallOutcome::Tripped(kind)) => {
                self.strategy.stats.trips.fetch_add(1, Ordering::Relaxed);
                let now = Instant::now();
                let window = self.shared.config.trip_window;
                self.trips.push_back(now);
                while self.trips.front().is_some_and(|t| now.duration_since(*t) > window) {
                    self.trips.pop_front();
                }
                let count = self.trips.len();
                tracing::warn!(strategy = %self.name, event = what, "{} ({count} in the last {window:?})", kind.describe());
                if count >= self.shared.config.max_trips as usize {
                    tracing::error!(
                        strategy = %self.name,
                        "strategy stopped: hit its limits {count} times within {}",
                        humantime::format_duration(window)
                    );
                    self.stop(StopReason::Error).await;
                    return Flow::Exit;
                }
                Flow::Continue
            }
        }
    }

    async fn reload(&mut self) -> Result<ReloadOutcome, LoadError> {
        let started = Instant::now();
        let mut warnings = Vec::new();
        let carried = self.vm.state(&mut warnings).map_err(|error| LoadError::State {
            name: self.name.clone(),
            error,
        })?;
        let candidate = load_vm(&self.shared, &self.strategy, &self.timers, Some(carried))?;
        if candidate.meta.name != self.name {
            return Err(LoadError::Renamed {
                path: self.strategy.path.clone(),
                old: self.name.clone(),
                new: candidate.meta.name.clone(),
            });
        }
        let load = started.elapsed();
        let keys = candidate.meta.stream_keys();
        let old_keys = self.shared.dispatch.keys(&self.name);
        let subscriptions_changed = keys != old_keys;
        if subscriptions_changed {
            self.set_subscriptions(keys.clone()).await.map_err(|error| {
                // Put the running version's subscriptions back.
                self.shared
                    .dispatch
                    .set(&self.name, &self.strategy.inbox, old_keys.clone());
                LoadError::Subscribe {
                    name: self.name.clone(),
                    error,
                }
            })?;
        }
        warnings.extend(candidate.meta.warnings.iter().cloned());
        let old = std::mem::replace(&mut self.vm, candidate);
        self.vm.activate();
        *self.strategy.files.lock() = vm_files(&self.vm);
        let swap = started.elapsed();
        drop(old);
        tracing::info!(strategy = %self.name, ?swap, "reloaded");
        let outcome = self.vm.on_reload().await;
        let stopped = matches!(self.after_call(outcome, "on_reload").await, Flow::Exit);
        Ok(ReloadOutcome {
            name: self.name.clone(),
            load,
            swap,
            subscriptions_changed,
            warnings,
            stopped,
        })
    }

    async fn set_subscriptions(&self, keys: Vec<StreamKey>) -> Result<(), ApiError> {
        self.shared.dispatch.set(&self.name, &self.strategy.inbox, keys.clone());
        let venue = self.shared.venue.clone();
        let id: Arc<str> = Arc::from(self.name.as_str());
        match self
            .shared
            .handle
            .spawn(async move { venue.set_subscriptions(&id, keys).await })
            .await
        {
            Ok(result) => result,
            Err(_) => Err(ApiError::new(ErrorCode::Stopped, "the runtime is shutting down")),
        }
    }

    /// Order events still waiting are delivered first (so `state` reflects every fill,
    /// unless the strategy is being stopped for misbehaving), then `on_stop(reason)`;
    /// then timers, routes and subscriptions go, and state is saved.
    async fn stop(&mut self, reason: StopReason) {
        // The last callbacks get a bounded time: one that never returns must not hold the stop.
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        // Events already taken from the inbox: their orders go first (they are older), the rest is dropped
        // as the inbox's market events are.
        let taken: Vec<Order> = std::mem::take(&mut self.batch)
            .into_iter()
            .filter_map(|popped| match popped.event {
                Event::Order(order) => Some(*order),
                _ => None,
            })
            .collect();
        if reason != StopReason::Error {
            for order in taken.into_iter().chain(self.strategy.inbox.take_orders()) {
                self.account_order(&order);
                let event = Event::Order(Box::new(order));
                let delivered = tokio::time::timeout_at(deadline, self.vm.deliver(&event)).await;
                self.after_final_call(delivered, "on_order");
            }
        }
        let stopped = tokio::time::timeout_at(deadline, self.vm.on_stop(reason.as_str())).await;
        self.after_final_call(stopped, "on_stop");
        self.timers.cancel_all();
        self.shared.dispatch.remove(&self.name);
        if let Err(err) = self.set_subscriptions(Vec::new()).await {
            tracing::warn!(strategy = %self.name, "unsubscribing failed: {err}");
        }
        self.shared.dispatch.remove(&self.name);
        self.save_state();
        self.strategy.stats.stopped.store(true, Ordering::Relaxed);
        tracing::info!(strategy = %self.name, reason = reason.as_str(), "strategy stopped");
    }

    /// Logs how a callback during the stop went.
    fn after_final_call(&self, outcome: Result<Option<CallOutcome>, tokio::time::error::Elapsed>, what: &str) {
        match outcome {
            Ok(Some(CallOutcome::Failed(message))) => {
                self.strategy.stats.record_error(&message);
                tracing::error!(strategy = %self.name, event = what, "{message}");
            }
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(strategy = %self.name, event = what, "cut short: still running {STOP_GRACE:?} into the stop")
            }
        }
    }

    fn save_state(&mut self) {
        self.last_save = Instant::now();
        let Some(dir) = &self.shared.config.state_dir else {
            return;
        };
        let mut warnings = Vec::new();
        let state = self.vm.state(&mut warnings);
        for warning in warnings {
            tracing::warn!(strategy = %self.name, "{warning}");
        }
        let state = match state {
            Ok(state) => state,
            Err(err) => {
                tracing::error!(strategy = %self.name, "state not saved (the last saved file stays): {err}");
                return;
            }
        };
        if let Err(err) = state_table::save(&state_table::file_for(dir, &self.name), &state) {
            tracing::warn!(strategy = %self.name, "saving state failed: {err}");
        }
    }
}

/// The quotes and trades at the front of a worker's batch, taken as a run reaches them.
struct BatchRun<'a> {
    batch: &'a mut VecDeque<Popped>,
    /// Events taken so far.
    taken: u64,
    /// The callback of the latest event taken (names a failure in the log).
    last: &'static str,
}

/// True when the batch starts with a quote or a trade.
fn starts_market_run(batch: &VecDeque<Popped>) -> bool {
    batch
        .front()
        .is_some_and(|popped| matches!(popped.event, Event::Book(_) | Event::Trade(_)))
}

impl MarketRun for BatchRun<'_> {
    fn next_event(&mut self) -> Option<(RunEvent, Option<Instant>)> {
        if !starts_market_run(self.batch) {
            return None;
        }
        let Popped { event, received } = self.batch.pop_front()?;
        self.taken += 1;
        match event {
            Event::Book(quote) => {
                self.last = "on_book";
                Some((RunEvent::Book(quote), received))
            }
            Event::Trade(trade) => {
                self.last = "on_trade";
                Some((RunEvent::Trade(trade), received))
            }
            _ => None,
        }
    }
}

/// Runs one callback unless a stop is requested first; then the callback is dropped where
/// it waits (a loop of exchange calls that never returns would otherwise hold the stop).
async fn interruptible(
    strategy: &StrategyShared,
    name: &str,
    what: &str,
    call: impl std::future::Future<Output = Option<CallOutcome>>,
) -> Option<CallOutcome> {
    tokio::select! {
        // The callback first: one that finishes without waiting is never cut, so no event
        // in hand is lost to a stop that arrived meanwhile.
        biased;
        outcome = call => outcome,
        _ = strategy.stop_requested.notified() => {
            tracing::info!(strategy = %name, event = what, "callback cut short by the stop");
            None
        }
    }
}

/// How long the callbacks run while stopping (pending `on_order`s, then `on_stop`) may take.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How often the running version's `state` is written out (also on stop).
pub const DEFAULT_SAVE_EVERY: Duration = Duration::from_secs(30);
