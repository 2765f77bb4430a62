//! Resolved options of a run: command-line flags over an optional TOML file over defaults.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::backtest::live::MarketSource;
use crate::cli::{CommonArgs, LogFormat, Mode, RunArgs};
use crate::exchange::binance::account::accounts::{AccountSpec, Accounts};
use crate::exchange::binance::orders::journal_sync::JournalSync;
use crate::exchange::binance::transport::egress::{Egress, IpGroup};
use crate::exchange::binance::transport::ws_api::OrderTransport;
use crate::exchange::binance::ClientOptions;
use crate::exchange::breaker::BreakerConfig;
use crate::exchange::risk::RiskLimits;
use crate::host::affinity::CpuList;
use crate::ledger::limits::RateLimit;
use crate::ledger::shared::SharedConfig;

/// The longest `unknown_order_grace`: an order the exchange has not seen by then never arrives.
const MAX_UNKNOWN_ORDER_GRACE: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no strategy given: run `runner <STRATEGY.lua>` (see `runner --help`)")]
    NoStrategy,
    #[error("strategy file {0} does not exist")]
    Missing(PathBuf),
    #[error("{0} is a directory, not a strategy file")]
    Directory(PathBuf),
    #[error("{0} is not a Lua file (expected a .lua extension)")]
    NotLua(PathBuf),
    #[error("strategy file {0} is given twice")]
    Duplicate(PathBuf),
    #[error("cannot read config file {path}: {source}")]
    ReadConfig { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    ParseConfig { path: PathBuf, message: String },
    #[error("state dir {path} is not writable: {source}")]
    StateDir { path: PathBuf, source: std::io::Error },
    #[error("stdlib folder {0} does not exist (set it with --stdlib DIR)")]
    Stdlib(PathBuf),
    #[error("{0}")]
    Invalid(String),
}

/// Options as they may appear in the `--config` TOML file (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub strategies: Option<Vec<PathBuf>>,
    pub mode: Option<Mode>,
    pub rest_url: Option<String>,
    pub ws_url: Option<String>,
    pub ws_api_url: Option<String>,
    /// Paper trading on a real market: "live", "testnet" or a server's base URL.
    pub market: Option<String>,
    /// The paper exchange's commission rates, e.g. "maker=0.0002,taker=0.0005".
    pub fees: Option<String>,
    /// The paper exchange's one-way order and cancel delay, humantime text, e.g. "20ms".
    pub latency: Option<String>,
    /// Humantime text, e.g. "30s".
    pub duration: Option<String>,
    pub reload: Option<bool>,
    pub cancel_on_exit: Option<bool>,
    pub status_every: Option<u64>,
    /// Address of the metrics and status endpoint, e.g. "127.0.0.1:9898".
    pub metrics: Option<String>,
    pub seed: Option<u64>,
    pub log_format: Option<LogFormat>,
    pub state_dir: Option<PathBuf>,
    pub stdlib: Option<PathBuf>,
    /// Humantime text, e.g. "30s".
    pub unknown_order_grace: Option<String>,
    /// "background" or "before-send".
    pub journal_sync: Option<String>,
    /// "rest" or "ws-api".
    pub order_transport: Option<String>,
    pub busy_poll: Option<bool>,
    /// A CPU list, e.g. "2,3" or "2-5".
    pub pin_strategies: Option<String>,
    /// Quote asset → largest order value, e.g. `{ USDT = 1000 }`.
    pub max_order_notional: Option<BTreeMap<String, f64>>,
    pub max_open_orders: Option<u32>,
    /// The circuit breakers' thresholds (`[breaker]`).
    pub breaker: Option<BreakerFile>,
    /// Limits to start with instead of Binance's documented ones, e.g. `["REQUEST_WEIGHT=1000/1s"]`.
    pub limits: Option<Vec<String>>,
    /// `redis://...`: the ledger shared by every process on this IP.
    pub ledger: Option<String>,
    pub ledger_group: Option<String>,
    pub ledger_fallback: Option<bool>,
    /// `[[ip_groups]]`: local source addresses requests leave from, the first the default.
    pub ip_groups: Option<Vec<IpGroupFile>>,
    /// `[routes.<strategy name>]`: what a strategy sends through (its IP group, its account).
    pub routes: Option<BTreeMap<String, RouteFile>>,
    /// `[accounts.NAME]`: the accounts this process trades, in the file's order (the first the default).
    pub accounts: Option<AccountsFile>,
}

/// One `[accounts.NAME]` entry: the environment variables holding the account's key and either its
/// HMAC secret or the path of its Ed25519 private key file (never the secrets themselves, which
/// stay out of files).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountFile {
    pub key_env: Option<String>,
    pub secret_env: Option<String>,
    pub private_key_file_env: Option<String>,
}

/// `[accounts.*]` in the order the file gives them: "the first account" is the default.
#[derive(Debug, Default)]
pub struct AccountsFile(pub Vec<(String, AccountFile)>);

impl<'de> Deserialize<'de> for AccountsFile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> serde::de::Visitor<'de> for InOrder {
            type Value = AccountsFile;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("[accounts.NAME] tables")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<AccountsFile, A::Error> {
                let mut accounts = Vec::new();
                while let Some(entry) = map.next_entry::<String, AccountFile>()? {
                    accounts.push(entry);
                }
                Ok(AccountsFile(accounts))
            }
        }
        deserializer.deserialize_map(InOrder)
    }
}

/// One `[[ip_groups]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpGroupFile {
    pub name: String,
    /// A local address, e.g. "192.0.2.10"; the group's connections are bound to it.
    pub source: String,
}

/// `[routes.<strategy name>]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    /// The name of an `[[ip_groups]]` entry.
    pub ip_group: Option<String>,
    /// The name of an `[accounts.NAME]` entry.
    pub account: Option<String>,
}

/// `[breaker]` in the config file; what is left out keeps its default (see [`BreakerConfig`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerFile {
    pub enabled: Option<bool>,
    /// Humantime text, e.g. "10s".
    pub window: Option<String>,
    pub min_calls: Option<u32>,
    pub failure_rate: Option<f64>,
    /// Humantime text, e.g. "5s".
    pub cool_down: Option<String>,
    pub jitter: Option<f64>,
    pub probes: Option<u32>,
    /// Humantime text, e.g. "2s".
    pub slow_call: Option<String>,
}

impl BreakerFile {
    /// The thresholds over the defaults, validated.
    fn resolve(&self) -> Result<BreakerConfig, ConfigError> {
        let defaults = BreakerConfig::default();
        let duration = |key: &str, text: &Option<String>, default: Duration| match text {
            None => Ok(default),
            Some(text) if text.trim_start().starts_with('-') => Err(ConfigError::Invalid(format!(
                "breaker.{key} is {text:?}: a duration cannot be negative"
            ))),
            Some(text) => {
                crate::cli::parse_duration(text).map_err(|e| ConfigError::Invalid(format!("breaker.{key}: {e}")))
            }
        };
        let config = BreakerConfig {
            enabled: self.enabled.unwrap_or(defaults.enabled),
            window: duration("window", &self.window, defaults.window)?,
            min_calls: self.min_calls.unwrap_or(defaults.min_calls),
            failure_rate: self.failure_rate.unwrap_or(defaults.failure_rate),
            cool_down: duration("cool_down", &self.cool_down, defaults.cool_down)?,
            jitter: self.jitter.unwrap_or(defaults.jitter),
            probes: self.probes.unwrap_or(defaults.probes),
            slow_call: duration("slow_call", &self.slow_call, defaults.slow_call)?,
        };
        config.validate().map_err(ConfigError::Invalid)?;
        Ok(config)
    }
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = fs::read_to_string(path).map_err(|source| ConfigError::ReadConfig {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::ParseConfig {
            path: path.into(),
            message: e.to_string(),
        })
    }
}

/// Endpoint overrides for a profile; `None` keeps the profile's own URL.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Endpoints {
    pub rest_url: Option<String>,
    pub ws_url: Option<String>,
    pub ws_api_url: Option<String>,
}

/// Everything a run needs, resolved and validated.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub strategies: Vec<PathBuf>,
    pub mode: Mode,
    pub endpoints: Endpoints,
    /// Paper trading on this market instead of the synthetic one.
    pub market: Option<MarketSource>,
    /// The built-in paper exchange's commission rates.
    pub fees: crate::sim::Fees,
    /// The built-in paper exchange's one-way delay of every order and cancel.
    pub order_latency: Duration,
    pub duration: Option<Duration>,
    pub reload: bool,
    pub cancel_on_exit: bool,
    pub status_every: Option<Duration>,
    /// Where `/metrics` and `/status` are served; `None`: nowhere.
    pub metrics: Option<std::net::SocketAddr>,
    pub seed: u64,
    pub log_format: LogFormat,
    pub state_dir: PathBuf,
    pub stdlib_dir: PathBuf,
    /// How long an unanswered order the exchange does not know stays PENDING.
    pub unknown_order_grace: Duration,
    pub journal_sync: JournalSync,
    pub order_transport: OrderTransport,
    /// Strategy threads spin instead of sleeping while they wait for events.
    pub busy_poll: bool,
    /// CPUs reserved for strategy threads; empty: none.
    pub pin_strategies: Vec<usize>,
    /// What each strategy may send (see [`RiskLimits`]).
    pub risk: RiskLimits,
    /// The circuit breakers' thresholds.
    pub breaker: BreakerConfig,
    /// Where the exchange's limits are shared with other processes; `None`: not shared.
    pub shared_ledger: Option<SharedConfig>,
    /// The ledger's pools until the exchange announces its own (`--limit`).
    pub start_limits: Vec<RateLimit>,
    /// The egress IP groups and each strategy's group.
    pub egress: Egress,
    /// The accounts traded and each strategy's account.
    pub accounts: Accounts,
}

/// Options shared by every command: log format, state dir and stdlib folder.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    pub log_format: LogFormat,
    pub state_dir: PathBuf,
    pub stdlib_dir: PathBuf,
}

impl RunConfig {
    pub fn resolve(args: RunArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let mode = if args.live {
            Mode::Live
        } else if args.testnet {
            Mode::Testnet
        } else if args.paper {
            Mode::Paper
        } else {
            file.mode.unwrap_or(Mode::Paper)
        };
        let strategies = if args.strategies.is_empty() {
            file.strategies.clone().unwrap_or_default()
        } else {
            args.strategies
        };
        check_strategy_files(&strategies)?;
        let market = market_source(args.market.or(file.market.clone()), mode, &args.endpoints, &file)?;
        let (fees, order_latency) = paper_exchange_model(args.fees, args.latency, mode, &args.endpoints, &file)?;
        let duration = flag_or_file_duration(args.duration, file.duration.as_deref())?;
        let unknown_order_grace = flag_or_file_duration(args.unknown_order_grace, file.unknown_order_grace.as_deref())?
            .map_or(
                Ok(ClientOptions::default().unknown_order_grace),
                check_unknown_order_grace,
            )?;
        let journal_sync = flag_or_file(args.journal_sync, file.journal_sync.as_deref(), JournalSync::parse)?;
        let order_transport = flag_or_file(
            args.order_transport,
            file.order_transport.as_deref(),
            OrderTransport::parse,
        )?;
        let shared_ledger = shared_ledger(args.ledger, args.ledger_group, args.ledger_fallback, &file)?;
        let risk = risk_limits(args.max_order_notional, args.max_open_orders, &file)?;
        let start_limits = start_limits(args.limits, &file)?;
        let egress = egress(&file)?;
        let accounts = accounts(&file)?;
        let breaker = file
            .breaker
            .as_ref()
            .map_or(Ok(BreakerConfig::default()), BreakerFile::resolve)?;
        let reload = if args.no_reload {
            false
        } else if args.reload {
            true
        } else {
            // Reloading live code by surprise is not what real money wants: opt in there.
            file.reload.unwrap_or(mode != Mode::Live)
        };
        let status_secs = args.status_every.or(file.status_every).unwrap_or(10);
        let common = CommonConfig::resolve(&args.common, Some(&file))?;
        // Only a run writes state; `check` must leave the disk alone.
        ensure_writable(&common.state_dir)?;
        Ok(RunConfig {
            strategies,
            mode,
            endpoints: Endpoints {
                rest_url: args.endpoints.rest_url.or(file.rest_url),
                ws_url: args.endpoints.ws_url.or(file.ws_url),
                ws_api_url: args.endpoints.ws_api_url.or(file.ws_api_url),
            },
            market,
            fees,
            order_latency,
            duration,
            reload,
            cancel_on_exit: args
                .cancel_on_exit
                .or(file.cancel_on_exit)
                .unwrap_or(mode == Mode::Paper),
            status_every: (status_secs > 0).then(|| Duration::from_secs(status_secs)),
            metrics: match args.metrics {
                Some(addr) => Some(addr),
                None => file
                    .metrics
                    .as_deref()
                    .map(|text| {
                        text.parse().map_err(|_| {
                            ConfigError::Invalid(format!("metrics: {text:?} is not an address like 127.0.0.1:9898"))
                        })
                    })
                    .transpose()?,
            },
            seed: args.seed.or(file.seed).unwrap_or(1),
            log_format: common.log_format,
            state_dir: common.state_dir,
            stdlib_dir: common.stdlib_dir,
            unknown_order_grace,
            journal_sync,
            order_transport,
            busy_poll: args.busy_poll || file.busy_poll.unwrap_or(false),
            shared_ledger,
            start_limits,
            egress,
            accounts,
            risk,
            breaker,
            pin_strategies: flag_or_file(args.pin_strategies, file.pin_strategies.as_deref(), CpuList::parse)?.0,
        })
    }
}

/// `--market`: only with paper trading on the built-in paper exchange.
fn market_source(
    text: Option<String>,
    mode: Mode,
    endpoints: &crate::cli::EndpointArgs,
    file: &FileConfig,
) -> Result<Option<MarketSource>, ConfigError> {
    let Some(text) = text else { return Ok(None) };
    if mode != Mode::Paper {
        return Err(ConfigError::Invalid(
            "market: a market source feeds the paper exchange; it goes with --paper, not --testnet or --live".into(),
        ));
    }
    if endpoints.rest_url.is_some() || file.rest_url.is_some() {
        return Err(ConfigError::Invalid(
            "market: a market source runs its own paper exchange; drop --rest-url (an external simulator)".into(),
        ));
    }
    MarketSource::parse(&text)
        .map(Some)
        .map_err(|e| ConfigError::Invalid(format!("market: {e}")))
}

/// `--fees` and `--latency`: how the built-in paper exchange fills and answers; the exchange
/// itself decides both on testnet, live, or an external simulator.
fn paper_exchange_model(
    fees: Option<crate::sim::Fees>,
    latency: Option<Duration>,
    mode: Mode,
    endpoints: &crate::cli::EndpointArgs,
    file: &FileConfig,
) -> Result<(crate::sim::Fees, Duration), ConfigError> {
    let fees = match (fees, file.fees.as_deref()) {
        (Some(fees), _) => Some(fees),
        (None, Some(text)) => {
            Some(crate::sim::Fees::parse(text).map_err(|e| ConfigError::Invalid(format!("fees: {e}")))?)
        }
        (None, None) => None,
    };
    let latency = flag_or_file_duration(latency, file.latency.as_deref())?;
    let external = endpoints.rest_url.is_some() || file.rest_url.is_some();
    for (name, given) in [("fees", fees.is_some()), ("latency", latency.is_some())] {
        if given && (mode != Mode::Paper || external) {
            return Err(ConfigError::Invalid(format!(
                "{name}: sets the built-in paper exchange's fill model; the exchange decides it on testnet, \
                 live or an external simulator (--rest-url)"
            )));
        }
    }
    Ok((fees.unwrap_or_default(), latency.unwrap_or(Duration::ZERO)))
}

/// The ledger's starting pools: Binance's documented ones, with those of a kind given by
/// `--limit` (else the file's `limits`) in their place.
fn start_limits(flags: Vec<RateLimit>, file: &FileConfig) -> Result<Vec<RateLimit>, ConfigError> {
    let given = if flags.is_empty() {
        file.limits
            .iter()
            .flatten()
            .map(|text| crate::cli::parse_limit(text).map_err(|e| ConfigError::Invalid(format!("limits: {e}"))))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        flags
    };
    Ok(crate::exchange::binance::limits::pools::spot_defaults_with(&given))
}

/// The egress IP groups of the file: each source must be an address of this machine (bound here
/// once, so a typo fails at start, not at the first request), each used by one group.
fn egress(file: &FileConfig) -> Result<Egress, ConfigError> {
    let groups = file
        .ip_groups
        .iter()
        .flatten()
        .map(|group| {
            let source: IpAddr = group.source.trim().parse().map_err(|_| {
                ConfigError::Invalid(format!(
                    "ip_groups: {}'s source {:?} is not an IP address",
                    group.name, group.source
                ))
            })?;
            std::net::TcpListener::bind((source, 0)).map_err(|e| {
                ConfigError::Invalid(format!(
                    "ip_groups: {}'s source {source} cannot be bound on this machine: {e}",
                    group.name
                ))
            })?;
            Ok(IpGroup {
                name: group.name.clone(),
                source: Some(source),
            })
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    let choices: Vec<(String, String)> = file
        .routes
        .iter()
        .flatten()
        .filter_map(|(strategy, route)| Some((strategy.clone(), route.ip_group.clone()?)))
        .collect();
    Egress::new(groups, &choices).map_err(|e| ConfigError::Invalid(e.to_string()))
}

/// The file's `[accounts.NAME]` sections and the routes naming them. Whether each account's
/// variables are set is checked when the run reads them (only testnet and live read them).
fn accounts(file: &FileConfig) -> Result<Accounts, ConfigError> {
    let specs = file
        .accounts
        .iter()
        .flat_map(|a| a.0.iter())
        .map(|(name, account)| {
            let named = |var: &Option<String>| var.clone().filter(|v| !v.trim().is_empty());
            AccountSpec {
                name: name.clone(),
                key_env: named(&account.key_env),
                secret_env: named(&account.secret_env),
                private_key_file_env: named(&account.private_key_file_env),
            }
        })
        .collect();
    let choices: Vec<(String, String)> = file
        .routes
        .iter()
        .flatten()
        .filter_map(|(strategy, route)| Some((strategy.clone(), route.account.clone()?)))
        .collect();
    Accounts::new(specs, &choices).map_err(|e| ConfigError::Invalid(e.to_string()))
}

/// The risk limits from the flags, else from the file; every cap must be a positive amount.
fn risk_limits(
    notional_flags: Vec<(String, f64)>,
    open_flag: Option<u32>,
    file: &FileConfig,
) -> Result<RiskLimits, ConfigError> {
    let max_order_notional: BTreeMap<String, f64> = if notional_flags.is_empty() {
        let caps = file.max_order_notional.clone().unwrap_or_default();
        caps.into_iter()
            .map(|(asset, cap)| (asset.to_ascii_uppercase(), cap))
            .collect()
    } else {
        notional_flags.into_iter().collect()
    };
    if let Some((asset, cap)) = max_order_notional
        .iter()
        .find(|(_, cap)| !cap.is_finite() || **cap <= 0.0)
    {
        return Err(ConfigError::Invalid(format!(
            "max_order_notional for {asset} is {cap}: it must be a positive amount"
        )));
    }
    let max_open_orders = match open_flag.or(file.max_open_orders) {
        Some(0) => return Err(ConfigError::Invalid("max_open_orders must be at least 1".into())),
        other => other.map(|n| n as usize),
    };
    Ok(RiskLimits {
        max_order_notional,
        max_open_orders,
    })
}

/// A choice from its flag, else parsed from its text in the file, else the default.
fn flag_or_file<T: Default>(
    flag: Option<T>,
    file: Option<&str>,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    match (flag, file) {
        (Some(value), _) => Ok(value),
        (None, Some(text)) => parse(text).map_err(ConfigError::Invalid),
        (None, None) => Ok(T::default()),
    }
}

/// A duration from its flag, else from its humantime text in the file.
fn flag_or_file_duration(flag: Option<Duration>, file: Option<&str>) -> Result<Option<Duration>, ConfigError> {
    match (flag, file) {
        (Some(d), _) => Ok(Some(d)),
        (None, Some(text)) => crate::cli::parse_duration(text).map(Some).map_err(ConfigError::Invalid),
        (None, None) => Ok(None),
    }
}

/// Shorter than the exchange's receive window, an order that went unanswered could still be
/// placed after it was declared REJECTED (and a strategy placing again would double it).
fn check_unknown_order_grace(grace: Duration) -> Result<Duration, ConfigError> {
    let min = Duration::from_millis(ClientOptions::default().recv_window_ms);
    if (min..=MAX_UNKNOWN_ORDER_GRACE).contains(&grace) {
        return Ok(grace);
    }
    Err(ConfigError::Invalid(format!(
        "unknown_order_grace {} is out of range: it must be from {} (the exchange's receive window: \
         an unanswered order may still arrive until then) to {}",
        humantime::format_duration(grace),
        humantime::format_duration(min),
        humantime::format_duration(MAX_UNKNOWN_ORDER_GRACE),
    )))
}

/// The shared ledger's settings; a URL that is not a Redis one is refused here.
fn shared_ledger(
    url: Option<String>,
    group: Option<String>,
    fallback: bool,
    file: &FileConfig,
) -> Result<Option<SharedConfig>, ConfigError> {
    let Some(url) = url.or_else(|| file.ledger.clone()) else {
        return Ok(None);
    };
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) || url::Url::parse(&url).is_err() {
        return Err(ConfigError::Invalid(format!(
            "ledger {url:?} is not a Redis URL (redis://host:port/db or rediss://host:port/db)"
        )));
    }
    let group = group
        .or_else(|| file.ledger_group.clone())
        .unwrap_or_else(|| "default".to_string());
    if group.is_empty() || group.contains(['{', '}', ' ']) {
        return Err(ConfigError::Invalid(format!(
            "ledger_group {group:?} must be a non-empty name without braces or spaces"
        )));
    }
    Ok(Some(SharedConfig {
        url,
        group,
        fallback_on_start: fallback || file.ledger_fallback.unwrap_or(false),
    }))
}

impl CommonConfig {
    pub fn resolve(args: &CommonArgs, file: Option<&FileConfig>) -> Result<Self, ConfigError> {
        let state_dir = args
            .state_dir
            .clone()
            .or_else(|| file.and_then(|f| f.state_dir.clone()))
            .unwrap_or_else(|| PathBuf::from("state"));
        let stdlib_dir = match args.stdlib.clone().or_else(|| file.and_then(|f| f.stdlib.clone())) {
            Some(dir) if dir.is_dir() => dir,
            Some(dir) => return Err(ConfigError::Stdlib(dir)),
            None => default_stdlib()?,
        };
        let log_format = args
            .log_format
            .or_else(|| file.and_then(|f| f.log_format))
            .unwrap_or(LogFormat::Text);
        Ok(CommonConfig {
            log_format,
            state_dir,
            stdlib_dir,
        })
    }
}

/// `./stdlib` when run from a checkout, else the one beside the sources this binary was built from.
fn default_stdlib() -> Result<PathBuf, ConfigError> {
    let local = PathBuf::from("stdlib");
    if local.is_dir() {
        return Ok(local);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib");
    if built.is_dir() {
        return Ok(built);
    }
    Err(ConfigError::Stdlib(local))
}

pub fn check_strategy_files(paths: &[PathBuf]) -> Result<(), ConfigError> {
    if paths.is_empty() {
        return Err(ConfigError::NoStrategy);
    }
    let mut seen = HashSet::new();
    for path in paths {
        if !path.exists() {
            return Err(ConfigError::Missing(path.clone()));
        }
        if path.is_dir() {
            return Err(ConfigError::Directory(path.clone()));
        }
        if path.extension().and_then(|e| e.to_str()) != Some("lua") {
            return Err(ConfigError::NotLua(path.clone()));
        }
        let canonical = path.canonicalize().map_err(|_| ConfigError::Missing(path.clone()))?;
        if !seen.insert(canonical) {
            return Err(ConfigError::Duplicate(path.clone()));
        }
    }
    Ok(())
}

fn ensure_writable(dir: &Path) -> Result<(), ConfigError> {
    let fail = |source| ConfigError::StateDir {
        path: dir.into(),
        source,
    };
    fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(".write-test");
    fs::write(&probe, b"ok").map_err(fail)?;
    fs::remove_file(&probe).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::binance::account::accounts::AccountVars;

    #[test]
    fn rejects_bad_strategy_paths() {
        let dir = tempfile::tempdir().unwrap();
        let lua = dir.path().join("a.lua");
        let txt = dir.path().join("a.txt");
        fs::write(&lua, "return {}").unwrap();
        fs::write(&txt, "").unwrap();
        assert!(matches!(check_strategy_files(&[]), Err(ConfigError::NoStrategy)));
        assert!(matches!(
            check_strategy_files(&[dir.path().join("none.lua")]),
            Err(ConfigError::Missing(_))
        ));
        assert!(matches!(
            check_strategy_files(&[dir.path().to_path_buf()]),
            Err(ConfigError::Directory(_))
        ));
        assert!(matches!(check_strategy_files(&[txt]), Err(ConfigError::NotLua(_))));
        assert!(matches!(
            check_strategy_files(&[lua.clone(), lua.clone()]),
            Err(ConfigError::Duplicate(_))
        ));
        assert!(check_strategy_files(&[lua]).is_ok());
    }

    /// A temporary folder holding a strategy file, and that file's path.
    fn folder_with_strategy() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let lua = dir.path().join("s.lua");
        fs::write(&lua, "return {}").unwrap();
        (dir, lua)
    }

    #[test]
    fn file_options_apply_and_flags_win() {
        let (dir, lua) = folder_with_strategy();
        let cfg = dir.path().join("runner.toml");
        let state = dir.path().join("st");
        fs::write(
            &cfg,
            format!(
                "strategies = [{lua:?}]\nduration = \"5s\"\nseed = 7\nstate_dir = {state:?}\nstdlib = {:?}\n",
                dir.path()
            ),
        )
        .unwrap();
        let args = RunArgs {
            config: Some(cfg.clone()),
            seed: Some(9),
            ..RunArgs::default()
        };
        let resolved = RunConfig::resolve(args).unwrap();
        assert_eq!(resolved.strategies, vec![lua]);
        assert_eq!(resolved.duration, Some(Duration::from_secs(5)));
        assert_eq!(resolved.seed, 9, "a flag wins over the file");
        assert_eq!(resolved.mode, Mode::Paper);
        assert!(resolved.cancel_on_exit && resolved.reload);

        fs::write(&cfg, "colour = \"blue\"\n").unwrap();
        let err = RunConfig::resolve(RunArgs {
            config: Some(cfg),
            ..RunArgs::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    /// Resolves `args` with a config file naming a runnable strategy plus the TOML lines `extra`.
    fn resolve_with_file(extra: &str, args: RunArgs) -> Result<RunConfig, ConfigError> {
        let (dir, lua) = folder_with_strategy();
        let cfg = dir.path().join("runner.toml");
        let base = format!(
            "strategies = [{lua:?}]\nstate_dir = {:?}\nstdlib = {:?}\n",
            dir.path().join("st"),
            dir.path()
        );
        fs::write(&cfg, base + extra).unwrap();
        RunConfig::resolve(RunArgs {
            config: Some(cfg),
            ..args
        })
    }

    #[test]
    fn unknown_order_grace_comes_from_a_flag_or_the_file_and_is_checked() {
        let resolve = |file_value: Option<&str>, flag: Option<Duration>| {
            let line = file_value.map_or(String::new(), |v| format!("unknown_order_grace = {v:?}\n"));
            resolve_with_file(
                &line,
                RunArgs {
                    unknown_order_grace: flag,
                    ..RunArgs::default()
                },
            )
        };
        let grace = |file_value, flag| resolve(file_value, flag).unwrap().unknown_order_grace;
        assert_eq!(grace(None, None), ClientOptions::default().unknown_order_grace);
        assert_eq!(grace(Some("2m"), None), Duration::from_secs(120));
        assert_eq!(
            grace(Some("2m"), Some(Duration::from_secs(7))),
            Duration::from_secs(7),
            "a flag wins over the file"
        );
        assert_eq!(
            grace(Some("5s"), None),
            Duration::from_secs(5),
            "the receive window itself"
        );
        for bad in ["0s", "4s", "11m", "1day"] {
            let err = resolve(Some(bad), None).unwrap_err().to_string();
            assert!(
                err.contains("unknown_order_grace") && err.contains("receive window"),
                "{bad}: {err}"
            );
        }
        let err = resolve(None, Some(Duration::ZERO)).unwrap_err().to_string();
        assert!(err.contains("out of range"), "{err}");
        let err = resolve(Some("soon"), None).unwrap_err().to_string();
        assert!(err.contains("examples: 30s"), "{err}");
    }

    #[test]
    fn paper_fees_and_latency_come_from_a_flag_or_the_file_and_are_checked() {
        use crate::sim::Fees;
        let resolve = |lines: &str, fees: Option<&str>, latency: Option<Duration>| {
            resolve_with_file(
                lines,
                RunArgs {
                    fees: fees.map(|f| Fees::parse(f).unwrap()),
                    latency,
                    ..RunArgs::default()
                },
            )
        };
        let config = resolve("", None, None).unwrap();
        assert_eq!((config.fees, config.order_latency), (Fees::default(), Duration::ZERO));
        let config = resolve("fees = \"maker=0.0002,taker=0.0005\"\nlatency = \"20ms\"\n", None, None).unwrap();
        assert_eq!(config.fees, Fees::parse("maker=0.0002,taker=0.0005").unwrap());
        assert_eq!(config.order_latency, Duration::from_millis(20));
        let config = resolve(
            "fees = \"maker=0.0002\"\nlatency = \"20ms\"\n",
            Some("taker=0.0004"),
            Some(Duration::from_millis(3)),
        )
        .unwrap();
        assert_eq!(
            config.fees,
            Fees::parse("taker=0.0004").unwrap(),
            "a flag wins over the file"
        );
        assert_eq!(config.order_latency, Duration::from_millis(3));
        let err = resolve("fees = \"maker=2\"\n", None, None).unwrap_err().to_string();
        assert!(err.starts_with("fees: ") && err.contains("from 0 to 0.1"), "{err}");
        let err = resolve("mode = \"testnet\"\nlatency = \"5ms\"\n", None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("latency: sets the built-in paper exchange's"), "{err}");
    }

    #[test]
    fn journal_sync_comes_from_a_flag_or_the_file_and_is_checked() {
        let resolve = |file_value: Option<&str>, flag: Option<JournalSync>| {
            let line = file_value.map_or(String::new(), |v| format!("journal_sync = {v:?}\n"));
            resolve_with_file(
                &line,
                RunArgs {
                    journal_sync: flag,
                    ..RunArgs::default()
                },
            )
        };
        let policy = |file_value, flag| resolve(file_value, flag).unwrap().journal_sync;
        assert_eq!(policy(None, None), JournalSync::Background);
        assert_eq!(policy(Some("before-send"), None), JournalSync::BeforeSend);
        assert_eq!(
            policy(Some("before-send"), Some(JournalSync::Background)),
            JournalSync::Background,
            "a flag wins over the file"
        );
        let err = resolve(Some("sometimes"), None).unwrap_err().to_string();
        assert!(err.contains("before-send") && err.contains("sometimes"), "{err}");
    }

    #[test]
    fn order_transport_comes_from_a_flag_or_the_file_and_is_checked() {
        let resolve = |file_value: Option<&str>, flag: Option<OrderTransport>| {
            let line = file_value.map_or(String::new(), |v| format!("order_transport = {v:?}\n"));
            resolve_with_file(
                &line,
                RunArgs {
                    order_transport: flag,
                    ..RunArgs::default()
                },
            )
        };
        let transport = |file_value, flag| resolve(file_value, flag).unwrap().order_transport;
        assert_eq!(transport(None, None), OrderTransport::Rest);
        assert_eq!(transport(Some("ws-api"), None), OrderTransport::WsApi);
        assert_eq!(
            transport(Some("ws-api"), Some(OrderTransport::Rest)),
            OrderTransport::Rest,
            "a flag wins over the file"
        );
        let err = resolve(Some("carrier-pigeon"), None).unwrap_err().to_string();
        assert!(err.contains("ws-api") && err.contains("carrier-pigeon"), "{err}");
    }

    #[test]
    fn risk_limits_come_from_flags_or_the_file_and_must_be_positive() {
        let risk = |file: &str, notional: Vec<(String, f64)>, open: Option<u32>| {
            let args = RunArgs {
                max_order_notional: notional,
                max_open_orders: open,
                ..RunArgs::default()
            };
            resolve_with_file(file, args).map(|c| c.risk)
        };
        assert!(risk("", vec![], None).unwrap().is_empty());
        let from_file = risk(
            "max_order_notional = { usdt = 1000, BTC = 0.5 }\nmax_open_orders = 5\n",
            vec![],
            None,
        )
        .unwrap();
        assert_eq!(
            from_file.max_order_notional,
            BTreeMap::from([("BTC".to_string(), 0.5), ("USDT".to_string(), 1000.0)])
        );
        assert_eq!(from_file.max_open_orders, Some(5));
        let flags_win = risk(
            "max_order_notional = { USDT = 1000 }\nmax_open_orders = 5\n",
            vec![("USDT".into(), 10.0)],
            Some(1),
        )
        .unwrap();
        assert_eq!(
            flags_win.max_order_notional,
            BTreeMap::from([("USDT".to_string(), 10.0)])
        );
        assert_eq!(flags_win.max_open_orders, Some(1));
        for bad in [
            "max_order_notional = { USDT = 0 }\n",
            "max_order_notional = { USDT = -5 }\n",
            "max_open_orders = 0\n",
        ] {
            let err = risk(bad, vec![], None).unwrap_err().to_string();
            assert!(err.contains("max_"), "{bad}: {err}");
        }
        assert!(crate::cli::parse_notional_cap("usdt=250").unwrap() == ("USDT".to_string(), 250.0));
        for bad in ["USDT", "USDT=", "=5", "USDT=lots"] {
            assert!(crate::cli::parse_notional_cap(bad).is_err(), "{bad}");
        }
        for bad in ["-1", "nan", "inf"] {
            let err = risk("", vec![("USDT".into(), bad.parse().unwrap())], None).unwrap_err();
            assert!(err.to_string().contains("positive amount"), "{bad}: {err}");
        }
        let err = risk("", vec![], Some(0)).unwrap_err().to_string();
        assert!(err.contains("at least 1"), "{err}");
    }

    #[test]
    fn reserved_cpus_come_from_a_flag_or_the_file_and_are_checked() {
        let cpus = |file: &str, flag: Option<&str>| {
            let args = RunArgs {
                pin_strategies: flag.map(|f| CpuList::parse(f).unwrap()),
                ..RunArgs::default()
            };
            resolve_with_file(file, args).map(|c| c.pin_strategies)
        };
        assert_eq!(cpus("", None).unwrap(), Vec::<usize>::new());
        assert_eq!(cpus("pin_strategies = \"2-3\"\n", None).unwrap(), vec![2, 3]);
        assert_eq!(
            cpus("pin_strategies = \"2-3\"\n", Some("5")).unwrap(),
            vec![5],
            "a flag wins"
        );
        let err = cpus("pin_strategies = \"many\"\n", None).unwrap_err().to_string();
        assert!(err.contains("\"many\" is not a CPU list"), "{err}");
    }

    #[test]
    fn breaker_thresholds_come_from_the_file_and_nonsense_is_refused() {
        let resolved = resolve_with_file(
            "[breaker]\nwindow = \"3s\"\nfailure_rate = 0.25\ncool_down = \"750ms\"\n",
            RunArgs::default(),
        )
        .unwrap();
        assert_eq!(resolved.breaker.window, Duration::from_secs(3));
        assert_eq!(resolved.breaker.failure_rate, 0.25);
        assert_eq!(resolved.breaker.cool_down, Duration::from_millis(750));
        assert_eq!(resolved.breaker.min_calls, BreakerConfig::default().min_calls);
        let defaults = resolve_with_file("", RunArgs::default()).unwrap();
        assert_eq!(defaults.breaker, BreakerConfig::default());
        for (section, expected) in [
            ("window = \"0s\"", "breaker.window must be longer than zero"),
            (
                "failure_rate = 1.5",
                "breaker.failure_rate is 1.5: it must be above 0 and at most 1",
            ),
            (
                "failure_rate = 0.0",
                "breaker.failure_rate is 0: it must be above 0 and at most 1",
            ),
            ("failure_rate = -0.5", "breaker.failure_rate is -0.5"),
            (
                "cool_down = \"-5s\"",
                "breaker.cool_down is \"-5s\": a duration cannot be negative",
            ),
            ("cool_down = \"soon\"", "breaker.cool_down:"),
        ] {
            let error = resolve_with_file(&format!("[breaker]\n{section}\n"), RunArgs::default())
                .expect_err(section)
                .to_string();
            assert!(error.starts_with(expected), "{section}: {error}");
            assert!(!error.contains('\n'), "one line: {error}");
        }
    }

    #[test]
    fn busy_poll_is_off_unless_a_flag_or_the_file_turns_it_on() {
        let busy_poll = |file: &str, flag: bool| {
            let args = RunArgs {
                busy_poll: flag,
                ..RunArgs::default()
            };
            resolve_with_file(file, args).unwrap().busy_poll
        };
        assert!(!busy_poll("", false));
        assert!(busy_poll("busy_poll = true\n", false));
        assert!(busy_poll("", true));
        assert!(!busy_poll("busy_poll = false\n", false));
        let err = resolve_with_file("busy_poll = \"yes\"\n", RunArgs::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("busy_poll"), "{err}");
    }

    #[test]
    fn ip_groups_and_routes_come_from_the_file_and_bad_ones_are_refused() {
        let groups = "[[ip_groups]]\nname = \"main\"\nsource = \"127.0.0.1\"\n\
                      [[ip_groups]]\nname = \"spare\"\nsource = \"127.0.0.2\"\n";
        let config = resolve_with_file(
            &format!("{groups}[routes.poller]\nip_group = \"spare\"\n"),
            RunArgs::default(),
        )
        .unwrap();
        assert_eq!(config.egress.names(), vec!["main", "spare"]);
        assert_eq!((config.egress.group_of("poller"), config.egress.group_of("mm")), (1, 0));
        assert_eq!(resolve_with_file("", RunArgs::default()).unwrap().egress.count(), 1);
        for (lines, expected) in [
            (
                format!("{groups}[routes.poller]\nip_group = \"third\"\n"),
                "strategy poller names the IP group \"third\", which is not configured (known: main, spare)",
            ),
            (
                "[[ip_groups]]\nname = \"a\"\nsource = \"127.0.0.2\"\n[[ip_groups]]\nname = \"b\"\nsource = \"127.0.0.2\"\n"
                    .to_string(),
                "ip_groups: a and b both leave from 127.0.0.2: each group needs its own address",
            ),
            (
                "[[ip_groups]]\nname = \"far\"\nsource = \"192.0.2.77\"\n".to_string(),
                "ip_groups: far's source 192.0.2.77 cannot be bound on this machine: ",
            ),
            (
                "[[ip_groups]]\nname = \"x\"\nsource = \"localhost\"\n".to_string(),
                "ip_groups: x's source \"localhost\" is not an IP address",
            ),
        ] {
            let error = resolve_with_file(&lines, RunArgs::default()).unwrap_err().to_string();
            assert!(error.starts_with(expected), "{lines}: {error}");
            assert!(!error.contains('\n'), "one line: {error}");
        }
    }

    #[test]
    fn accounts_and_their_routes_come_from_the_file_in_order_and_bad_ones_are_refused() {
        let accounts = "[accounts.zeta]\nkey_env = \"Z_KEY\"\nsecret_env = \"Z_SECRET\"\n\
                        [accounts.alpha]\nkey_env = \"A_KEY\"\nprivate_key_file_env = \"A_KEY_FILE\"\n";
        let config = resolve_with_file(
            &format!("{accounts}[routes.mm]\naccount = \"alpha\"\n"),
            RunArgs::default(),
        )
        .unwrap();
        assert_eq!(
            config.accounts.names(),
            vec!["zeta", "alpha"],
            "the file's order: the first is the default"
        );
        assert_eq!(
            (config.accounts.account_of("mm"), config.accounts.account_of("other")),
            (1, 0)
        );
        assert_eq!(config.accounts.accounts()[1].key_env.as_deref(), Some("A_KEY"));
        assert_eq!(
            config.accounts.accounts()[1].vars(),
            Some(AccountVars::Ed25519 {
                key_env: "A_KEY",
                key_file_env: "A_KEY_FILE"
            }),
            "alpha signs with an Ed25519 key"
        );
        let single = resolve_with_file("", RunArgs::default()).unwrap();
        assert!(!single.accounts.configured() && single.accounts.count() == 1);
        for (lines, expected) in [
            (
                format!("{accounts}[routes.mm]\naccount = \"beta\"\n"),
                "strategy mm names the account \"beta\", which is not configured (known: zeta, alpha)",
            ),
            (
                "[accounts.solo]\nkey_env = \"S_KEY\"\n".to_string(),
                "accounts: solo needs key_env (the environment variable holding its API key) and either secret_env",
            ),
            (
                "[accounts.solo]\nkey_env = \"S_KEY\"\nsecret_env = \"S\"\nprivate_key_file_env = \"F\"\n".to_string(),
                "accounts: solo gives both secret_env and private_key_file_env",
            ),
            (
                "[accounts.solo]\nprivate_key_file_env = \"F\"\n".to_string(),
                "accounts: solo needs key_env",
            ),
            (
                "[accounts.a]\nkey_env = \"K\"\nsecret_env = \"S\"\n[accounts.b]\nkey_env = \"K\"\nsecret_env = \"T\"\n"
                    .to_string(),
                "accounts: a and b both read their key from K",
            ),
            (
                "[accounts.a]\nkey = \"plain-text\"\n".to_string(),
                "config file ",
            ),
        ] {
            let error = resolve_with_file(&lines, RunArgs::default()).unwrap_err().to_string();
            assert!(error.starts_with(expected), "{lines}: {error}");
        }
        // TOML itself refuses a table given twice: duplicate names never reach the runner.
        let error = resolve_with_file(
            &format!("{accounts}[accounts.zeta]\nkey_env = \"X\"\n"),
            RunArgs::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("zeta") || error.contains("duplicate"), "{error}");
    }
}
