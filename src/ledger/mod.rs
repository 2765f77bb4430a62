//! The shared ledger of the exchange's limits.
//!
//! Every request to an exchange reserves its [`Cost`] here first, atomically across
//! every pool it touches; responses are reconciled back with [`Ledger::observe`].
//! While the exchange has asked us to back off (429) or banned the IP (418),
//! nothing is admitted at all.
//!
//! INTERFACE NOTE: the signatures below are the contract the exchange client codes
//! against. Bodies are being implemented.

pub mod clock;
pub mod limits;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use clock::{Clock, TokioClock};
pub use limits::{Interval, IntervalUnit, PoolKind, RateLimit};

use crate::exchange::types::{ApiError, ErrorCode};

/// Priority classes; earlier lanes go first when budget frees up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Lane {
    Cancel,
    Order,
    MarketData,
}

/// What one request draws from the pools.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cost {
    /// REQUEST_WEIGHT units.
    pub weight: u32,
    /// Unfilled-order count units (ORDERS pools).
    pub orders: u32,
    /// RAW_REQUESTS units (1 per request).
    pub raw: u32,
    /// WebSocket connection attempts (CONNECTIONS pools).
    pub connections: u32,
}

#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// Fraction of every window the market-data lane may never take, so cancels
    /// and orders always fit. Default 0.05.
    pub market_headroom: f64,
    /// Upper bound of random extra wait added after a Retry-After, so a crowd of
    /// waiters does not hit the exchange at the same instant. Default 250 ms.
    pub backoff_jitter: Duration,
    /// Where windows and backoff state persist; `None` keeps them in memory only.
    pub state_dir: Option<PathBuf>,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            market_headroom: 0.05,
            backoff_jitter: Duration::from_millis(250),
            state_dir: None,
        }
    }
}

/// Budget held for one request. Pass it to [`Ledger::observe`] with the response.
#[derive(Debug, Clone)]
pub struct Permit {
    pub strategy: Arc<str>,
    pub cost: Cost,
    pub lane: Lane,
    /// Exchange time (ms) at which the budget was granted, i.e. the send time.
    pub sent_at_ms: i64,
    /// Orders the newest observation by send time.
    pub seq: u64,
}

/// How the exchange judged a response, translated by the venue adapter.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Ok,
    /// 429: wait this long before anything else is sent.
    Throttled {
        retry_after: Duration,
    },
    /// 418: the IP is banned until this exchange time (ms).
    Banned {
        until_ms: i64,
    },
}

/// The exchange's own count of a pool's current window, from a response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerUsage {
    pub kind: PoolKind,
    pub interval: Interval,
    pub used: u64,
}

/// A response, as the ledger needs to see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub usage: Vec<ServerUsage>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackoffState {
    Normal,
    Throttled,
    Banned,
}

impl BackoffState {
    pub fn as_str(self) -> &'static str {
        match self {
            BackoffState::Normal => "normal",
            BackoffState::Throttled => "throttled",
            BackoffState::Banned => "banned",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolStatus {
    pub kind: PoolKind,
    pub interval: Interval,
    pub limit: u64,
    pub used: u64,
    /// Exchange time (ms) at which the current window ends.
    pub resets_at_ms: i64,
    /// Highest `used` seen in any window since start.
    pub peak: u64,
}

/// What one strategy spent in the current windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StrategyUsage {
    pub weight: u64,
    pub orders: u64,
    /// Everything since start.
    pub total_weight: u64,
    pub total_orders: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerStatus {
    pub state: BackoffState,
    pub resume_at_ms: Option<i64>,
    pub pools: Vec<PoolStatus>,
    pub mine: StrategyUsage,
    /// 429s and 418s received since start (should stay 0).
    pub throttled_count: u64,
    pub banned_count: u64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LedgerError {
    #[error("budget exhausted; next room at exchange time {until_ms} ms, past the wait deadline")]
    RateLimited { until_ms: i64 },
    #[error("the exchange asked us to back off until exchange time {until_ms} ms")]
    Throttled { until_ms: i64 },
    #[error("the IP is banned until exchange time {until_ms} ms")]
    Banned { until_ms: i64 },
    #[error("a single request costs more than a pool's whole window ({0})")]
    TooLarge(String),
    #[error("the ledger is closed")]
    Closed,
}

impl LedgerError {
    /// The strategy-facing error, with `retry_after_ms` relative to `now_ms`.
    pub fn to_api_error(&self, now_ms: i64) -> ApiError {
        let after = |until: i64| (until - now_ms).max(0) as u64;
        match self {
            LedgerError::RateLimited { until_ms } => {
                ApiError::new(ErrorCode::RateLimited, self.to_string()).with_retry_after(after(*until_ms))
            }
            LedgerError::Throttled { until_ms } => {
                ApiError::new(ErrorCode::Backoff, self.to_string()).with_retry_after(after(*until_ms))
            }
            LedgerError::Banned { until_ms } => {
                ApiError::new(ErrorCode::Banned, self.to_string()).with_retry_after(after(*until_ms))
            }
            LedgerError::TooLarge(_) => ApiError::new(ErrorCode::InvalidOrder, self.to_string()),
            LedgerError::Closed => ApiError::new(ErrorCode::Stopped, self.to_string()),
        }
    }
}

/// The ledger. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Ledger {
    _todo: Arc<()>,
}

#[allow(unused_variables)]
impl Ledger {
    /// Builds a ledger with these pools (use [`limits::binance_spot_defaults`] until
    /// the exchange announces its own). Restores persisted state from
    /// `config.state_dir` when present and still current.
    pub fn new(limits: Vec<RateLimit>, config: LedgerConfig, clock: Arc<dyn Clock>) -> Self {
        todo!("ledger implementation")
    }

    /// Replaces the pool definitions (e.g. after `exchangeInfo`), keeping counts of
    /// windows that still match.
    pub fn set_limits(&self, limits: Vec<RateLimit>) {
        todo!()
    }

    /// Exchange time minus local time, in ms (from the exchange's time endpoint).
    pub fn set_server_offset_ms(&self, offset_ms: i64) {
        todo!()
    }

    /// Current exchange time in ms.
    pub fn now_ms(&self) -> i64 {
        todo!()
    }

    /// Waits up to `wait` for room in every pool `cost` touches, then takes it all
    /// at once. FIFO within a lane; higher lanes first. Fails at once during a
    /// backoff or ban whose end lies past the deadline.
    pub async fn reserve(&self, strategy: &str, lane: Lane, cost: Cost, wait: Duration) -> Result<Permit, LedgerError> {
        todo!()
    }

    /// Reserves only if the budget is there now.
    pub fn try_reserve(&self, strategy: &str, lane: Lane, cost: Cost) -> Result<Permit, LedgerError> {
        todo!()
    }

    /// Reconciles with a response: raises local counts to the server's (never
    /// lowered by an older response) and enters backoff or ban on a 429 or 418.
    pub fn observe(&self, permit: &Permit, observation: &Observation) {
        todo!()
    }

    /// Gives back weight the exchange did not charge (successful order calls cost 0).
    pub fn credit(&self, permit: &Permit, weight: u32) {
        todo!()
    }

    /// An order got its first fill: the exchange lowers the unfilled-order count.
    pub fn order_filled(&self, count: u32) {
        todo!()
    }

    /// A 429/418 learned outside a request/response pair (e.g. a WebSocket error frame).
    pub fn enter_backoff(&self, verdict: &Verdict) {
        todo!()
    }

    pub fn status(&self, strategy: &str) -> LedgerStatus {
        todo!()
    }

    /// Writes windows and backoff state to the state dir (no-op without one).
    pub fn save(&self) -> std::io::Result<()> {
        todo!()
    }
}
