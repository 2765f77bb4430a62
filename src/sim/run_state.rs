//! The running simulator's shared state and clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use super::config::SimConfig;
use super::faults::{FaultActions, FaultControl, FaultState};
use super::hub::{Hub, UserHub};
use super::limiter::Limiter;
use super::market::Synthetic;
use super::matching::Exchange;
use super::record::RequestLog;
use crate::ledger::clock::system_ms;

/// One-minute candles generated for before the start (a little over a day, enough for `ticker/24hr`).
const KLINE_HISTORY_MINUTES: usize = 1_500;

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

impl Sim {
    pub fn new(config: SimConfig) -> Arc<Self> {
        let limiter = Arc::new(Mutex::new(Limiter::new(
            &config.limits,
            config.ban_base.as_millis() as i64,
        )));
        let hub = Arc::new(Hub::default());
        let users = Arc::new(UserHub::default());
        let mut ex = Exchange::new(
            &config.symbols,
            &config.balances,
            hub.clone(),
            users.clone(),
            limiter.clone(),
        );
        ex.set_fees(config.fees);
        ex.set_accounts(config.accounts);
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
        // Books are full and klines have a history before the first request.
        {
            let mut world = sim.world.lock();
            let World { ex, market } = &mut *world;
            market.seed_history(ex, sim.config.seed, KLINE_HISTORY_MINUTES, sim.now());
            // Live trades are numbered after the history's, so ids and counts agree.
            for m in &mut ex.markets {
                m.next_trade_id = m.candles.next_trade_id();
            }
        }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rust_decimal::Decimal;

    use super::*;

    fn still(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            market_tick: Duration::ZERO,
            ..SimConfig::default()
        }
    }

    fn books(sim: &Sim) -> Vec<crate::exchange::binance::wire::DepthSnapshot> {
        let world = sim.world.lock();
        (0..world.ex.markets.len()).map(|i| world.ex.depth(i, 20)).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_market() {
        let (a, b, c) = (Sim::new(still(7)), Sim::new(still(7)), Sim::new(still(8)));
        for _ in 0..50 {
            a.step_market();
            b.step_market();
            c.step_market();
        }
        assert_eq!(books(&a), books(&b));
        assert_ne!(books(&a), books(&c));
    }

    /// Best top-of-book profit of a triangle `quote → x → y → quote`, after three 0.1 % fees.
    fn triangle_edge(sim: &Sim, x_quote: &str, y_x: &str, y_quote: &str) -> f64 {
        let world = sim.world.lock();
        let top = |s: &str| {
            let m = &world.ex.markets[world.ex.symbol_index(s).unwrap()];
            let f = |d: Decimal| d.to_string().parse::<f64>().unwrap();
            (f(m.book.best_bid().unwrap().0), f(m.book.best_ask().unwrap().0))
        };
        let ((xb, xa), (yxb, yxa), (yb, ya)) = (top(x_quote), top(y_x), top(y_quote));
        let fee = 0.999f64.powi(3);
        let forward = (1.0 / xa) * (1.0 / yxa) * yb * fee; // buy x, buy y with x, sell y
        let backward = (1.0 / ya) * yxb * xb * fee; // buy y, sell y for x, sell x
        forward.max(backward) - 1.0
    }

    #[test]
    fn triangles_open_a_few_times_a_minute_and_close_again() {
        let sim = Sim::new(still(3));
        let triangles = [
            ("BTCUSDT", "ETHBTC", "ETHUSDT"),
            ("BTCUSDT", "BNBBTC", "BNBUSDT"),
            ("ETHUSDT", "BNBETH", "BNBUSDT"),
            ("BTCUSDT", "SOLBTC", "SOLUSDT"),
            ("BTCUSDT", "XRPBTC", "XRPUSDT"),
        ];
        let (mut episodes, mut open_steps, mut was_open) = (0, 0, false);
        // Three minutes of 100 ms steps.
        for _ in 0..1_800 {
            sim.step_market();
            let open = triangles.iter().any(|(a, b, c)| triangle_edge(&sim, a, b, c) > 0.0);
            if open && !was_open {
                episodes += 1;
            }
            open_steps += usize::from(open);
            was_open = open;
        }
        assert!((6..=60).contains(&episodes), "{episodes} opportunities in 3 minutes");
        assert!(
            open_steps < 1_800 / 4,
            "opportunities are brief: open {open_steps} of 1800 steps"
        );
    }
}
