//! The commands behind `main`: each returns a typed error that `main` maps to an exit code.

use crate::cli::{CheckArgs, Cli, Command, LogFormat, SimArgs};
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
}

impl AppError {
    /// 2 for what the user can fix by changing the command or files, 1 for failures while running.
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Config(_) | AppError::Check { .. } | AppError::Affinity(_) => 2,
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
    let summary = runtime.block_on(engine::run(config, shutdown_signal()))?;
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
            ed25519_keys = ?args.ed25519_keys.iter().map(|k| k.api_key.as_str()).collect::<Vec<_>>(),
            "simulated exchange listening (Ctrl-C stops it)"
        );
        let mut limits = sim::SimConfig::default().limits;
        // A kind given on the command line replaces all of Binance's entries of that kind.
        limits.retain(|l| !args.limits.iter().any(|given| given.kind == l.kind));
        limits.extend(args.limits.iter().copied());
        let config = sim::SimConfig {
            seed: args.seed,
            limits,
            ed25519_keys: args.ed25519_keys,
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

fn init_tracing(format: LogFormat) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    for target in RAW_PAYLOAD_LOGGERS {
        if let Ok(directive) = format!("{target}=debug").parse() {
            filter = filter.add_directive(directive);
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
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
