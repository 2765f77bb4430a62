//! Backtests: a strategy file replayed against recorded markets (`runner record` files) or
//! Binance's public historical CSV files, through the simulator's matching engine, in replayed
//! exchange time (see docs/backtesting.md).
//!
//! One thread runs everything: the replay applies one market item, then the strategy handles
//! every event that produced (its exchange calls complete in replayed time, see [`venue`]) before
//! the next item; timers fire at their replayed instants. Nothing reads the wall clock, so the same
//! inputs give the same report, byte for byte.

pub mod data;
pub mod live;
pub mod report;
pub(crate) mod venue;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;

use crate::exchange::Venue;
use crate::host::calls::Calls;
use crate::host::inbox::Event;
use crate::host::market_run::{MarketRun, RunEvent};
use crate::host::stats::Stats;
use crate::host::timers::{ReplayedTimers, TimerOp, Timers};
use crate::host::vm::{CallOutcome, StrategyVm, VmOptions};
use crate::host::{HostConfig, LoadError, StopReason};
use crate::ledger::RateLimit;
pub use crate::sim::Fees;
use data::{DataError, Dataset};
use report::Report;
use venue::{ReplaySetup, ReplayVenue};

#[derive(Debug, Clone)]
pub struct BacktestOptions {
    pub strategy: PathBuf,
    pub data: PathBuf,
    /// Epoch ms bounds of the replay.
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// One way, applied to every order and cancel.
    pub latency: Duration,
    pub limits: Vec<RateLimit>,
    pub balances: Vec<(String, Decimal)>,
    /// Commission rates of the fills.
    pub fees: Fees,
    pub stdlib_dir: PathBuf,
    /// Where `report.json` and `equity.svg` go.
    pub report_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error("{0}")]
    Data(#[from] DataError),
    #[error("{0}")]
    Strategy(#[from] LoadError),
    #[error("cannot start: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot write the report to {}: {source}", path.display())]
    Report {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A named timer in replayed time.
#[derive(Debug, Clone, Copy)]
struct Timer {
    due_ms: i64,
    period_ms: Option<i64>,
}

type Schedule = Rc<RefCell<BTreeMap<Arc<str>, Timer>>>;

/// The strategy's timers as the replay keeps them, due in replayed time.
struct ReplaySchedule {
    schedule: Schedule,
    venue: Arc<ReplayVenue>,
}

impl ReplayedTimers for ReplaySchedule {
    fn apply(&self, op: TimerOp) {
        let now = self.venue.now_ms();
        let mut timers = self.schedule.borrow_mut();
        match op {
            TimerOp::Every(period, name) => {
                let period_ms = (period.as_millis() as i64).max(1);
                let timer = Timer {
                    due_ms: now + period_ms,
                    period_ms: Some(period_ms),
                };
                timers.insert(name, timer);
            }
            TimerOp::After(delay, name) => {
                let timer = Timer {
                    due_ms: now + delay.as_millis() as i64,
                    period_ms: None,
                };
                timers.insert(name, timer);
            }
            TimerOp::Cancel(name) => {
                timers.remove(&name);
            }
        }
    }

    fn is_set(&self, name: &str) -> bool {
        self.schedule.borrow().contains_key(name)
    }

    fn count(&self) -> usize {
        self.schedule.borrow().len()
    }
}

/// Loads the data, replays it through the strategy and returns the report (also written to
/// `report_dir` when given).
pub fn run(options: &BacktestOptions) -> Result<Report, BacktestError> {
    let data = data::load(&options.data, options.from, options.to)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BacktestError::Runtime)?;
    let local = tokio::task::LocalSet::new();
    let report = local.block_on(&runtime, replay(options, data))?;
    if let Some(dir) = &options.report_dir {
        report::write(&report, dir).map_err(|source| BacktestError::Report {
            path: dir.clone(),
            source,
        })?;
    }
    Ok(report)
}

async fn replay(options: &BacktestOptions, data: Dataset) -> Result<Report, BacktestError> {
    let start_ms = data.items.first().map_or(0, |t| t.time_ms);
    let venue = ReplayVenue::new(ReplaySetup {
        items: data.items,
        symbols: data.symbols,
        synthetic_book: data.synthetic_book,
        balances: options.balances.clone(),
        limits: options.limits.clone(),
        latency: options.latency,
        fees: options.fees,
    });
    let start_balances = venue.balances();
    let schedule: Schedule = Rc::new(RefCell::new(BTreeMap::new()));
    let timers = Timers::replayed(Rc::new(ReplaySchedule {
        schedule: schedule.clone(),
        venue: venue.clone(),
    }));
    let host = HostConfig::default();
    let venue_dyn: Arc<dyn Venue> = venue.clone();
    let known = {
        let venue = venue.clone();
        move |symbol: &str| venue.symbol(symbol).is_some()
    };
    let vm = StrategyVm::load(
        &options.strategy,
        VmOptions {
            venue: venue_dyn,
            calls: Some(Calls::default()),
            stdlib_dir: &options.stdlib_dir,
            memory_limit: host.memory_limit,
            instruction_budget: (host.cpu_limit.as_secs_f64() * crate::host::limits::INSTRUCTIONS_PER_SECOND) as u64,
            stats: Arc::new(Stats::default()),
            timers: Some(timers),
            known_symbol: &known,
            state: None,
        },
    )?;
    let name: Arc<str> = Arc::from(vm.meta.name.as_str());
    let _ = venue.set_subscriptions(&name, vm.meta.stream_keys()).await;
    let mut errors = ErrorCount::default();
    vm.activate();
    errors.note(vm.on_start().await);
    loop {
        // Quotes and trades go to the strategy as one run, the replay stepping on between them,
        // until something else is due (see `ReplayRun`).
        deliver_run(
            &vm,
            &mut ReplayRun {
                venue: &venue,
                schedule: &schedule,
            },
            &mut errors,
        )
        .await;
        // Everything the last step produced is handled before time moves on.
        let next = venue.world.lock().pending.pop_front();
        if let Some(event) = next {
            errors.note(vm.deliver(&event).await);
            continue;
        }
        let next_item = venue.world.lock().next_time();
        let due = schedule
            .borrow()
            .iter()
            .min_by_key(|(_, t)| t.due_ms)
            .map(|(name, t)| (name.clone(), *t));
        let Some(next_item) = next_item else {
            // The data is over; timers due after it would fire on a frozen market.
            break;
        };
        match due {
            Some((timer, t)) if t.due_ms <= next_item => {
                venue.world.lock().advance_to(t.due_ms);
                match t.period_ms {
                    Some(period) => {
                        let due_ms = (t.due_ms + period).max(venue.now_ms() + 1);
                        schedule.borrow_mut().insert(
                            timer.clone(),
                            Timer {
                                due_ms,
                                period_ms: Some(period),
                            },
                        );
                    }
                    None => {
                        schedule.borrow_mut().remove(&timer);
                    }
                }
                errors.note(vm.deliver(&Event::Timer(timer)).await);
            }
            _ => {
                venue.world.lock().step();
            }
        }
    }
    errors.note(vm.on_stop(StopReason::Duration.as_str()).await);
    venue.world.lock().report_order_changes();
    // Order events from the stop are delivered too, so the strategy's state is complete.
    loop {
        let next = venue.world.lock().pending.pop_front();
        match next {
            Some(event @ Event::Order(_)) => errors.note(vm.deliver(&event).await),
            Some(_) => {}
            None => break,
        }
    }
    Ok(report::build(
        &venue,
        &vm.meta.name,
        start_ms,
        &start_balances,
        errors.errors,
        errors.trips,
    ))
}

/// The replay as a run of market events: the quotes and trades the last item produced, stepping on
/// to the next item once they are handled, exactly as the driver's loop would, until an event of
/// another kind (an order update) or a timer is due, or the data ends.
struct ReplayRun<'a> {
    venue: &'a ReplayVenue,
    schedule: &'a Schedule,
}

impl MarketRun for ReplayRun<'_> {
    fn next_event(&mut self) -> Option<(RunEvent, Option<std::time::Instant>)> {
        loop {
            let mut world = self.venue.world.lock();
            match world.pending.front() {
                Some(Event::Book(_) | Event::Trade(_)) => {
                    return match world.pending.pop_front() {
                        Some(Event::Book(quote)) => Some((RunEvent::Book(quote), None)),
                        Some(Event::Trade(trade)) => Some((RunEvent::Trade(trade), None)),
                        _ => None,
                    };
                }
                Some(_) => return None,
                None => {}
            }
            let next_item = world.next_time()?;
            if self.schedule.borrow().values().any(|t| t.due_ms <= next_item) {
                return None;
            }
            world.step();
        }
    }
}

/// Delivers `run` to the strategy, counting the callbacks that fail or trip.
async fn deliver_run(vm: &StrategyVm, run: &mut ReplayRun<'_>, errors: &mut ErrorCount) {
    loop {
        match vm.deliver_run(run).await {
            CallOutcome::Done => return,
            failed => errors.note(Some(failed)),
        }
    }
}

#[derive(Default)]
struct ErrorCount {
    errors: u64,
    trips: u64,
}

impl ErrorCount {
    fn note(&mut self, outcome: Option<CallOutcome>) {
        match outcome {
            Some(CallOutcome::Failed(message)) => {
                self.errors += 1;
                tracing::error!("strategy error: {message}");
            }
            Some(CallOutcome::Tripped(kind)) => {
                self.trips += 1;
                tracing::warn!("{}", kind.describe());
            }
            _ => {}
        }
    }
}

/// The default starting balances: the paper exchange's.
pub fn default_balances() -> Vec<(String, Decimal)> {
    crate::sim::SimConfig::default().balances
}
