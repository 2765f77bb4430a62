//! The local side of a ledger shared with other processes.
//!
//! A shared pool is spent locally, as any other, but only up to the slice of the
//! current window this process holds: its *lease*. A lease keeper (the Redis one in
//! `shared`) is woken when a request needs more than the lease holds, when the
//! exchange reported a count or a backoff the other processes must hear of, and
//! grants, trims or (without its backend) sets a conservative share here. The hot
//! path stays the local one: a lease hit takes the same lock and the same integers.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::limits::Scope;
use super::limits::{RateLimit, WindowKind};
use super::pools::Pool;
use super::{BackoffState, Ledger, ScopeBackoff};

/// The exchange's count of a shared pool's window, for the other processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerReport {
    pub limit: RateLimit,
    pub window_start_ms: i64,
    pub used: u64,
}

/// One shared pool as the keeper sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseView {
    pub limit: RateLimit,
    pub window_start_ms: i64,
    /// When the window rolls here (nominal end plus the boundary guard).
    pub window_end_ms: i64,
    pub used: u64,
    pub lease: u64,
    /// Units wanted beyond the lease (0: none).
    pub wanted: u64,
    /// Whether the units wanted are for cancels or orders (which may use the whole limit).
    pub wanted_full: bool,
    /// Whether a request waits for what is wanted (otherwise the lease only runs low).
    pub wanted_by_request: bool,
    /// What the market-data lane may fill the window up to.
    pub market_cap: u64,
}

/// What the keeper has to pass on: counts and back-offs seen here.
#[derive(Debug, Default)]
pub struct News {
    pub reports: Vec<ServerReport>,
    pub backoffs: Vec<ScopeBackoff>,
}

/// How the pools are shared, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sharing {
    /// Where the shared budget lives, without credentials (e.g. `redis://host:6379/0`).
    pub backend: String,
    /// The budget's name (one per egress IP).
    pub group: String,
    /// False while the backend is out of reach and a conservative local share is spent.
    pub connected: bool,
    /// Processes last seen alive on this budget (this one included).
    pub processes: u32,
}

/// Which pools are shared, and how low a lease may run before more is asked for.
#[derive(Clone)]
pub struct ShareRule(Arc<RuleFn>);

/// For a pool to share: the lease left below which more is wanted.
type RuleFn = dyn Fn(&RateLimit) -> Option<u64> + Send + Sync;

impl ShareRule {
    /// `rule` returns, for a pool to share, the lease left below which more is wanted.
    pub fn new(rule: impl Fn(&RateLimit) -> Option<u64> + Send + Sync + 'static) -> Self {
        ShareRule(Arc::new(rule))
    }

    pub(crate) fn apply(&self, pool: &mut Pool) {
        if pool.limit.window != WindowKind::Fixed {
            return;
        }
        if let Some(refill_below) = (self.0)(&pool.limit) {
            pool.lease.get_or_insert(0);
            pool.refill_below = refill_below;
        }
    }
}

impl Ledger {
    /// Shares the fixed-window pools `rule` selects, now and when announced later: from
    /// now on they are spent only up to what [`Ledger::grant`] adds. Returns what is
    /// woken when there is news for the keeper.
    pub fn share_pools(&self, rule: ShareRule) -> Arc<Notify> {
        let keeper = self.inner.keeper.get_or_init(|| Arc::new(Notify::new())).clone();
        let mut st = self.inner.state.lock();
        for pool in &mut st.pools {
            rule.apply(pool);
        }
        st.shared = true;
        st.share_rule = Some(rule);
        keeper
    }

    /// The shared pools now (windows rolled to the present).
    pub fn leases(&self) -> Vec<LeaseView> {
        let local = self.inner.exchange_now();
        let mut st = self.inner.state.lock();
        st.advance(local);
        st.pools
            .iter()
            .filter_map(|p| {
                Some(LeaseView {
                    limit: p.limit,
                    window_start_ms: p.window_start,
                    window_end_ms: p.window_end,
                    used: p.used,
                    lease: p.lease?,
                    wanted: p.wanted,
                    wanted_full: p.wanted_full,
                    wanted_by_request: p.wanted_by_request,
                    market_cap: p.market_cap,
                })
            })
            .collect()
    }

    /// Takes the counts and backoff seen since the last call.
    pub fn take_news(&self) -> News {
        let mut st = self.inner.state.lock();
        News {
            reports: std::mem::take(&mut st.server_reports),
            backoffs: std::mem::take(&mut st.backoff_reports),
        }
    }

    /// Adds `units` to the lease of `limit`'s pool if its window is still the one
    /// starting at `window_start_ms`; returns whether it was. Admits whoever now fits.
    pub fn grant(&self, limit: &RateLimit, window_start_ms: i64, units: u64) -> bool {
        let local = self.inner.exchange_now();
        let mut st = self.inner.state.lock();
        let now = st.advance(local);
        let Some(pool) = st
            .pools
            .iter_mut()
            .find(|p| p.limit.same_pool(limit) && p.window_start == window_start_ms)
        else {
            return false;
        };
        let Some(lease) = pool.lease.as_mut() else {
            return false;
        };
        *lease = lease.saturating_add(units);
        pool.wanted = 0;
        pool.wanted_full = false;
        pool.wanted_by_request = false;
        st.dispatch(now);
        self.inner.nudge_driver(&st);
        self.inner.tell_keeper(&mut st);
        true
    }

    /// Lowers the lease of `limit`'s pool in the window starting at `window_start_ms` to
    /// what is spent plus `keep`, and returns what it gave up (for the other processes).
    pub fn trim(&self, limit: &RateLimit, window_start_ms: i64, keep: u64) -> u64 {
        let mut st = self.inner.state.lock();
        let Some(pool) = st
            .pools
            .iter_mut()
            .find(|p| p.limit.same_pool(limit) && p.window_start == window_start_ms)
        else {
            return 0;
        };
        match pool.lease.as_mut() {
            Some(lease) if *lease > pool.used.saturating_add(keep) && pool.wanted == 0 => {
                let kept = pool.used.saturating_add(keep);
                let spare = *lease - kept;
                *lease = kept;
                spare
            }
            _ => 0,
        }
    }

    /// Asks the keeper for a lease of `limit`'s pool in the window starting at
    /// `window_start_ms` before any request needs it (a window that just began).
    pub fn want_lease(&self, limit: &RateLimit, window_start_ms: i64) {
        let mut st = self.inner.state.lock();
        let Some(pool) = st
            .pools
            .iter_mut()
            .find(|p| p.limit.same_pool(limit) && p.window_start == window_start_ms)
        else {
            return;
        };
        if pool.lease.is_some() && pool.wanted == 0 {
            pool.wanted = 1;
            st.lease_news = true;
        }
    }

    /// A back-off another process entered on `scope`: nothing drawing on that scope is sent
    /// here either until it ends.
    pub fn join_backoff(&self, scope: Scope, state: BackoffState, resume_at_ms: i64) {
        let local = self.inner.exchange_now();
        let mut st = self.inner.state.lock();
        let now = st.advance(local);
        if resume_at_ms <= now || !st.backoffs.join(scope, state, resume_at_ms) {
            return;
        }
        tracing::warn!(
            state = state.as_str(),
            %scope,
            resume_at_ms,
            "another process on this IP was told to back off; nothing is sent from it until then"
        );
        st.generation += 1;
        st.dispatch(now);
        self.inner.nudge_driver(&st);
    }

    /// Records how the pools are shared now, for `status`.
    pub fn set_sharing(&self, sharing: Sharing) {
        self.inner.state.lock().sharing = Some(Box::new(sharing));
    }
}
