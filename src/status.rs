//! What a running runner shows about itself: the ledger's pools and state, and each strategy's
//! orders, PnL, budget share, latency and last error. Served as JSON at `/status` (beside the
//! Prometheus metrics) and read back by `runner top`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::exchange::Venue;
use crate::host::Host;
use crate::ledger::lease::Sharing;
use crate::ledger::limits::PoolKind;
use crate::ledger::{LedgerStatus, PoolStatus, ScopeBackoffStatus};

/// How many seconds of weight-per-second history `/status` carries (for the sparkline).
pub const WEIGHT_HISTORY_SECS: usize = 300;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusReport {
    pub venue: String,
    /// The exchange's time as the ledger reckons it (ms since the epoch): resets and resumes are in it.
    pub now_ms: i64,
    /// `normal`, `throttled` (after a 429) or `banned` (after a 418).
    pub state: String,
    pub resume_at_ms: Option<i64>,
    /// 429 and 418 responses since start (the ledger exists to keep these at 0).
    pub throttled: u64,
    pub banned: u64,
    pub pools: Vec<PoolReport>,
    pub strategies: Vec<StrategyReport>,
    /// Request weight spent in each of the last seconds, oldest first.
    pub weight_per_second: Vec<u64>,
    /// Where the shared pools live and how many processes share them; absent when this
    /// process owns its pools alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharing: Option<Sharing>,
    /// Each scope (IP group, or an account whose new orders are held) a back-off stops now, once:
    /// the others go on. Empty when none.
    #[serde(default)]
    pub backoffs: Vec<BackoffReport>,
}

/// One scope's back-off in force.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackoffReport {
    /// The scope it stops: `ip0` (the first egress IP group), `ip1`, ..., or `account1` (its new orders).
    pub scope_id: String,
    /// The IP group's or account's configured name, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_name: Option<String>,
    /// `throttled` or `banned`.
    pub state: String,
    /// Why: the exchange answered 429 (throttled) or 418 (banned).
    pub http_status: Option<u16>,
    /// When it ends, on the exchange's clock (ms since the epoch).
    pub until_ms: i64,
    /// Seconds left until then.
    pub secs_left: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PoolReport {
    /// `REQUEST_WEIGHT`, `ORDERS`, `RAW_REQUESTS` or `CONNECTIONS`.
    pub kind: String,
    /// Window length, e.g. `1m` or `10s`.
    pub interval: String,
    /// `ip` (weight, raw requests, connections) or `account` (orders), as the exchange counts them.
    pub scope: String,
    pub limit: u64,
    pub used: u64,
    pub peak: u64,
    pub resets_at_ms: i64,
    /// The pool's scope with its index: `ip0` (the first egress IP group), `account0`, ...
    #[serde(default)]
    pub scope_id: String,
    /// Whether the pool is shared with other processes (see `StatusReport::sharing`).
    #[serde(default)]
    pub shared: bool,
    /// The scope's configured name (an IP group's or an account's), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_name: Option<String>,
    /// The back-off in force on the pool's scope: `normal`, `throttled` (429) or `banned` (418).
    #[serde(default = "normal")]
    pub backoff: String,
    /// Why it is backed off: 429 or 418; absent when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_http_status: Option<u16>,
    /// When the back-off ends, on the exchange's clock (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_until_ms: Option<i64>,
    /// Seconds left until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_secs_left: Option<f64>,
}

fn normal() -> String {
    crate::ledger::BackoffState::Normal.as_str().to_string()
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1e3
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StrategyReport {
    pub name: String,
    pub running: bool,
    pub orders_placed: u64,
    pub orders_filled: u64,
    pub orders_cancelled: u64,
    pub orders_rejected: u64,
    pub open_orders: usize,
    /// Order updates that filled something (partial fills included).
    pub fills: u64,
    /// Net asset flows from fills: realised PnL per asset, fees included.
    pub pnl: BTreeMap<String, f64>,
    /// Request weight the ledger charged this strategy since start.
    pub weight_total: u64,
    /// Its use of the shortest request-weight window, in percent of that window's limit.
    pub budget_share_pct: f64,
    pub tick_to_order_p50_us: Option<f64>,
    pub tick_to_order_p99_us: Option<f64>,
    pub errors: u64,
    pub last_error: Option<String>,
    pub events_delivered: u64,
    pub events_conflated: u64,
    pub trades_dropped: u64,
    pub sandbox_trips: u64,
}

/// The exchange counts weight, raw requests and connections per IP, and orders per account.
pub fn scope_of(kind: PoolKind) -> &'static str {
    match kind {
        PoolKind::Orders => "account",
        _ => "ip",
    }
}

/// Pool `p` of `ledger`, as /status shows it.
pub fn pool_report(ledger: &LedgerStatus, p: &PoolStatus) -> PoolReport {
    PoolReport {
        kind: p.kind.as_str().to_string(),
        interval: p.interval.header_suffix().to_ascii_lowercase(),
        scope: scope_of(p.kind).to_string(),
        limit: p.limit,
        used: p.used,
        peak: p.peak,
        resets_at_ms: p.resets_at_ms,
        scope_id: p.scope.to_string(),
        shared: p.lease.is_some(),
        scope_name: ledger.scope_name(p.scope).map(str::to_owned),
        backoff: p.backoff.as_str().to_string(),
        backoff_http_status: p.backoff.http_status(),
        backoff_until_ms: p.backoff_until_ms,
        backoff_secs_left: p.backoff_until_ms.map(|until| secs(ledger.left_ms(until))),
    }
}

pub fn backoff_report(b: &ScopeBackoffStatus) -> BackoffReport {
    BackoffReport {
        scope_id: b.scope.to_string(),
        scope_name: b.scope_name.clone(),
        state: b.state.as_str().to_string(),
        http_status: b.state.http_status(),
        until_ms: b.until_ms,
        secs_left: secs(b.left_ms),
    }
}

/// The scope as the status line writes it: `ip1`, or `ip1(spare)` when it has a name.
fn scope_label(scope: crate::ledger::Scope, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{scope}({name})"),
        None => scope.to_string(),
    }
}

/// Each back-off in force in one line, e.g. `ip1(spare) throttled (429) until 1700000065100
/// (4.2 s left)`, or `none`.
pub fn backoffs_brief(ledger: &LedgerStatus) -> String {
    let backoffs = ledger.backoffs();
    if backoffs.is_empty() {
        return "none".to_string();
    }
    backoffs
        .iter()
        .map(|b| {
            let why = b.state.http_status().map_or(String::new(), |code| format!(" ({code})"));
            format!(
                "{} {}{why} until {} ({:.1} s left)",
                scope_label(b.scope, b.scope_name.as_deref()),
                b.state.as_str(),
                b.until_ms,
                secs(b.left_ms)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The pools in one line, each with its scope (IP group, account) and whether it is shared and
/// by how many processes, then where the shared ones live, e.g. `REQUEST_WEIGHT 1m ip0 shared
/// by 4, ORDERS 10s account0 shared by 4, ...; shared through redis://host:6379/0 group office-ip
/// (connected)`.
pub fn pools_brief(ledger: &LedgerStatus) -> String {
    let sharing = ledger.sharing.as_ref();
    let pools = ledger
        .pools
        .iter()
        .map(|p| {
            let how = match (p.lease, sharing) {
                (Some(_), Some(s)) => format!("shared by {}", s.processes),
                _ => "own".to_string(),
            };
            let scope = scope_label(p.scope, ledger.scope_name(p.scope));
            format!(
                "{} {} {scope} {how}",
                p.kind.as_str(),
                p.interval.header_suffix().to_ascii_lowercase(),
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    match sharing {
        Some(s) => format!(
            "{pools}; shared through {} group {} ({})",
            s.backend,
            s.group,
            if s.connected {
                "connected"
            } else {
                "UNAVAILABLE: spending a conservative local share"
            }
        ),
        None => pools,
    }
}

/// Builds the report from the host's counters and the ledger's status.
pub fn collect(host: &Host, venue: &Arc<dyn Venue>, history: &WeightHistory) -> StatusReport {
    let ledger = venue.ledger_status("");
    let shortest_weight_limit = ledger
        .pools
        .iter()
        .find(|p| p.kind == PoolKind::RequestWeight)
        .map_or(0, |p| p.limit);
    let strategies = host
        .stats()
        .into_iter()
        .map(|s| {
            let mine = venue.ledger_status(&s.name).mine;
            let us = |d: Duration| d.as_secs_f64() * 1e6;
            StrategyReport {
                running: s.running,
                orders_placed: s.orders_placed,
                orders_filled: s.orders_filled,
                orders_cancelled: s.orders_cancelled,
                orders_rejected: s.orders_rejected,
                open_orders: s.open_orders,
                fills: s.fills,
                pnl: s.flows,
                weight_total: mine.total_weight,
                budget_share_pct: if shortest_weight_limit > 0 {
                    mine.weight as f64 * 100.0 / shortest_weight_limit as f64
                } else {
                    0.0
                },
                tick_to_order_p50_us: s.tick_to_order.map(|t| us(t.p50)),
                tick_to_order_p99_us: s.tick_to_order.map(|t| us(t.p99)),
                errors: s.errors,
                last_error: s.last_error,
                events_delivered: s.events_handled,
                events_conflated: s.events_coalesced,
                trades_dropped: s.trades_dropped,
                sandbox_trips: s.trips,
                name: s.name,
            }
        })
        .collect();
    StatusReport {
        venue: venue.name().to_string(),
        now_ms: venue.now_ms(),
        state: ledger.state.as_str().to_string(),
        resume_at_ms: ledger.resume_at_ms,
        throttled: ledger.throttled_count,
        banned: ledger.banned_count,
        pools: ledger.pools.iter().map(|p| pool_report(&ledger, p)).collect(),
        strategies,
        weight_per_second: history.seconds(),
        sharing: ledger.sharing.as_deref().cloned(),
        backoffs: ledger.backoffs().iter().map(backoff_report).collect(),
    }
}

/// Request weight spent per second, from the shortest request-weight window's count: the
/// growth of `used` within a window, or all of `used` once a new window began.
#[derive(Default)]
pub struct WeightHistory {
    inner: Mutex<HistoryInner>,
}

#[derive(Default)]
struct HistoryInner {
    last: Option<(i64, u64)>,
    seconds: VecDeque<u64>,
}

impl WeightHistory {
    pub fn sample(&self, pools: &[PoolStatus]) {
        let Some(pool) = pools.iter().find(|p| p.kind == PoolKind::RequestWeight) else {
            return;
        };
        let mut inner = self.inner.lock();
        let spent = match inner.last {
            Some((window_end, used)) if window_end == pool.resets_at_ms => pool.used.saturating_sub(used),
            Some(_) => pool.used,
            None => 0,
        };
        inner.last = Some((pool.resets_at_ms, pool.used));
        if inner.seconds.len() == WEIGHT_HISTORY_SECS {
            inner.seconds.pop_front();
        }
        inner.seconds.push_back(spent);
    }

    pub fn seconds(&self) -> Vec<u64> {
        self.inner.lock().seconds.iter().copied().collect()
    }

    /// Samples `venue`'s pools once a second until aborted.
    pub async fn run(self: Arc<Self>, venue: Arc<dyn Venue>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.sample(&venue.ledger_status("").pools);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{BackoffState, Interval, IntervalUnit, Scope, StrategyUsage, WindowKind};

    fn weight_pool(scope: Scope, backoff: Option<(BackoffState, i64)>) -> PoolStatus {
        PoolStatus {
            scope,
            window: WindowKind::Fixed,
            kind: PoolKind::RequestWeight,
            interval: Interval::new(IntervalUnit::Minute, 1),
            limit: 6000,
            used: 10,
            resets_at_ms: 60_000,
            peak: 10,
            lease: None,
            backoff: backoff.map_or(BackoffState::Normal, |(state, _)| state),
            backoff_until_ms: backoff.map(|(_, until)| until),
        }
    }

    /// A status taken at exchange time 4 750 ms, with IP groups `main` (ip0) and `spare` (ip1).
    fn ledger(pools: Vec<PoolStatus>) -> LedgerStatus {
        LedgerStatus {
            now_ms: 4_750,
            state: BackoffState::Normal,
            resume_at_ms: None,
            pools,
            scope_names: vec![(Scope::Ip(0), "main".into()), (Scope::Ip(1), "spare".into())],
            mine: StrategyUsage::default(),
            throttled_count: 0,
            banned_count: 0,
            sharing: None,
        }
    }

    #[test]
    fn each_backed_off_scope_shows_once_with_why_and_until_when() {
        let mut orders_of_spare = weight_pool(Scope::Ip(1), Some((BackoffState::Banned, 9_000)));
        orders_of_spare.kind = PoolKind::RawRequests;
        let status = ledger(vec![
            weight_pool(Scope::Ip(0), None),
            weight_pool(Scope::Ip(1), Some((BackoffState::Banned, 9_000))),
            orders_of_spare,
        ]);
        assert_eq!(
            backoffs_brief(&status),
            "ip1(spare) banned (418) until 9000 (4.2 s left)"
        );
        assert_eq!(backoffs_brief(&ledger(vec![weight_pool(Scope::Ip(0), None)])), "none");
        let reports: Vec<BackoffReport> = status.backoffs().iter().map(backoff_report).collect();
        assert_eq!(
            reports,
            vec![BackoffReport {
                scope_id: "ip1".into(),
                scope_name: Some("spare".into()),
                state: "banned".into(),
                http_status: Some(418),
                until_ms: 9_000,
                secs_left: 4.25,
            }]
        );
        let (main, spare) = (
            pool_report(&status, &status.pools[0]),
            pool_report(&status, &status.pools[1]),
        );
        assert_eq!(
            (main.backoff.as_str(), main.backoff_http_status, main.backoff_secs_left),
            ("normal", None, None)
        );
        assert_eq!(
            (
                spare.backoff.as_str(),
                spare.backoff_http_status,
                spare.backoff_until_ms,
                spare.backoff_secs_left
            ),
            ("banned", Some(418), Some(9_000), Some(4.25))
        );
        // A report from an older runner, without the new fields, still reads (`runner top`).
        let mut old = serde_json::to_value(&main).unwrap();
        for field in ["backoff", "scope_name"] {
            old.as_object_mut().unwrap().remove(field);
        }
        let read: PoolReport = serde_json::from_value(old).unwrap();
        assert_eq!((read.backoff.as_str(), read.scope_name), ("normal", None));
    }
}
