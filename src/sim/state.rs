//! The running simulator's shared state and clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use super::config::SimConfig;
use super::engine::Exchange;
use super::faults::{FaultActions, FaultControl, FaultState};
use super::hub::{Hub, UserHub};
use super::limiter::Limiter;
use super::market::Synthetic;
use super::record::RequestLog;

/// The exchange and its synthetic market, changed together under one lock so every event
/// comes out in order.
pub struct World {
    pub ex: Exchange,
    pub market: Synthetic,
}

pub struct Sim {
    pub config: SimConfig,
    pub limiter: Arc<Mutex<Limiter>>,
    pub world: Mutex<World>,
    pub hub: Arc<Hub>,
    pub users: Arc<UserHub>,
    pub faults: FaultControl,
    pub log: RequestLog,
    /// Bumped to drop every WebSocket connection (fault knob and shutdown).
    pub drop_ws: Arc<watch::Sender<u64>>,
    next_id: AtomicU64,
    fault_rng: Mutex<StdRng>,
}

struct LimiterActions {
    limiter: Arc<Mutex<Limiter>>,
    state: Arc<Mutex<FaultState>>,
}

impl FaultActions for LimiterActions {
    fn ban_now(&self, secs: u64) {
        let now = system_ms() + self.state.lock().clock_skew_ms;
        self.limiter.lock().ban_for(now, secs);
    }

    fn add_external_weight(&self, weight: u64) {
        let now = system_ms() + self.state.lock().clock_skew_ms;
        self.limiter.lock().add_external_weight(now, weight);
    }
}

pub fn system_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Sim {
    pub fn new(config: SimConfig) -> Arc<Self> {
        let limiter = Arc::new(Mutex::new(Limiter::new(
            &config.limits,
            config.ban_base.as_millis() as i64,
        )));
        let hub = Arc::new(Hub::default());
        let users = Arc::new(UserHub::default());
        let ex = Exchange::new(
            &config.symbols,
            &config.balances,
            hub.clone(),
            users.clone(),
            limiter.clone(),
        );
        let market = Synthetic::new(&config);
        let state = Arc::new(Mutex::new(FaultState::default()));
        let (drop_tx, _) = watch::channel(0u64);
        let faults = FaultControl {
            state: state.clone(),
            drop_ws: Arc::new(drop_tx),
            actions: Arc::new(LimiterActions {
                limiter: limiter.clone(),
                state,
            }),
        };
        let sim = Arc::new(Sim {
            log: RequestLog::new(config.request_log_cap),
            fault_rng: Mutex::new(StdRng::seed_from_u64(config.seed ^ 0x5eed)),
            drop_ws: faults.drop_ws.clone(),
            config,
            limiter,
            world: Mutex::new(World { ex, market }),
            hub,
            users,
            faults,
            next_id: AtomicU64::new(1),
        });
        // Books are full before the first request.
        sim.step_market();
        sim
    }

    /// Exchange time: the wall clock plus any injected skew.
    pub fn now(&self) -> i64 {
        system_ms() + self.faults.clock_skew_ms()
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn fault_roll(&self) -> f64 {
        self.fault_rng.lock().random()
    }

    pub fn step_market(&self) {
        let now = self.now();
        let gap = self.faults.take_depth_gap();
        let mut world = self.world.lock();
        let World { ex, market } = &mut *world;
        market.step(ex, gap, now);
    }
}
