//! The commands behind `main`: each returns a typed error that `main` maps to an exit code.

use crate::cli::{BacktestArgs, CheckArgs, Cli, Command, LogFormat, RecordArgs, SimArgs};
use crate::config::{self, CommonConfig, ConfigError, RunConfig};
use crate::engine::{self, EngineError};
use crate::host::affinity::{self, AffinityError};
use crate::host::{self, HostConfig};
use crate::sim;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{failed} of {total} strategies failed the check")]
    Check { failed: usize, total: usize },
    #[error("cannot start: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("simulator")]
    Sim(#[source] sim::SimError),
    #[error(transparent)]
    Affinity(#[from] AffinityError),
    #[error("top: {0}")]
    Top(#[source] crate::top::TopError),
    #[error("record: {0}")]
    Record(#[from] crate::record::RecordError),
    #[error("backtest: {0}")]
    Backtest(#[from] crate::backtest::BacktestError),
}

impl AppError {
    /// 2 for what the user can fix by changing the command or files, 1 for failures while running.
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Config(_) | AppError::Check { .. } | AppError::Affinity(_) => 2,
            AppError::Backtest(
                crate::backtest::BacktestError::Data(_) | crate::backtest::BacktestError::Strategy(_),
            ) => 2,
            AppError::Engine(
                EngineError::Credentials(_)
                | EngineError::Strategy(_)
                | EngineError::Journal(_)
                | EngineError::SharedLedger(_),
            ) => 2,
            _ => 1,
        }
    }
}

pub fn run(cli: Cli) -> Result<(), AppError> {
    match cli.command {
        Some(Command::Check(args)) => check(args),
        Some(Command::Sim(args)) => serve_sim(args),
        Some(Command::Top(args)) => crate::top::run(args).map_err(AppError::Top),
        Some(Command::Record(args)) => record(args),
        Some(Command::Backtest(args)) => backtest(args),
        None => trade(cli.run),
    }
}

fn trade(args: crate::cli::RunArgs) -> Result<(), AppError> {
    let config = RunConfig::resolve(args)?;
    init_tracing(config.log_format);
    if !config.pin_strategies.is_empty() {
        // Before the runtime starts its threads, which inherit this thread's CPUs.
        affinity::reserve(&config.pin_strategies)?;
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let format = config.log_format;
    let stop = {
        let _inside = runtime.enter();
        shutdown_signal()
    };
    let summary = runtime.block_on(engine::run(config, stop))?;
    match format {
        LogFormat::Text => println!("{summary}"),
        LogFormat::Json => println!("{}", serde_json::json!({ "summary": summary })),
    }
    Ok(())
}

fn check(args: CheckArgs) -> Result<(), AppError> {
    config::check_strategy_files(&args.strategies)?;
    let common = CommonConfig::resolve(&args.common, None)?;
    init_tracing(common.log_format);
    let host_config = HostConfig {
        stdlib_dir: common.stdlib_dir,
        ..HostConfig::default()
    };
    let symbols: Vec<String> = sim::default_symbols().into_iter().map(|s| s.symbol).collect();
    let known = |s: &str| symbols.iter().any(|k| k == s);
    let mut failures = 0;
    for path in &args.strategies {
        match host::check(path, &host_config, &known) {
            Ok(meta) => println!("ok    {} ({})", path.display(), meta.name),
            Err(e) => {
                println!("error {e}");
                failures += 1;
            }
        }
    }
    if failures == 0 {
        Ok(())
    } else {
        Err(AppError::Check {
            failed: failures,
            total: args.strategies.len(),
        })
    }
}

fn serve_sim(args: SimArgs) -> Result<(), AppError> {
    init_tracing(args.log_format.unwrap_or(LogFormat::Text));
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((args.bind, args.port)).await?;
        let addr = listener.local_addr()?;
        tracing::info!(
            rest = %format!("http://{addr}"),
            streams = %format!("ws://{addr}"),
            ws_api = %format!("ws://{addr}/ws-api/v3"),
            api_key = sim::PAPER_API_KEY,
            api_secret = sim::PAPER_API_SECRET,
            // Each Ed25519 key's name and account (`name@1`): public names, never key material.
            ed25519_keys = ?args.ed25519_keys.iter().map(|k| format!("{}@{}", k.api_key, k.account)).collect::<Vec<_>>(),
            "simulated exchange listening (Ctrl-C stops it)"
        );
        // Paper credentials, known to anyone who reads the source: printed so a user can sign with them.
        for account in 1..args.accounts {
            let (api_key, api_secret) = sim::paper_credentials(account);
            tracing::info!(account, %api_key, %api_secret, "paper account");
        }
        let mut limits = sim::SimConfig::default().limits;
        // A kind given on the command line replaces all of Binance's entries of that kind.
        limits.retain(|l| !args.limits.iter().any(|given| given.kind == l.kind));
        limits.extend(args.limits.iter().copied());
        let config = sim::SimConfig {
            seed: args.seed,
            limits,
            ed25519_keys: args.ed25519_keys,
            accounts: args.accounts,
            ..sim::SimConfig::default()
        };
        sim::serve(config, listener, shutdown_signal())
            .await
            .map_err(AppError::Sim)
    })
}

/// Crates that move the exchange's bytes and, at trace level, log them raw: request frames carry
/// the API key and signatures, and headers the key. Whatever `RUST_LOG` asks, they log at debug at
/// most (they log no payloads there); what the runner logs itself never holds a secret.
const RAW_PAYLOAD_LOGGERS: [&str; 6] = [
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "reqwest",
    "h2",
];

fn backtest(args: BacktestArgs) -> Result<(), AppError> {
    use rust_decimal::prelude::FromPrimitive;
    let common = CommonConfig::resolve(&args.common, None)?;
    init_tracing(common.log_format);
    let limits = crate::exchange::binance::limits::pools::spot_defaults_with(&args.limits);
    let balances = if args.balances.is_empty() {
        crate::backtest::default_balances()
    } else {
        args.balances
            .iter()
            .map(|(asset, amount)| {
                (
                    asset.clone(),
                    rust_decimal::Decimal::from_f64(*amount).unwrap_or_default(),
                )
            })
            .collect()
    };
    let options = crate::backtest::BacktestOptions {
        strategy: args.strategy,
        data: args.data,
        from: args.from,
        to: args.to,
        latency: args.latency,
        fees: args.fees.unwrap_or_default(),
        limits,
        balances,
        stdlib_dir: common.stdlib_dir,
        report_dir: args.report,
    };
    let report = crate::backtest::run(&options)?;
    println!(
        "backtest of {}: {} events, {} fills, PnL {:+.8} {} (max drawdown {:.8}), orders {:?}{}",
        report.strategy,
        report.events_replayed,
        report.fills,
        report.pnl_in_quote,
        report.quote_asset,
        report.max_drawdown,
        report.orders,
        options
            .report_dir
            .as_ref()
            .map_or(String::new(), |d| format!("; report in {}", d.display()))
    );
    Ok(())
}

fn record(args: RecordArgs) -> Result<(), AppError> {
    use crate::exchange::binance::account::profile::{Credentials, Profile};
    use crate::record::{RecordOptions, Rotate};
    init_tracing(args.log_format.unwrap_or(LogFormat::Text));
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        // Public streams and endpoints only: no credentials are read.
        let none = || Credentials::new("", "");
        let external = args.endpoints.rest_url.is_some() || args.testnet || args.live;
        let paper = match external {
            true => None,
            false => Some(
                sim::start(
                    sim::SimConfig {
                        seed: args.seed,
                        ..sim::SimConfig::default()
                    },
                    ([127, 0, 0, 1], 0).into(),
                )
                .await
                .map_err(AppError::Sim)?,
            ),
        };
        let base = match (&paper, args.testnet, args.live) {
            (Some(sim), _, _) => Profile::paper(&sim.rest_url(), &sim.ws_url(), &sim.ws_api_url(), none()),
            (None, true, _) => Profile::testnet(none()),
            (None, _, true) => Profile::live(none()),
            // --rest-url alone: an external simulator; its streams are on the same host.
            (None, false, false) => {
                let rest = args.endpoints.rest_url.clone().unwrap_or_default();
                let ws = rest.replacen("http", "ws", 1);
                Profile::paper(&rest, &ws, &format!("{ws}/ws-api/v3"), none())
            }
        };
        let e = &args.endpoints;
        let profile = base.with_urls(e.rest_url.as_deref(), e.ws_url.as_deref(), None);
        let options = RecordOptions {
            symbols: args.symbols.iter().map(|s| s.trim().to_ascii_uppercase()).collect(),
            out: args.out.clone(),
            rest_url: profile.rest_url,
            ws_url: profile.ws_url,
            rotate: match (args.rotate_mb, &args.rotate) {
                (Some(mb), _) => Rotate::Bytes((mb.max(0.001) * (1u64 << 20) as f64) as u64),
                (None, Some(_)) => Rotate::Hourly,
                (None, None) => Rotate::Never,
            },
            duration: args.duration,
        };
        let result = crate::record::record(options, shutdown_signal()).await;
        if let Some(sim) = paper {
            sim.shutdown().await;
        }
        let summary = result?;
        println!(
            "recorded {} frames and {} book snapshots into {} file(s) ({} reconnects)",
            summary.frames,
            summary.snapshots,
            summary.files.len(),
            summary.reconnects
        );
        for file in &summary.files {
            println!("  {}", file.display());
        }
        Ok(())
    })
}

fn init_tracing(format: LogFormat) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Capping only when trace was asked for: a `target=debug` directive would otherwise raise these
    // crates above the level the user chose.
    if filter.max_level_hint() == Some(tracing_subscriber::filter::LevelFilter::TRACE) {
        for target in RAW_PAYLOAD_LOGGERS {
            if let Ok(directive) = format!("{target}=debug").parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_logs())
        .with_target(false);
    // A second initialisation (tests calling twice) is harmless: keep the first.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Colours only for a person at a terminal: not into files or pipes, and not when `NO_COLOR`
/// is set to anything but the empty string (no-color.org).
fn colour_logs() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

/// Resolves on Ctrl-C or SIGTERM.
/// Resolves at the first delivery of a signal the listener was made for; never without one.
#[cfg(unix)]
async fn wait_for(listener: Option<tokio::signal::unix::Signal>) {
    match listener {
        Some(mut listener) => {
            listener.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    // Listening starts now, not when the future is first polled: a SIGTERM that comes while the
    // runner is still starting must stop it cleanly (with its summary), not kill it.
    #[cfg(unix)]
    let listeners = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let (interrupt, terminate) = listeners;
            tokio::select! {
                _ = wait_for(interrupt) => {},
                _ = wait_for(terminate) => {},
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
