//! `--metrics ADDR`: Prometheus' text format at `/metrics` and the JSON [`StatusReport`] at
//! `/status`. Code that sees an event as it happens (requests, waits, reloads, tick-to-order)
//! records it through the `metrics` facade; what the ledger and the host already count is set
//! from their own figures at each scrape, so the two can never disagree.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics::{counter, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::exchange::binance::orders::journal::JOURNAL_FILE;
use crate::exchange::Venue;
use crate::host::Host;
use crate::ledger::BackoffState;
use crate::status::{self, StatusReport, WeightHistory};

/// Histogram buckets (seconds) for everything timed: from 50 µs to 30 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0,
];

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install the metrics recorder: {0}")]
    Recorder(String),
}

/// The process's Prometheus recorder, installed once (metrics recorded before it are lost, so
/// the engine installs it before it connects or loads a strategy).
pub fn install_recorder() -> Result<PrometheusHandle, TelemetryError> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .map_err(|e| TelemetryError::Recorder(e.to_string()))?
        .install_recorder()
        .map_err(|e| TelemetryError::Recorder(e.to_string()))?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// A bound metrics listener, not yet serving (bound early so a taken port fails the start).
pub struct MetricsListener {
    listener: tokio::net::TcpListener,
    handle: PrometheusHandle,
}

impl MetricsListener {
    pub async fn bind(addr: SocketAddr) -> Result<Self, TelemetryError> {
        let handle = install_recorder()?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| TelemetryError::Bind { addr, source })?;
        Ok(MetricsListener { listener, handle })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves `/metrics` and `/status` until the returned task is aborted.
    pub fn serve(self, host: Arc<Host>, venue: Arc<dyn Venue>, state_dir: &Path) -> tokio::task::JoinHandle<()> {
        let history = Arc::new(WeightHistory::default());
        let sampler = tokio::spawn(history.clone().run(venue.clone()));
        let shared = Arc::new(Shared {
            host,
            venue,
            journal: state_dir.join(JOURNAL_FILE),
            handle: self.handle,
            history,
        });
        let app = Router::new()
            .route("/metrics", get(metrics_text))
            .route("/status", get(status_json))
            .with_state(shared);
        tokio::spawn(async move {
            let _sampler = AbortOnDrop(sampler);
            if let Err(e) = axum::serve(self.listener, app).await {
                tracing::error!(error = %e, "the metrics server stopped");
            }
        })
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Shared {
    host: Arc<Host>,
    venue: Arc<dyn Venue>,
    journal: PathBuf,
    handle: PrometheusHandle,
    history: Arc<WeightHistory>,
}

async fn status_json(State(shared): State<Arc<Shared>>) -> Json<StatusReport> {
    Json(status::collect(&shared.host, &shared.venue, &shared.history))
}

async fn metrics_text(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    export_counts(&shared);
    shared.handle.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        shared.handle.render(),
    )
}

/// Sets, from the ledger's and the host's own counts, every metric they already keep.
fn export_counts(shared: &Shared) {
    let account = shared.venue.name().to_string();
    let ledger = shared.venue.ledger_status("");
    for p in &ledger.pools {
        let pool = status::pool_report(&ledger, p);
        // Each IP group's pools are a series of their own: `scope_id` (ip0, ip1, account0) always,
        // `group` the IP group's configured name (empty when no groups are configured).
        let labels = [
            ("pool", pool.kind),
            ("interval", pool.interval),
            ("scope", pool.scope),
            ("scope_id", pool.scope_id),
            ("group", ledger.scope_name(p.scope).unwrap_or_default().to_string()),
            ("account", account.clone()),
        ];
        gauge!("runner_ledger_pool_used", &labels).set(p.used as f64);
        gauge!("runner_ledger_pool_limit", &labels).set(p.limit as f64);
        gauge!("runner_ledger_pool_peak", &labels).set(p.peak as f64);
        gauge!("runner_ledger_pool_reset_timestamp_seconds", &labels).set(p.resets_at_ms as f64 / 1e3);
        // A back-off stops one scope (an IP group): when this pool's ends, 0 when none is in force.
        gauge!("runner_ledger_pool_backoff_until_timestamp_seconds", &labels)
            .set(p.backoff_until_ms.map_or(0.0, |ms| ms as f64 / 1e3));
    }
    for state in [BackoffState::Normal, BackoffState::Throttled, BackoffState::Banned] {
        let on = if ledger.state == state { 1.0 } else { 0.0 };
        gauge!("runner_ledger_state", "state" => state.as_str(), "account" => account.clone()).set(on);
    }
    gauge!("runner_ledger_resume_timestamp_seconds", "account" => account.clone())
        .set(ledger.resume_at_ms.map_or(0.0, |ms| ms as f64 / 1e3));
    counter!("runner_exchange_throttled_total", "account" => account.clone()).absolute(ledger.throttled_count);
    counter!("runner_exchange_banned_total", "account" => account.clone()).absolute(ledger.banned_count);

    for s in shared.host.stats() {
        let name = s.name.clone();
        let mine = shared.venue.ledger_status(&name).mine;
        for (status, count) in [
            ("placed", s.orders_placed),
            ("filled", s.orders_filled),
            ("cancelled", s.orders_cancelled),
            ("rejected", s.orders_rejected),
        ] {
            counter!("runner_orders_total", "strategy" => name.clone(), "status" => status).absolute(count);
        }
        gauge!("runner_open_orders", "strategy" => name.clone()).set(s.open_orders as f64);
        counter!("runner_fills_total", "strategy" => name.clone()).absolute(s.fills);
        for (asset, amount) in &s.flows {
            gauge!("runner_realised_pnl", "strategy" => name.clone(), "asset" => asset.clone()).set(*amount);
        }
        counter!("runner_ledger_weight_total", "strategy" => name.clone()).absolute(mine.total_weight);
        counter!("runner_ledger_orders_total", "strategy" => name.clone()).absolute(mine.total_orders);
        counter!("runner_events_delivered_total", "strategy" => name.clone()).absolute(s.events_handled);
        counter!("runner_events_conflated_total", "strategy" => name.clone()).absolute(s.events_coalesced);
        counter!("runner_events_dropped_total", "strategy" => name.clone()).absolute(s.trades_dropped);
        counter!("runner_strategy_errors_total", "strategy" => name.clone()).absolute(s.errors);
        counter!("runner_sandbox_trips_total", "strategy" => name.clone()).absolute(s.trips);
        gauge!("runner_strategy_running", "strategy" => name).set(if s.running { 1.0 } else { 0.0 });
    }
    let journal_bytes = std::fs::metadata(&shared.journal).map_or(0, |m| m.len());
    gauge!("runner_journal_size_bytes").set(journal_bytes as f64);
}
