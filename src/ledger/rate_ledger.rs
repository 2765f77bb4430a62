//! The one interface callers see: reserve before a request, observe its response.
//!
//! The in-process [`Ledger`] implements it; a ledger shared between processes
//! implements the same calls, so a caller written against the trait runs on either.

use std::future::Future;
use std::time::Duration;

use super::{Cost, Lane, Ledger, LedgerError, LedgerStatus, Observation, Permit, PoolKind, Verdict};

pub trait RateLedger: Clone + Send + Sync + 'static {
    /// Waits up to `wait` for room in every pool `cost` draws on, then takes it all at once.
    fn reserve(
        &self,
        strategy: &str,
        lane: Lane,
        cost: Cost,
        wait: Duration,
    ) -> impl Future<Output = Result<Permit, LedgerError>> + Send;

    /// Reserves only if the budget is there now.
    fn try_reserve(&self, strategy: &str, lane: Lane, cost: Cost) -> Result<Permit, LedgerError>;

    /// Reconciles with a response: the exchange's own counts, and a 429/418.
    fn observe(&self, permit: &Permit, observation: &Observation);

    /// Gives back up to `units` of `kind` the exchange did not charge for `permit`.
    fn credit(&self, permit: &Permit, kind: PoolKind, units: u32);

    /// A 429/418 learned outside a request/response pair.
    fn enter_backoff(&self, verdict: &Verdict);

    /// Pools, backoff state and `strategy`'s use.
    fn status(&self, strategy: &str) -> LedgerStatus;

    /// Exchange time now, in ms.
    fn now_ms(&self) -> i64;
}

impl RateLedger for Ledger {
    fn reserve(
        &self,
        strategy: &str,
        lane: Lane,
        cost: Cost,
        wait: Duration,
    ) -> impl Future<Output = Result<Permit, LedgerError>> + Send {
        Ledger::reserve(self, strategy, lane, cost, wait)
    }

    fn try_reserve(&self, strategy: &str, lane: Lane, cost: Cost) -> Result<Permit, LedgerError> {
        Ledger::try_reserve(self, strategy, lane, cost)
    }

    fn observe(&self, permit: &Permit, observation: &Observation) {
        Ledger::observe(self, permit, observation)
    }

    fn credit(&self, permit: &Permit, kind: PoolKind, units: u32) {
        Ledger::credit(self, permit, kind, units)
    }

    fn enter_backoff(&self, verdict: &Verdict) {
        Ledger::enter_backoff(self, verdict)
    }

    fn status(&self, strategy: &str) -> LedgerStatus {
        Ledger::status(self, strategy)
    }

    fn now_ms(&self) -> i64 {
        Ledger::now_ms(self)
    }
}
