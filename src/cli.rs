//! Command-line interface: `runner [OPTIONS] <STRATEGY>...`, `runner check`, `runner sim`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ed25519_dalek::pkcs8::DecodePublicKey;
use ed25519_dalek::VerifyingKey;

use crate::exchange::binance::orders::journal_sync::JournalSync;
use crate::exchange::binance::transport::ws_api::OrderTransport;
use crate::host::affinity::CpuList;
use crate::ledger::{IntervalUnit, PoolKind, RateLimit};
use crate::sim::Ed25519ApiKey;

const EXAMPLES: &str = "\
Examples:
  runner strategies/arb.lua                      paper trading on the built-in simulated exchange
  runner strategies/arb.lua --duration 30s       ... and stop by itself after 30 seconds
  runner strategies/arb.lua --paper --market live   paper trading on Binance's live market (no keys)
  runner strategies/arb.lua --testnet            Binance spot testnet (BINANCE_TESTNET_API_KEY / _SECRET,
                                                 or _PRIVATE_KEY_FILE for an Ed25519 key)
  runner strategies/arb.lua --live               real money (BINANCE_API_KEY / BINANCE_API_SECRET,
                                                 or BINANCE_PRIVATE_KEY_FILE)
  runner a.lua b.lua                             several strategies, one process, one shared ledger
  runner check strategies/*.lua                  load and validate without trading
  runner sim --port 9000                         the simulated exchange alone, for other clients
  runner a.lua --metrics 127.0.0.1:9898          ... with Prometheus metrics at /metrics
  runner top 127.0.0.1:9898                      live view of that runner
  runner record --symbols BTCUSDT --out rec --live   record Binance's public market streams
  runner backtest strategies/x.lua --data rec    replay a recording (or Binance CSV files) through a strategy";

#[derive(Debug, Parser)]
#[command(
    name = "runner",
    version,
    about = "Runs Lua trading strategies behind one shared ledger of the exchange's rate limits",
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and validate strategy files without trading (exit status 2 if any is broken).
    Check(CheckArgs),
    /// Run the simulated exchange alone (Binance spot REST, streams and WebSocket API on one port).
    Sim(SimArgs),
    /// Record market streams (book tickers, trades, depth diffs, klines) to compressed files.
    Record(RecordArgs),
    /// Replay recorded or historical market data through a strategy and report how it did.
    Backtest(BacktestArgs),
    /// Live view of a running runner started with --metrics: pools, ledger state, strategies.
    Top(TopArgs),
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// The runner's --metrics address.
    #[arg(value_name = "ADDR", default_value = "127.0.0.1:9898")]
    pub addr: String,
    /// Seconds between refreshes.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub every: f64,
}

/// Which exchange to trade on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Paper,
    Testnet,
    Live,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// Strategy files (Lua) to run.
    #[arg(value_name = "STRATEGY")]
    pub strategies: Vec<PathBuf>,

    /// Paper trading on the built-in simulated exchange (the default).
    #[arg(long, conflicts_with_all = ["testnet", "live"])]
    pub paper: bool,
    /// Binance spot testnet; keys from BINANCE_TESTNET_API_KEY / BINANCE_TESTNET_API_SECRET (or
    /// BINANCE_TESTNET_PRIVATE_KEY_FILE, an Ed25519 key).
    #[arg(long, conflicts_with = "live")]
    pub testnet: bool,
    /// Binance spot with REAL FUNDS; keys from BINANCE_API_KEY / BINANCE_API_SECRET (or
    /// BINANCE_PRIVATE_KEY_FILE, an Ed25519 key).
    #[arg(long)]
    pub live: bool,

    #[command(flatten)]
    pub endpoints: EndpointArgs,

    /// Paper trading on a real market: the paper exchange's book and trades follow the public
    /// market streams of `live` (Binance spot), `testnet`, or a Binance-compatible server's base
    /// URL (e.g. http://127.0.0.1:9000). Orders stay on the paper exchange; no keys needed.
    #[arg(long, value_name = "SOURCE", conflicts_with_all = ["testnet", "live"])]
    pub market: Option<String>,
    /// Commission rates of the paper exchange's fills, e.g. maker=0.0002,taker=0.0005 (fractions;
    /// paid in the asset received) [default: maker=0.001,taker=0.001, Binance's base rate].
    #[arg(long, value_name = "maker=RATE,taker=RATE", value_parser = crate::sim::Fees::parse, conflicts_with_all = ["testnet", "live"])]
    pub fees: Option<crate::sim::Fees>,
    /// One-way delay the paper exchange applies to every order and cancel (reaching its matching
    /// engine, then answering), as backtests do, e.g. 20ms [default: none].
    #[arg(long, value_parser = parse_duration, conflicts_with_all = ["testnet", "live"])]
    pub latency: Option<Duration>,

    /// Stop by itself after this long (e.g. 30s, 5m, 1h).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Do not reload strategy files when they change.
    #[arg(long, conflicts_with = "reload")]
    pub no_reload: bool,
    /// Reload strategy files when they change (on by default, except with --live).
    #[arg(long)]
    pub reload: bool,
    /// Cancel the strategies' open orders on exit [default: true on paper, false otherwise].
    #[arg(long, value_name = "BOOL")]
    pub cancel_on_exit: Option<bool>,
    /// Seconds between status lines (0 turns them off).
    #[arg(long, value_name = "SECS")]
    pub status_every: Option<u64>,
    /// Serve Prometheus metrics at http://ADDR/metrics and a JSON status at /status (for
    /// `runner top`), e.g. 127.0.0.1:9898; port 0 picks a free port (the log names it).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Seed of the paper exchange's synthetic market.
    #[arg(long)]
    pub seed: Option<u64>,
    /// How long an order whose placement went unanswered, and that the exchange does not
    /// know, stays PENDING before it is declared REJECTED (5s to 10m) [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub unknown_order_grace: Option<Duration>,
    /// When an order's journal record must be on the disk: `background` (written before the
    /// send, synced right after; survives any crash of the runner) or `before-send` (synced
    /// before the send; also survives a power loss, at the cost of a disk sync per order)
    /// [default: background].
    #[arg(long, value_name = "WHEN", value_parser = JournalSync::parse)]
    pub journal_sync: Option<JournalSync>,
    /// How strategies' orders and cancels reach the exchange: `rest` (HTTP requests) or `ws-api`
    /// (the WebSocket API, on one connection per strategy, opened on its first order; lower
    /// latency) [default: rest].
    #[arg(long, value_name = "HOW", value_parser = OrderTransport::parse)]
    pub order_transport: Option<OrderTransport>,
    /// Strategy threads spin while they wait for events instead of sleeping: the next event is
    /// handled tens of µs sooner, but each strategy keeps a CPU core busy. For machines with a
    /// core to spare per strategy.
    #[arg(long)]
    pub busy_poll: bool,
    /// Start with this limit instead of Binance's documented ones of that pool kind, as
    /// KIND=COUNT/WINDOW (e.g. REQUEST_WEIGHT=1000/1s; repeat for several): for an exchange or
    /// simulator with other limits, so what is sent before it announces its own counts in the
    /// right pool. The limits the exchange announces replace these.
    #[arg(long = "limit", value_name = "KIND=COUNT/WINDOW", value_parser = parse_limit)]
    pub limits: Vec<RateLimit>,
    /// Share the exchange's limits with every process on this IP through Redis, e.g.
    /// redis://127.0.0.1:6379/0 or rediss://...; the password from RUNNER_REDIS_PASSWORD
    /// [default: this process's own ledger].
    #[arg(long, value_name = "URL", env = "RUNNER_LEDGER")]
    pub ledger: Option<String>,
    /// Name of the shared budget: one per egress IP [default: default].
    #[arg(long, value_name = "NAME")]
    pub ledger_group: Option<String>,
    /// Start on a conservative local share when the shared ledger cannot be reached at start
    /// (otherwise that is an error).
    #[arg(long)]
    pub ledger_fallback: bool,
    /// Reserve these CPUs (e.g. 2,3 or 2-5) for strategy threads: each strategy runs on one of
    /// them, in turn, and the rest of the runner on the other CPUs (Linux).
    #[arg(long, value_name = "CPUS", value_parser = CpuList::parse)]
    pub pin_strategies: Option<CpuList>,
    /// Refuse any order worth more than AMOUNT of the quote asset ASSET, e.g. USDT=1000 (repeat
    /// for several quote assets). Checked before the order is sent; strategies cannot change it.
    #[arg(long = "max-order-notional", value_name = "ASSET=AMOUNT", value_parser = parse_notional_cap)]
    pub max_order_notional: Vec<(String, f64)>,
    /// Refuse a strategy's order while it has this many open.
    #[arg(long, value_name = "N")]
    pub max_open_orders: Option<u32>,

    #[command(flatten)]
    pub common: CommonArgs,

    /// Options file (TOML); every option can be set there, flags win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Where a profile's endpoints are (bases: the client appends `/api/v3/...`, `/ws/...`).
#[derive(Debug, Args, Default, Clone)]
pub struct EndpointArgs {
    /// REST base URL, e.g. http://127.0.0.1:9000.
    #[arg(long, value_name = "URL")]
    pub rest_url: Option<String>,
    /// Market-stream base URL, e.g. ws://127.0.0.1:9000.
    #[arg(long, value_name = "URL")]
    pub ws_url: Option<String>,
    /// WebSocket API URL, e.g. ws://127.0.0.1:9000/ws-api/v3.
    #[arg(long, value_name = "URL")]
    pub ws_api_url: Option<String>,
}

#[derive(Debug, Args, Default, Clone)]
pub struct CommonArgs {
    /// Log format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Where the ledger, the order journal and strategy state persist [default: ./state].
    #[arg(long, value_name = "DIR", env = "RUNNER_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Folder of the Lua modules strategies can `require` [default: ./stdlib].
    #[arg(long, value_name = "DIR", env = "RUNNER_STDLIB")]
    pub stdlib: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Strategy files (Lua) to validate.
    #[arg(value_name = "STRATEGY", required = true)]
    pub strategies: Vec<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 9000)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// Seed of the synthetic market (same seed, same market).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A limit to enforce instead of Binance's for that pool kind, as KIND=COUNT/WINDOW, e.g.
    /// REQUEST_WEIGHT=300/10s or ORDERS=20/10s (kinds: REQUEST_WEIGHT, ORDERS, RAW_REQUESTS, CONNECTIONS;
    /// windows: s, m, h, d). Repeat for several; small limits let you stress a strategy safely.
    #[arg(long = "limit", value_name = "KIND=COUNT/WINDOW", value_parser = parse_limit)]
    pub limits: Vec<RateLimit>,
    /// Also accept the Ed25519 API key NAME, whose public key is the PEM file FILE (as
    /// `openssl pkey -pubout` writes it), for the first account, or for account N (counted from 0,
    /// below --accounts) with `@N`. Repeat for several.
    #[arg(long = "ed25519-key", value_name = "NAME=FILE[@N]", value_parser = parse_ed25519_key)]
    pub ed25519_keys: Vec<Ed25519ApiKey>,
    /// Paper accounts to serve (each with its own balances, orders, order limits and user-data
    /// stream; request weight stays per client IP). Their keys and secrets are printed at start.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub accounts: u16,
    /// Log format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Symbols to record, comma-separated (e.g. BTCUSDT,ETHUSDT).
    #[arg(long, value_delimiter = ',', required = true)]
    pub symbols: Vec<String>,
    /// Folder the recording files go to (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Record the built-in simulated exchange's market (the default).
    #[arg(long, conflicts_with_all = ["testnet", "live"])]
    pub paper: bool,
    /// Record Binance spot testnet's public streams (no keys needed).
    #[arg(long, conflicts_with = "live")]
    pub testnet: bool,
    /// Record Binance spot's public streams (no keys needed).
    #[arg(long)]
    pub live: bool,
    /// Seed of the built-in simulator's market (with --paper).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub endpoints: EndpointArgs,
    /// Start a new file once the current one reaches this many MiB (fractions allowed, e.g. 0.5).
    #[arg(long, value_name = "N", conflicts_with = "rotate")]
    pub rotate_mb: Option<f64>,
    /// Start a new file at every UTC hour (`hourly`).
    #[arg(long, value_name = "WHEN", value_parser = ["hourly"])]
    pub rotate: Option<String>,
    /// Stop by itself after this long (e.g. 30s, 5m, 1h).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Log format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// The strategy file (Lua), unchanged from paper or live.
    #[arg(value_name = "STRATEGY")]
    pub strategy: PathBuf,
    /// A folder of recordings (*.rrec) and/or Binance CSV files (trades, aggTrades, klines), or one file.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Replay from this time (epoch ms, or UTC like 2025-01-01T00:00:00Z).
    #[arg(long, value_name = "T", value_parser = parse_time_ms)]
    pub from: Option<i64>,
    /// Replay up to this time (epoch ms, or UTC like 2025-01-01T06:00:00Z).
    #[arg(long, value_name = "T", value_parser = parse_time_ms)]
    pub to: Option<i64>,
    /// One-way delay of every order and cancel to the exchange (and of its answer back).
    #[arg(long, value_parser = parse_duration, default_value = "5ms")]
    pub latency: Duration,
    /// Commission rates of the fills, e.g. maker=0.0002,taker=0.0005 (fractions; paid in the
    /// asset received) [default: maker=0.001,taker=0.001, Binance's base rate].
    #[arg(long, value_name = "maker=RATE,taker=RATE", value_parser = crate::sim::Fees::parse)]
    pub fees: Option<crate::sim::Fees>,
    /// A limit instead of Binance's for that pool kind, as KIND=COUNT/WINDOW (repeat for several).
    #[arg(long = "limit", value_name = "KIND=COUNT/WINDOW", value_parser = parse_limit)]
    pub limits: Vec<RateLimit>,
    /// Starting balance ASSET=AMOUNT (repeat; replaces the paper account's defaults when given).
    #[arg(long = "balance", value_name = "ASSET=AMOUNT", value_parser = parse_notional_cap)]
    pub balances: Vec<(String, f64)>,
    /// Folder for report.json and equity.svg.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Epoch ms, or an RFC 3339 UTC time.
pub fn parse_time_ms(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.trim().parse::<i64>() {
        return Ok(ms);
    }
    humantime::parse_rfc3339_weak(text.trim())
        .map_err(|e| format!("{text:?}: {e} (give epoch ms or e.g. 2025-01-01T00:00:00Z)"))
        .and_then(|t| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .map_err(|_| format!("{text:?}: before 1970"))
        })
}

/// Parses `USDT=1000` into a cap of 1000 on the value of any order quoted in USDT (the amount is
/// checked with the file's caps, in `config`).
pub fn parse_notional_cap(text: &str) -> Result<(String, f64), String> {
    let usage = || format!("{text:?}: expected ASSET=AMOUNT, e.g. USDT=1000");
    let (asset, amount) = text.split_once('=').ok_or_else(usage)?;
    let asset = asset.trim().to_ascii_uppercase();
    let amount: f64 = amount.trim().parse().map_err(|_| usage())?;
    if asset.is_empty() {
        return Err(usage());
    }
    Ok((asset, amount))
}

/// Parses `NAME=FILE` into an Ed25519 API key named NAME with the public key in FILE, for the
/// first account; `NAME=FILE@N` for account N (a trailing `@` and digits is always the account).
pub fn parse_ed25519_key(text: &str) -> Result<Ed25519ApiKey, String> {
    let (name, path) = text
        .split_once('=')
        .filter(|(name, path)| !name.trim().is_empty() && !path.trim().is_empty())
        .ok_or_else(|| format!("{text:?}: expected NAME=FILE or NAME=FILE@ACCOUNT, e.g. my-key=public.pem@1"))?;
    let (path, account) = match path.rsplit_once('@') {
        Some((file, n)) if !n.trim().is_empty() && n.trim().chars().all(|c| c.is_ascii_digit()) => {
            let account: u16 = n
                .trim()
                .parse()
                .map_err(|_| format!("{text:?}: account {n} is out of range (0 to {})", u16::MAX))?;
            (file, account)
        }
        _ => (path, 0),
    };
    let pem = std::fs::read_to_string(path.trim()).map_err(|e| format!("{path}: {e}"))?;
    let public_key = VerifyingKey::from_public_key_pem(pem.trim())
        .map_err(|e| format!("{path}: not a PEM Ed25519 public key ({e})"))?;
    Ok(Ed25519ApiKey {
        api_key: name.trim().to_owned(),
        public_key,
        account,
    })
}

/// Parses `REQUEST_WEIGHT=300/10s` into a limit of 300 per 10-second window.
pub fn parse_limit(text: &str) -> Result<RateLimit, String> {
    let usage = || format!("{text:?}: expected KIND=COUNT/WINDOW, e.g. REQUEST_WEIGHT=300/10s");
    let (kind, rest) = text.split_once('=').ok_or_else(usage)?;
    let (count, window) = rest.split_once('/').ok_or_else(usage)?;
    let kind = PoolKind::parse(kind.trim()).ok_or_else(|| {
        format!("{text:?}: unknown kind {kind:?} (REQUEST_WEIGHT, ORDERS, RAW_REQUESTS or CONNECTIONS)")
    })?;
    let limit: u64 = count.trim().parse().map_err(|_| usage())?;
    let window = window.trim();
    let unit = window
        .chars()
        .last()
        .and_then(IntervalUnit::from_letter)
        .ok_or_else(usage)?;
    let num: u32 = window[..window.len() - 1].parse().map_err(|_| usage())?;
    if limit == 0 || num == 0 {
        return Err(format!("{text:?}: the count and the window must be positive"));
    }
    Ok(RateLimit::new(kind, unit, num, limit))
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (examples: 30s, 5m, 1h30m)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_keys_read_their_public_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("public.pem");
        // RFC 8032's first test key: SubjectPublicKeyInfo DER (a fixed 12-byte prefix, then the key).
        std::fs::write(
            &file,
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n",
        )
        .unwrap();
        let key = parse_ed25519_key(&format!("mine={}", file.display())).unwrap();
        assert_eq!((key.api_key.as_str(), key.account), ("mine", 0));
        let key = parse_ed25519_key(&format!("sub={}@2", file.display())).unwrap();
        assert_eq!((key.api_key.as_str(), key.account), ("sub", 2));
        let err = parse_ed25519_key(&format!("sub={}@70000", file.display())).unwrap_err();
        assert!(err.contains("out of range"), "{err}");
        assert_eq!(
            hex::encode(key.public_key.as_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        for bad in ["mine", "=x.pem", "mine=/no/such.pem"] {
            assert!(parse_ed25519_key(bad).is_err(), "{bad}");
        }
        std::fs::write(&file, "not a key").unwrap();
        let err = parse_ed25519_key(&format!("mine={}", file.display())).unwrap_err();
        assert!(err.contains("not a PEM Ed25519 public key"), "{err}");
    }

    #[test]
    fn limits_parse_and_bad_ones_are_explained() {
        assert_eq!(
            parse_limit("REQUEST_WEIGHT=300/10s").unwrap(),
            RateLimit::new(PoolKind::RequestWeight, IntervalUnit::Second, 10, 300)
        );
        assert_eq!(
            parse_limit("ORDERS=20/1d").unwrap(),
            RateLimit::new(PoolKind::Orders, IntervalUnit::Day, 1, 20)
        );
        for bad in [
            "WEIGHT=1/1s",
            "ORDERS=x/1s",
            "ORDERS=5/10y",
            "ORDERS=0/1s",
            "ORDERS",
            "ORDERS=5/s",
        ] {
            assert!(parse_limit(bad).is_err(), "{bad} should be refused");
        }
    }
}
