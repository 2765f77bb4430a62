//! Wiring of one run: exchange profile ⇄ ledger ⇄ venue ⇄ strategy host, hot reload,
//! status lines, and an orderly shutdown with a summary.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::backtest::live;
use crate::cli::Mode;
use crate::config::RunConfig;
use crate::exchange::accounts::AccountVenues;
use crate::exchange::binance::account::accounts::Accounts;
use crate::exchange::binance::account::profile::{ConfigError, Credentials, Profile, ProfileKind};
use crate::exchange::binance::errors::ClientError;
use crate::exchange::binance::limits::pools;
use crate::exchange::binance::venue::{BinanceVenue, ClientOptions};
use crate::exchange::breaker::{BreakerState, BreakerStatus};
use crate::exchange::latency::LatencySummary;
use crate::exchange::risk::{Halt, RiskGuard};
use crate::exchange::types::ApiError;
use crate::exchange::{CallCtx, EventSink, MarketSavings, Venue};
use crate::host::{Host, HostConfig, LoadError, StopReason};
use crate::ledger::limits::PoolKind;
use crate::ledger::shared::SharedError;
use crate::ledger::{FastClock, Lane, Ledger, LedgerConfig};
use crate::reload::{self, ReloadTarget};
use crate::sim;
use crate::telemetry::MetricsListener;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Credentials(#[from] ConfigError),
    #[error("cannot start the paper exchange")]
    Sim(#[source] sim::SimError),
    #[error("cannot follow the market source")]
    MarketSource(#[source] crate::backtest::live::LiveMarketError),
    #[error("cannot connect to the exchange")]
    Connect(#[source] ClientError),
    #[error("cannot start the market streams")]
    Streams(#[source] ApiError),
    #[error(transparent)]
    Strategy(#[from] LoadError),
    #[error("cannot watch strategy files")]
    Watch(#[source] notify::Error),
    #[error(transparent)]
    Metrics(#[from] crate::telemetry::TelemetryError),
    /// The order journal cannot be opened or read: a file the user must look at.
    #[error("cannot start")]
    Journal(#[source] ClientError),
    #[error(transparent)]
    SharedLedger(#[from] SharedError),
}

/// Why the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EndReason {
    /// Ctrl-C or SIGTERM.
    Shutdown,
    /// `--duration` elapsed.
    Duration,
    /// Every strategy stopped by itself (faults).
    AllStopped,
}

/// Runs the strategies until `shutdown` resolves, the duration passes, or all of them stop.
pub async fn run(config: RunConfig, shutdown: impl Future<Output = ()>) -> Result<Summary, EngineError> {
    // Bound (and the recorder installed) before anything is recorded, so a taken port fails first.
    let metrics_listener = match config.metrics {
        Some(addr) => Some(MetricsListener::bind(addr).await?),
        None => None,
    };
    // Paper on a real market talks to two servers, each counting on its own: the source's pools
    // are kept apart from the paper exchange's.
    let limits = match (config.mode, &config.market) {
        (Mode::Paper, Some(_)) => pools::with_source_pools(config.start_limits.clone()),
        _ => config.start_limits.clone(),
    };
    let ledger = Ledger::new(
        limits,
        LedgerConfig {
            state_dir: Some(config.state_dir.clone()),
            ..LedgerConfig::default()
        },
        // The TSC clock: a clock read is a fifth of a reservation's cost with the system clock.
        Arc::new(FastClock::new()),
    );
    ledger.set_boundary_guard(crate::ledger::BOUNDARY_GUARD);
    let (profile, paper) = exchange_profile(&config, &ledger).await?;
    let profiles = match account_profiles(&config, profile) {
        Ok(profiles) => profiles,
        Err(e) => {
            stop_sim(paper).await;
            return Err(e);
        }
    };
    // Kept for the whole run: dropping it stops sharing.
    let _shared_ledger = match config.shared_ledger.clone() {
        // Keyed by name: processes sharing a budget may list their groups and accounts in any order.
        Some(shared) => {
            let names = config.egress.named_scopes().chain(config.accounts.named_scopes());
            let names = crate::ledger::shared::ScopeNames::new(names);
            Some(crate::ledger::shared::share_named(ledger.clone(), shared, names).await?)
        }
        None => None,
    };
    let autosave = ledger.spawn_autosave(Duration::from_secs(1));
    let options = ClientOptions {
        state_dir: Some(config.state_dir.clone()),
        unknown_order_grace: config.unknown_order_grace,
        journal_sync: config.journal_sync,
        order_transport: config.order_transport,
        breaker: config.breaker.clone(),
        egress: config.egress.clone(),
        ..ClientOptions::default()
    };
    let venues = match connect_accounts(&config, profiles, &ledger, &options).await {
        Ok(venues) => venues,
        Err(e) => {
            autosave.stop().await;
            stop_sim(paper).await;
            return Err(match e {
                ClientError::Journal(_) => EngineError::Journal(e),
                _ => EngineError::Connect(e),
            });
        }
    };
    // The first account's venue: market data, streams and the paper market's source.
    let venue = Arc::clone(&venues[0]);
    let routed: Arc<dyn Venue> = match venues.len() {
        1 => venue.clone(),
        _ => {
            tracing::info!(accounts = ?config.accounts.names(), "trading several accounts: each strategy's orders go to its own");
            let venues = venues.iter().map(|v| Arc::clone(v) as Arc<dyn Venue>).collect();
            match AccountVenues::new(venues, config.accounts.clone()) {
                Some(routed) => routed,
                None => venue.clone(),
            }
        }
    };
    let paper = paper.map(|paper| paper.follow_source(&venue));
    if !config.risk.is_empty() {
        tracing::info!(limits = ?config.risk, "risk limits on every strategy's orders");
    }
    let halt = Halt::default();
    let halt_switch = tokio::spawn(operator_halt_signals(halt.clone()));
    let venue_dyn: Arc<dyn Venue> = RiskGuard::with_halt(routed.clone(), config.risk.clone(), halt);

    let host_config = HostConfig {
        stdlib_dir: config.stdlib_dir.clone(),
        state_dir: Some(config.state_dir.clone()),
        busy_poll: config.busy_poll,
        strategy_cpus: config.pin_strategies.clone(),
        ..HostConfig::default()
    };
    warn_if_spinners_take_every_core(&config);
    let host = Host::new(venue_dyn.clone(), host_config);
    let metrics_server = metrics_listener.map(|listener| {
        if let Some(addr) = listener.local_addr() {
            tracing::info!(
                metrics = %format!("http://{addr}/metrics"),
                status = %format!("http://{addr}/status"),
                "metrics listening (runner top {addr})"
            );
        }
        listener.serve(host.clone(), venue_dyn.clone(), &config.state_dir)
    });
    let sink: Arc<dyn EventSink> = host.clone();
    let mut started = routed.start(sink).await.map_err(EngineError::Streams);
    for path in &config.strategies {
        if started.is_err() {
            break;
        }
        started = host.add(path).await.map(drop).map_err(EngineError::Strategy);
    }
    let watcher = match (&started, config.reload) {
        (Ok(()), true) => {
            let target: Arc<dyn ReloadTarget> = Arc::new(HostReloader(host.clone()));
            match reload::spawn(target, reload::DEFAULT_DEBOUNCE) {
                Ok(task) => Some(task),
                Err(e) => {
                    started = Err(EngineError::Watch(e));
                    None
                }
            }
        }
        _ => None,
    };
    if let Err(e) = started {
        // Nothing may keep running behind a failed start: strategies, streams, the paper exchange.
        host.stop_all(StopReason::Shutdown).await;
        halt_switch.abort();
        if let Some(task) = &metrics_server {
            task.abort();
        }
        routed.shutdown().await;
        autosave.stop().await;
        stop_sim(paper).await;
        return Err(e);
    }
    tracing::info!(
        venue = venue.name(),
        strategies = ?host.names(),
        reload = config.reload,
        "running; press Ctrl-C to stop"
    );

    let status = config
        .status_every
        .map(|every| tokio::spawn(status_lines(host.clone(), venue_dyn.clone(), every)));

    let end = wait_for_end(&config, &host, shutdown).await;
    tracing::info!(reason = ?end, "stopping");

    if let Some(task) = watcher {
        task.abort();
    }
    if let Some(task) = status {
        task.abort();
    }
    halt_switch.abort();
    host.stop_all(match end {
        EndReason::Duration => StopReason::Duration,
        _ => StopReason::Shutdown,
    })
    .await;
    let cancelled_on_exit = if config.cancel_on_exit {
        cancel_open_orders(&venue_dyn, &host.names()).await
    } else {
        BTreeMap::new()
    };
    let summary = Summary::collect(&host, &venue_dyn, end, &cancelled_on_exit);
    if let Some(task) = metrics_server {
        task.abort();
    }
    routed.shutdown().await;
    // Stopping the autosave writes the final state.
    autosave.stop().await;
    stop_sim(paper).await;
    Ok(summary)
}

/// The operator's kill switch: SIGUSR1 halts every new order (cancels still go out), SIGUSR2
/// resumes. Runs until aborted.
async fn operator_halt_signals(halt: Halt) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut stop), Ok(mut go)) = (signal(SignalKind::user_defined1()), signal(SignalKind::user_defined2()))
        else {
            tracing::warn!("cannot listen for SIGUSR1/SIGUSR2: the operator's halt switch is off");
            return;
        };
        loop {
            tokio::select! {
                Some(()) = stop.recv() => {
                    halt.halt();
                    tracing::warn!("SIGUSR1: new orders halted for every strategy; cancels still go out; SIGUSR2 resumes");
                }
                Some(()) = go.recv() => {
                    halt.resume();
                    tracing::warn!("SIGUSR2: new orders resumed");
                }
                else => return,
            }
        }
    }
    #[cfg(not(unix))]
    let _ = halt;
}

/// Spinning strategies on unreserved cores can take every core the streams, the journal and the
/// timers need: say so before it happens.
fn warn_if_spinners_take_every_core(config: &RunConfig) {
    if !config.busy_poll || !config.pin_strategies.is_empty() {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if config.strategies.len() >= cores {
        tracing::warn!(
            strategies = config.strategies.len(),
            cores,
            "--busy-poll with as many spinning strategies as cores leaves none for the rest of the runner; \
             run fewer, or reserve cores with --pin-strategies"
        );
    }
}

/// The paper exchange this run started, and what feeds it a real market (`--market`).
struct PaperExchange {
    sim: sim::SimHandle,
    /// A real market this paper exchange follows, until the venue connects and the feed starts.
    source: Option<live::MarketSource>,
    market_feed: Option<tokio::task::JoinHandle<()>>,
}

/// How long the paper market's feed may wait for budget for a connection or a snapshot.
const SOURCE_WAIT: Duration = Duration::from_secs(30);
/// `GET /api/v3/exchangeInfo`'s weight.
const EXCHANGE_INFO_WEIGHT: u32 = 20;
/// The name the paper market's feed is charged under in the ledger.
const PAPER_MARKET: &str = "paper-market";

impl PaperExchange {
    /// Starts feeding the paper exchange from its source, through `venue`'s gateway and ledger.
    fn follow_source(mut self, venue: &Arc<BinanceVenue>) -> PaperExchange {
        if let Some(source) = self.source.take() {
            let access = Arc::new(ThroughVenue(venue.clone()));
            self.market_feed = Some(live::mirror(source, self.sim.market_port(), access));
        }
        self
    }
}

/// The paper market's way to its source: the venue's gateway, so its stream connection and its
/// depth snapshots are charged to the ledger like every other request.
struct ThroughVenue(Arc<BinanceVenue>);

#[async_trait]
impl live::SourceAccess for ThroughVenue {
    async fn connect_streams(&self, streams: &[String]) -> Result<live::Socket, live::SourceError> {
        let socket = self.0.gateway().connect_market(streams, SOURCE_WAIT).await?;
        Ok(socket)
    }

    async fn depth_snapshot(&self, symbol: &str) -> Result<Arc<crate::exchange::Depth>, live::SourceError> {
        let request = crate::exchange::MarketRequest::Depth {
            symbol: symbol.to_string(),
            limit: 1000,
        };
        let ctx = crate::exchange::CallCtx::new(PAPER_MARKET, SOURCE_WAIT);
        let answer = self
            .0
            .market_data(&ctx, request, crate::exchange::Freshness::default())
            .await?;
        match answer.data {
            crate::exchange::MarketData::Depth(depth) => Ok(depth),
            _ => Err(live::SourceError::NotDepth {
                symbol: symbol.to_string(),
            }),
        }
    }
}

async fn stop_sim(paper: Option<PaperExchange>) {
    if let Some(paper) = paper {
        if let Some(feed) = paper.market_feed {
            feed.abort();
        }
        paper.sim.shutdown().await;
    }
}

/// The profile to trade on; for paper, the simulator it runs on (kept alive by the caller).
async fn exchange_profile(
    config: &RunConfig,
    ledger: &Ledger,
) -> Result<(Profile, Option<PaperExchange>), EngineError> {
    let (mut profile, paper) = match config.mode {
        Mode::Paper if config.market.is_some() => {
            let source = config
                .market
                .clone()
                .unwrap_or_else(|| unreachable!("checked by the guard"));
            let wanted: Vec<String> = sim::default_symbols().into_iter().map(|s| s.symbol).collect();
            // Asked before the client exists: charged here (exchangeInfo's weight, to the source's
            // pools) like every request.
            let cost = pools::at_source(pools::cost(EXCHANGE_INFO_WEIGHT, 0, 1, 0));
            let permit = ledger
                .reserve(PAPER_MARKET, Lane::MarketData, cost, SOURCE_WAIT)
                .await
                .map_err(|e| EngineError::MarketSource(live::LiveMarketError::Budget(e)))?;
            let symbols = live::source_symbols(&source, &wanted, ledger, &permit)
                .await
                .map_err(EngineError::MarketSource)?;
            let sim_config = sim::SimConfig {
                seed: config.seed,
                symbols,
                // Still: the source moves this market, not the synthetic one.
                market_tick: Duration::ZERO,
                fees: config.fees,
                order_latency: config.order_latency,
                // One paper account per configured account, each signing with its own key.
                accounts: config.accounts.count(),
                ..sim::SimConfig::default()
            };
            let handle = sim::start(sim_config, ([127, 0, 0, 1], 0).into())
                .await
                .map_err(EngineError::Sim)?;
            tracing::info!(
                source = %source.ws_url,
                "paper trading on a real market: orders fill on the paper exchange, market data comes from the source"
            );
            // Orders, account and user data on the paper exchange; streams and public market data
            // straight from the source, so strategies see exactly its market.
            let profile = Profile::paper(
                &handle.rest_url(),
                &source.ws_url,
                &handle.ws_api_url(),
                Credentials::new(sim::PAPER_API_KEY, sim::PAPER_API_SECRET),
            )
            .with_market_rest(&source.rest_url);
            (
                profile,
                Some(PaperExchange {
                    sim: handle,
                    source: Some(source),
                    market_feed: None,
                }),
            )
        }
        Mode::Paper if config.endpoints.rest_url.is_some() => {
            // An external simulator (e.g. `runner sim`): streams and WebSocket API default to the same host.
            let rest = config.endpoints.rest_url.clone().unwrap_or_default();
            let ws = rest.replacen("http", "ws", 1);
            let credentials = Credentials::new(sim::PAPER_API_KEY, sim::PAPER_API_SECRET);
            (
                Profile::paper(&rest, &ws, &format!("{ws}/ws-api/v3"), credentials),
                None,
            )
        }
        Mode::Paper => {
            let sim_config = sim::SimConfig {
                seed: config.seed,
                fees: config.fees,
                order_latency: config.order_latency,
                // One paper account per configured account, each signing with its own key.
                accounts: config.accounts.count(),
                ..sim::SimConfig::default()
            };
            let handle = sim::start(sim_config, ([127, 0, 0, 1], 0).into())
                .await
                .map_err(EngineError::Sim)?;
            let profile = Profile::paper(
                &handle.rest_url(),
                &handle.ws_url(),
                &handle.ws_api_url(),
                Credentials::new(sim::PAPER_API_KEY, sim::PAPER_API_SECRET),
            );
            (
                profile,
                Some(PaperExchange {
                    sim: handle,
                    source: None,
                    market_feed: None,
                }),
            )
        }
        Mode::Testnet => (
            Profile::testnet(credentials(ProfileKind::Testnet, &config.accounts, 0)?),
            None,
        ),
        Mode::Live => {
            let creds = credentials(ProfileKind::Live, &config.accounts, 0)?;
            tracing::warn!("LIVE TRADING: orders placed by these strategies spend REAL FUNDS on Binance");
            (Profile::live(creds), None)
        }
    };
    let e = &config.endpoints;
    profile = profile.with_urls(e.rest_url.as_deref(), e.ws_url.as_deref(), e.ws_api_url.as_deref());
    Ok((profile, paper))
}

/// Account `account`'s credentials on testnet or live: from the variables its `[accounts.NAME]`
/// section names, else (the single account of no `[accounts]`) from the profile's usual variables.
fn credentials(kind: ProfileKind, accounts: &Accounts, account: u16) -> Result<Credentials, EngineError> {
    let configured = accounts
        .accounts()
        .get(usize::from(account))
        .filter(|_| accounts.configured())
        .and_then(|spec| Some((spec.name.as_str(), spec.vars()?)));
    match configured {
        Some((name, vars)) => Ok(Credentials::from_account_vars(name, vars, |var| {
            std::env::var(var).ok()
        })?),
        None => Ok(Credentials::from_env(kind)?),
    }
}

/// One profile per account: `first` (the first account's), and for each further account the same
/// exchange with that account's key (the paper exchange's own keys in paper modes).
fn account_profiles(config: &RunConfig, first: Profile) -> Result<Vec<Profile>, EngineError> {
    let mut profiles = Vec::with_capacity(usize::from(config.accounts.count()));
    for account in 1..config.accounts.count() {
        let credentials = match config.mode {
            Mode::Paper => {
                let (key, secret) = sim::paper_credentials(account);
                Credentials::new(key, secret)
            }
            Mode::Testnet => credentials(ProfileKind::Testnet, &config.accounts, account)?,
            Mode::Live => credentials(ProfileKind::Live, &config.accounts, account)?,
        };
        profiles.push(Profile {
            credentials,
            ..first.clone()
        });
    }
    profiles.insert(0, first);
    Ok(profiles)
}

/// Where account `account`'s order journal lives: the first account's where a single account's
/// always has (adding `[accounts]` keeps it), every other in `accounts/<name>` of the state dir.
fn journal_dir(config: &RunConfig, account: u16) -> std::path::PathBuf {
    match (account, config.accounts.name(account)) {
        (1.., Some(name)) => config.state_dir.join("accounts").join(name),
        _ => config.state_dir.clone(),
    }
}

/// Connects one venue per account (each with its own key, journal, balances and user-data
/// stream; all on the one ledger). On a failure the venues already connected are shut down.
async fn connect_accounts(
    config: &RunConfig,
    profiles: Vec<Profile>,
    ledger: &Ledger,
    options: &ClientOptions,
) -> Result<Vec<Arc<BinanceVenue>>, ClientError> {
    let mut venues: Vec<Arc<BinanceVenue>> = Vec::with_capacity(profiles.len());
    for (account, profile) in (0u16..).zip(profiles) {
        let options = ClientOptions {
            state_dir: Some(journal_dir(config, account)),
            account,
            accounts: config.accounts.count(),
            ..options.clone()
        };
        match BinanceVenue::connect(profile, ledger.clone(), options).await {
            Ok(venue) => venues.push(venue),
            Err(e) => {
                for venue in &venues {
                    venue.shutdown().await;
                }
                return Err(e);
            }
        }
    }
    Ok(venues)
}

async fn wait_for_end(config: &RunConfig, host: &Arc<Host>, shutdown: impl Future<Output = ()>) -> EndReason {
    let duration = async {
        match config.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let all_stopped = async {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            if host.stats().iter().all(|s| !s.running) {
                return;
            }
        }
    };
    tokio::select! {
        _ = shutdown => EndReason::Shutdown,
        _ = duration => EndReason::Duration,
        _ = all_stopped => EndReason::AllStopped,
    }
}

/// Cancels what the strategies left open, each order under its owner's name;
/// returns how many were cancelled per strategy.
async fn cancel_open_orders(venue: &Arc<dyn Venue>, strategies: &[String]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for name in strategies {
        let ctx = CallCtx::new(name.as_str(), Duration::from_secs(5));
        let symbols: std::collections::BTreeSet<String> =
            venue.open_orders(name, None).into_iter().map(|o| o.symbol).collect();
        for symbol in symbols {
            match venue.cancel_all(&ctx, &symbol).await {
                Ok(cancelled) => {
                    *counts.entry(name.clone()).or_insert(0) += cancelled.len() as u64;
                    tracing::info!(strategy = %name, %symbol, count = cancelled.len(), "cancelled open orders on exit")
                }
                Err(e) => tracing::warn!(strategy = %name, %symbol, error = %e, "could not cancel open orders on exit"),
            }
        }
    }
    counts
}

struct HostReloader(Arc<Host>);

#[async_trait]
impl ReloadTarget for HostReloader {
    fn names(&self) -> Vec<String> {
        self.0.names()
    }

    fn watched_files(&self, name: &str) -> Vec<PathBuf> {
        self.0.watched_files(name)
    }

    async fn reload(&self, name: &str) -> Result<Duration, LoadError> {
        self.0.reload(name).await.map(|outcome| outcome.swap)
    }
}

async fn status_lines(host: Arc<Host>, venue: Arc<dyn Venue>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let peak_weight_pct = peak_weight_pct(&venue);
        let breakers = breakers_brief(&venue.breakers());
        let ledger = venue.ledger_status("");
        let pools = crate::status::pools_brief(&ledger);
        let backoffs = crate::status::backoffs_brief(&ledger);
        for line in strategy_lines(&host, &venue, &BTreeMap::new()) {
            tracing::info!(
                strategy = %line.name,
                running = line.running,
                open_orders = line.open_orders,
                placed = line.orders_placed,
                filled = line.orders_filled,
                weight_used = line.weight_used,
                peak_weight_pct = format!("{peak_weight_pct:.1}"),
                pnl = %format_flows(&line.pnl),
                tick_to_order = %line.tick_to_order.as_ref().map_or("-".into(), TickToOrder::brief),
                breakers = %breakers,
                pools = %pools,
                backoffs = %backoffs,
                "status"
            );
        }
    }
}

/// What a run did, per strategy; printed at exit.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub end: EndReason,
    pub venue: String,
    pub strategies: Vec<StrategySummary>,
    /// Highest share of any request-weight window the whole process used.
    pub peak_weight_pct: f64,
    /// Responses 429 and 418 received (the ledger exists to keep these at 0).
    pub throttled: u64,
    pub banned: u64,
    /// The circuit breakers at exit, with how often each opened and how many calls it refused.
    pub breakers: Vec<BreakerStatus>,
    /// Market-data calls of all strategies and what coalescing saved.
    pub market_data: MarketSavings,
    /// What the whole process used (each strategy's Lua memory is capped; this shows the host's total).
    pub process: ProcessUsage,
    /// Each pool's scope (IP group, account), whether it is shared and by how many processes.
    pub pools: String,
    /// Each scope (IP group) a back-off still stops at exit, why (429/418) and until when; `none`.
    pub backoffs: String,
}

/// The process's own resource use, from `getrusage`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcessUsage {
    pub peak_memory_mib: f64,
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
}

impl ProcessUsage {
    pub fn now() -> ProcessUsage {
        use nix::sys::resource::{getrusage, UsageWho};
        let Ok(usage) = getrusage(UsageWho::RUSAGE_SELF) else {
            return ProcessUsage::default();
        };
        let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        ProcessUsage {
            // Linux reports the peak resident set in KiB.
            peak_memory_mib: usage.max_rss() as f64 / 1024.0,
            cpu_user_s: seconds(usage.user_time()),
            cpu_system_s: seconds(usage.system_time()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StrategySummary {
    pub name: String,
    pub running: bool,
    pub orders_placed: u64,
    pub orders_filled: u64,
    pub orders_cancelled: u64,
    /// Open orders the runner cancelled at exit (`--cancel-on-exit`).
    pub cancelled_on_exit: u64,
    pub orders_rejected: u64,
    pub open_orders: usize,
    pub errors: u64,
    /// Net asset flows from this strategy's fills (realised PnL per asset, fees included).
    pub pnl: BTreeMap<String, f64>,
    /// Request weight this strategy spent since start.
    pub weight_used: u64,
    /// Over its latest orders placed from market callbacks (`None` before the first).
    pub tick_to_order: Option<TickToOrder>,
    /// Events pushed to the strategy, handed to its callbacks, and conflated while it was behind.
    pub events_received: u64,
    pub events_delivered: u64,
    pub events_conflated: u64,
    /// Its market-data calls and what coalescing saved it.
    pub market_data: MarketSavings,
}

/// From the client reading a market frame to the order its callback placed being written to the
/// exchange, over the strategy's latest orders.
#[derive(Debug, Clone, Serialize)]
pub struct TickToOrder {
    pub orders: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl TickToOrder {
    fn of(summary: &LatencySummary) -> TickToOrder {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        TickToOrder {
            orders: summary.count,
            p50_us: us(summary.p50),
            p99_us: us(summary.p99),
            max_us: us(summary.max),
        }
    }

    fn brief(&self) -> String {
        format!("p50 {:.0} µs, p99 {:.0} µs", self.p50_us, self.p99_us)
    }
}

impl Summary {
    pub fn collect(
        host: &Host,
        venue: &Arc<dyn Venue>,
        end: EndReason,
        cancelled_on_exit: &BTreeMap<String, u64>,
    ) -> Self {
        // The counts and the peak are the process's (one ledger); an empty name asks for no strategy's share.
        let ledger = venue.ledger_status("");
        let market_data = venue
            .market_savings()
            .iter()
            .fold(MarketSavings::default(), |mut total, (_, s)| {
                total.add(s);
                total
            });
        Summary {
            end,
            venue: venue.name().to_string(),
            strategies: strategy_lines(host, venue, cancelled_on_exit),
            peak_weight_pct: peak_weight_pct(venue),
            throttled: ledger.throttled_count,
            banned: ledger.banned_count,
            breakers: venue.breakers(),
            market_data,
            process: ProcessUsage::now(),
            pools: crate::status::pools_brief(&ledger),
            backoffs: crate::status::backoffs_brief(&ledger),
        }
    }
}

fn strategy_lines(
    host: &Host,
    venue: &Arc<dyn Venue>,
    cancelled_on_exit: &BTreeMap<String, u64>,
) -> Vec<StrategySummary> {
    let savings: BTreeMap<_, _> = venue.market_savings().into_iter().collect();
    host.stats()
        .into_iter()
        .map(|s| StrategySummary {
            market_data: savings.get(s.name.as_str()).copied().unwrap_or_default(),
            open_orders: venue.open_orders(&s.name, None).len(),
            weight_used: venue.ledger_status(&s.name).mine.total_weight,
            cancelled_on_exit: cancelled_on_exit.get(&s.name).copied().unwrap_or(0),
            name: s.name,
            running: s.running,
            orders_placed: s.orders_placed,
            orders_filled: s.orders_filled,
            orders_cancelled: s.orders_cancelled,
            orders_rejected: s.orders_rejected,
            errors: s.errors,
            pnl: s.flows,
            tick_to_order: s.tick_to_order.as_ref().map(TickToOrder::of),
            events_received: s.events_received,
            events_delivered: s.events_handled,
            events_conflated: s.events_coalesced,
        })
        .collect()
}

/// "all closed", or each breaker that is not closed (or has opened) with its state.
fn breakers_brief(breakers: &[BreakerStatus]) -> String {
    let notable: Vec<String> = breakers
        .iter()
        .filter(|b| b.state != BreakerState::Closed || b.times_opened > 0)
        .map(|b| {
            let wait = b.retry_after_ms.map_or(String::new(), |ms| format!(" for {ms} ms"));
            format!(
                "{} {}{wait} (opened {}×, refused {})",
                b.class.as_str(),
                b.state.as_str(),
                b.times_opened,
                b.refused
            )
        })
        .collect();
    if notable.is_empty() {
        "all closed".into()
    } else {
        notable.join(", ")
    }
}

/// Highest share of any request-weight window used so far, in percent.
fn peak_weight_pct(venue: &Arc<dyn Venue>) -> f64 {
    venue
        .ledger_status("")
        .pools
        .iter()
        .filter(|p| p.kind == PoolKind::RequestWeight && p.limit > 0)
        .map(|p| p.peak as f64 * 100.0 / p.limit as f64)
        .fold(0.0, f64::max)
}

fn savings_line(savings: &MarketSavings) -> String {
    format!(
        "{} calls, {} requests saved (hit rate {:.1} %: {} joined, {} cached, {} from streams, {} stale), weight saved {}",
        savings.calls,
        savings.requests_saved(),
        savings.hit_rate() * 100.0,
        savings.joined,
        savings.cache_hits,
        savings.stream_hits,
        savings.stale_served,
        savings.weight_saved
    )
}

fn format_flows(flows: &BTreeMap<String, f64>) -> String {
    if flows.is_empty() {
        return "-".into();
    }
    flows
        .iter()
        .map(|(asset, v)| format!("{v:+.8} {asset}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "summary ({}; ended by {:?})", self.venue, self.end)?;
        for s in &self.strategies {
            writeln!(
                f,
                "  {}: orders placed {}, filled {}, cancelled {}, rejected {}; cancelled at exit {}; open {}; errors {}",
                s.name,
                s.orders_placed,
                s.orders_filled,
                s.orders_cancelled,
                s.orders_rejected,
                s.cancelled_on_exit,
                s.open_orders,
                s.errors
            )?;
            writeln!(f, "    realised PnL (net flows): {}", format_flows(&s.pnl))?;
            writeln!(f, "    weight used {}", s.weight_used)?;
            writeln!(
                f,
                "    events received {}, delivered {}, conflated while behind {}",
                s.events_received, s.events_delivered, s.events_conflated
            )?;
            if s.market_data.calls > 0 {
                writeln!(f, "    market data: {}", savings_line(&s.market_data))?;
            }
            if let Some(t) = &s.tick_to_order {
                writeln!(
                    f,
                    "    tick-to-order over the last {} orders from market callbacks: {}, max {:.0} µs",
                    t.orders,
                    t.brief(),
                    t.max_us
                )?;
            }
        }
        writeln!(
            f,
            "  peak request-weight window: {:.1} % of the limit",
            self.peak_weight_pct
        )?;
        if self.market_data.calls > 0 {
            writeln!(f, "  market data, all strategies: {}", savings_line(&self.market_data))?;
        }
        writeln!(f, "  pools: {}", self.pools)?;
        writeln!(
            f,
            "  exchange throttles (429): {}, bans (418): {}",
            self.throttled, self.banned
        )?;
        writeln!(f, "  back-offs in force: {}", self.backoffs)?;
        writeln!(f, "  circuit breakers: {}", breakers_brief(&self.breakers))?;
        write!(
            f,
            "  process: peak memory {:.1} MiB, CPU {:.2} s user + {:.2} s system",
            self.process.peak_memory_mib, self.process.cpu_user_s, self.process.cpu_system_s
        )
    }
}
