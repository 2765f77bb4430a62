//! Named timers, owned by the strategy's thread rather than by a VM, so they keep
//! running across hot reloads and fire `on_timer` on whichever version is current.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{interval_at, sleep, Instant, MissedTickBehavior};

use super::inbox::{Event, Inbox};

#[derive(Debug, Clone)]
pub enum TimerOp {
    Every(Duration, Arc<str>),
    After(Duration, Arc<str>),
    Cancel(Arc<str>),
}

/// Timers one strategy may have at once (each is a task and a name held by the host).
pub const MAX_TIMERS: usize = 1000;

/// A timer refused because the strategy has [`MAX_TIMERS`] already.
#[derive(Debug, Clone, thiserror::Error)]
#[error("too many timers (at most {MAX_TIMERS} per strategy; cancel one or reuse a name)")]
pub struct TooManyTimers;

/// Where a backtest's timers go: the replay keeps them and fires them in replayed time.
pub trait ReplayedTimers {
    fn apply(&self, op: TimerOp);
    /// Whether a timer of this name is set (a one-shot timer that fired is not).
    fn is_set(&self, name: &str) -> bool;
    /// Timers set now.
    fn count(&self) -> usize;
}

/// The running timers of one strategy. A tick is an inbox event (coalesced by name
/// while the strategy is busy), so timers and market events are handled in order.
pub struct Timers {
    inbox: Option<Arc<Inbox>>,
    tasks: RefCell<HashMap<Arc<str>, JoinHandle<()>>>,
    replayed: Option<Rc<dyn ReplayedTimers>>,
}

impl Timers {
    pub fn new(inbox: Arc<Inbox>) -> Rc<Timers> {
        Rc::new(Timers {
            inbox: Some(inbox),
            tasks: RefCell::new(HashMap::new()),
            replayed: None,
        })
    }

    /// Timers in replayed time: every operation goes to `schedule` instead of a wall-clock task.
    pub fn replayed(schedule: Rc<dyn ReplayedTimers>) -> Rc<Timers> {
        Rc::new(Timers {
            inbox: None,
            tasks: RefCell::new(HashMap::new()),
            replayed: Some(schedule),
        })
    }

    /// Must run inside the strategy thread's `LocalSet`.
    fn apply(&self, op: TimerOp) -> Result<(), TooManyTimers> {
        // The cap holds in both modes: a backtest is no place to exhaust the host's memory either.
        if let TimerOp::Every(_, name) | TimerOp::After(_, name) = &op {
            if self.count() >= MAX_TIMERS && !self.is_set(name) {
                return Err(TooManyTimers);
            }
        }
        let inbox = match (&self.replayed, &self.inbox) {
            (Some(schedule), _) => {
                schedule.apply(op);
                return Ok(());
            }
            (None, Some(inbox)) => inbox.clone(),
            (None, None) => return Ok(()),
        };
        let (name, task) = match op {
            TimerOp::Cancel(name) => {
                if let Some(task) = self.tasks.borrow_mut().remove(&name) {
                    task.abort();
                }
                return Ok(());
            }
            TimerOp::Every(period, name) => {
                let inbox = inbox.clone();
                let tick = name.clone();
                let task = tokio::task::spawn_local(async move {
                    let mut ticks = interval_at(Instant::now() + period, period);
                    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    loop {
                        ticks.tick().await;
                        inbox.push(Event::Timer(tick.clone()));
                    }
                });
                (name, task)
            }
            TimerOp::After(delay, name) => {
                let inbox = inbox.clone();
                let tick = name.clone();
                let task = tokio::task::spawn_local(async move {
                    sleep(delay).await;
                    inbox.push(Event::Timer(tick));
                });
                (name, task)
            }
        };
        // A name registered again replaces its old timer.
        if let Some(old) = self.tasks.borrow_mut().insert(name, task) {
            old.abort();
        }
        Ok(())
    }

    fn is_set(&self, name: &str) -> bool {
        match &self.replayed {
            Some(schedule) => schedule.is_set(name),
            None => self.tasks.borrow().contains_key(name),
        }
    }

    /// Timers set now; finished one-shot tasks are forgotten first.
    fn count(&self) -> usize {
        match &self.replayed {
            Some(schedule) => schedule.count(),
            None => {
                let mut tasks = self.tasks.borrow_mut();
                if tasks.len() >= MAX_TIMERS {
                    tasks.retain(|_, task| !task.is_finished());
                }
                tasks.len()
            }
        }
    }

    pub fn cancel_all(&self) {
        for (_, task) in self.tasks.borrow_mut().drain() {
            task.abort();
        }
    }

    pub fn names(&self) -> Vec<Arc<str>> {
        let mut tasks = self.tasks.borrow_mut();
        tasks.retain(|_, task| !task.is_finished());
        tasks.keys().cloned().collect()
    }
}

/// A VM's view of the timers: until the VM becomes the running version (its file
/// loaded and validated), timer calls are held back, so a reload that fails changes nothing.
pub struct TimerApi {
    timers: Option<Rc<Timers>>,
    active: Cell<bool>,
    pending: RefCell<Vec<TimerOp>>,
}

impl TimerApi {
    /// `None` for VMs that never run (`runner check`).
    pub fn new(timers: Option<Rc<Timers>>) -> Rc<TimerApi> {
        Rc::new(TimerApi {
            timers,
            active: Cell::new(false),
            pending: RefCell::new(Vec::new()),
        })
    }

    pub fn apply(&self, op: TimerOp) -> Result<(), TooManyTimers> {
        match &self.timers {
            Some(timers) if self.active.get() => timers.apply(op),
            _ => {
                let mut pending = self.pending.borrow_mut();
                let name = op_name(&op);
                // Only the last call per name matters; the list stays as short as the names used.
                if let Some(at) = pending.iter().position(|old| op_name(old) == name) {
                    pending.remove(at);
                } else if pending.len() >= MAX_TIMERS {
                    return Err(TooManyTimers);
                }
                pending.push(op);
                Ok(())
            }
        }
    }

    /// This VM is now the running version: apply what its loading asked for.
    pub fn activate(&self) {
        self.active.set(true);
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        if let Some(timers) = &self.timers {
            for op in pending {
                if let Err(err) = timers.apply(op) {
                    tracing::warn!("timer left out: {err}");
                }
            }
        }
    }
}

fn op_name(op: &TimerOp) -> &Arc<str> {
    match op {
        TimerOp::Every(_, name) | TimerOp::After(_, name) | TimerOp::Cancel(name) => name,
    }
}
