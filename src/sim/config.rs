//! What a simulated exchange looks like: limits, credentials, balances, symbols, pacing.

use std::time::Duration;

use rust_decimal::Decimal;

use crate::exchange::binance::limits::pools::spot_defaults;
use crate::ledger::limits::RateLimit;

/// Built-in paper-trading credentials (the simulator's first account).
pub const PAPER_API_KEY: &str = "paperKeyRunnerSimulatorXpDq4ZJ0cW9mB7nV2aL8sK3tY6uR1eH5gF0oI";
pub const PAPER_API_SECRET: &str = "paperSecretRunnerSimulatorQ3wE5rT7yU9iO1pA2sD4fG6hJ8kL0zX";

/// The HMAC key and secret of paper account `account`: the built-in ones for account 0, and for
/// each further account (`SimConfig::accounts`) the same with `-<account>` appended, so a runner and
/// a `runner sim --accounts N` started apart agree on them without passing secrets around.
pub fn paper_credentials(account: u16) -> (String, String) {
    match account {
        0 => (PAPER_API_KEY.to_string(), PAPER_API_SECRET.to_string()),
        n => (format!("{PAPER_API_KEY}-{n}"), format!("{PAPER_API_SECRET}-{n}")),
    }
}

/// One tradable pair of the synthetic market.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolSpec {
    pub symbol: String,
    pub base: String,
    pub quote: String,
    pub tick_size: Decimal,
    pub step_size: Decimal,
    pub min_qty: Decimal,
    pub max_qty: Decimal,
    pub min_notional: Decimal,
    pub max_num_orders: u32,
}

impl SymbolSpec {
    /// A spec with the usual bounds: min qty = one step, max price/qty generous, 200 open orders.
    pub fn new(base: &str, quote: &str, tick: &str, step: &str, min_notional: &str) -> Self {
        let step_size: Decimal = step.parse().unwrap_or(Decimal::ONE);
        SymbolSpec {
            symbol: format!("{base}{quote}"),
            base: base.to_string(),
            quote: quote.to_string(),
            tick_size: tick.parse().unwrap_or(Decimal::ONE),
            step_size,
            min_qty: step_size,
            max_qty: Decimal::from(9_000_000u32),
            min_notional: min_notional.parse().unwrap_or(Decimal::ZERO),
            max_num_orders: 200,
        }
    }

    pub fn max_price(&self) -> Decimal {
        Decimal::from(1_000_000u32)
    }

    /// NOTIONAL's upper bound (applied to limit orders only, as `applyMaxToMarket` is false).
    pub fn max_notional(&self) -> Decimal {
        Decimal::from(9_000_000u32)
    }
}

/// Starting USD value of each synthetic asset (USDT is the unit).
pub fn default_asset_prices() -> Vec<(String, f64)> {
    [
        ("BTC", 65_000.0),
        ("ETH", 3_200.0),
        ("BNB", 580.0),
        ("SOL", 150.0),
        ("XRP", 0.55),
        ("USDT", 1.0),
    ]
    .into_iter()
    .map(|(a, p)| (a.to_string(), p))
    .collect()
}

/// The default market: USDT legs, BTC crosses and ETH crosses, so several triangles exist.
pub fn default_symbols() -> Vec<SymbolSpec> {
    vec![
        SymbolSpec::new("BTC", "USDT", "0.01", "0.00001", "5"),
        SymbolSpec::new("ETH", "USDT", "0.01", "0.0001", "5"),
        SymbolSpec::new("ETH", "BTC", "0.00001", "0.0001", "0.0001"),
        SymbolSpec::new("BNB", "USDT", "0.01", "0.001", "5"),
        SymbolSpec::new("BNB", "BTC", "0.000001", "0.001", "0.0001"),
        SymbolSpec::new("BNB", "ETH", "0.00001", "0.001", "0.001"),
        SymbolSpec::new("SOL", "USDT", "0.01", "0.001", "5"),
        SymbolSpec::new("SOL", "BTC", "0.0000001", "0.001", "0.0001"),
        SymbolSpec::new("XRP", "USDT", "0.0001", "0.1", "5"),
        SymbolSpec::new("XRP", "BTC", "0.00000001", "1", "0.0001"),
    ]
}

/// Commission rates per fill, as fractions of what the fill gives (0.001 is 0.1 %), paid in the
/// asset received. Binance's base spot rate, 0.1 % maker and taker, is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fees {
    pub maker: Decimal,
    pub taker: Decimal,
}

impl Default for Fees {
    fn default() -> Self {
        let base = Decimal::new(1, 3);
        Fees {
            maker: base,
            taker: base,
        }
    }
}

impl Fees {
    /// `maker=0.001,taker=0.001` (either may be left out: it keeps the default 0.001). A rate is
    /// a fraction from 0 to 0.1 with at most 8 decimals (Binance's commission precision).
    pub fn parse(text: &str) -> Result<Fees, String> {
        let mut fees = Fees::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected maker=RATE or taker=RATE, e.g. maker=0.001,taker=0.001"))?;
            let rate: Decimal = value
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: {:?} is not a number", value.trim()))?;
            if rate.is_sign_negative() || rate > Decimal::new(1, 1) || rate.scale() > 8 {
                return Err(format!(
                    "{part:?}: a rate is a fraction from 0 to 0.1 with at most 8 decimals (0.001 is 0.1 %)"
                ));
            }
            match key.trim() {
                "maker" => fees.maker = rate,
                "taker" => fees.taker = rate,
                other => return Err(format!("{other:?}: unknown fee (maker or taker)")),
            }
        }
        Ok(fees)
    }

    /// The rate a fill pays.
    pub fn rate(&self, is_maker: bool) -> Decimal {
        if is_maker {
            self.maker
        } else {
            self.taker
        }
    }
}

/// An Ed25519 API key: its name (sent as the API key), its public key and the account it trades.
#[derive(Debug, Clone)]
pub struct Ed25519ApiKey {
    pub api_key: String,
    pub public_key: ed25519_dalek::VerifyingKey,
    /// The account the key belongs to (0: the first; below `SimConfig::accounts`).
    pub account: u16,
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seeds the synthetic market: the same seed gives the same price paths.
    pub seed: u64,
    /// Enforced limits, announced in `exchangeInfo.rateLimits`.
    pub limits: Vec<RateLimit>,
    /// The first account's HMAC API key and secret.
    pub api_key: String,
    pub api_secret: String,
    /// Ed25519 API keys the accounts also accept, each naming its account.
    pub ed25519_keys: Vec<Ed25519ApiKey>,
    /// How many accounts (at least one): account n > 0 signs with [`paper_credentials`]`(n)`.
    /// Each has its own balances, orders, order-count pools and user-data streams; request weight
    /// stays per client IP, whatever account sends.
    pub accounts: u16,
    /// Starting free balances of every account.
    pub balances: Vec<(String, Decimal)>,
    /// Synthetic market step (price walk, liquidity refresh, 100 ms depth diffs). Zero: no automatic
    /// steps; tests drive the market with `SimHandle::step_market`.
    pub market_tick: Duration,
    /// First 418 ban length; doubles per repeat, capped at 3 days.
    pub ban_base: Duration,
    pub symbols: Vec<SymbolSpec>,
    /// Starting USD value of every asset used by `symbols`.
    pub asset_prices: Vec<(String, f64)>,
    /// Server ping period on WebSocket connections.
    pub ws_ping_interval: Duration,
    /// A connection that has not answered a ping for this long is closed.
    pub ws_pong_timeout: Duration,
    /// Price levels of synthetic liquidity per side.
    pub synthetic_levels: usize,
    /// Mean time between cross-rate dislocations (arbitrage opportunities); zero disables them.
    pub dislocation_every: Duration,
    /// Oldest request-log entries are dropped beyond this many.
    pub request_log_cap: usize,
    /// Commission rates of the account's fills.
    pub fees: Fees,
    /// One-way delay of every order placement and cancel: the request reaches the matching engine
    /// this long after it arrives, and its answer leaves this long after that (paper trading's
    /// `--latency`, the model backtests apply). Zero: none.
    pub order_latency: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        let balance = |a: &str, n: u32| (a.to_string(), Decimal::from(n));
        SimConfig {
            seed: 1,
            limits: spot_defaults(),
            api_key: PAPER_API_KEY.to_string(),
            api_secret: PAPER_API_SECRET.to_string(),
            ed25519_keys: Vec::new(),
            accounts: 1,
            balances: vec![
                balance("BTC", 10),
                balance("ETH", 100),
                balance("USDT", 100_000),
                balance("BNB", 1_000),
                balance("SOL", 1_000),
                balance("XRP", 100_000),
            ],
            market_tick: Duration::from_millis(100),
            ban_base: Duration::from_secs(120),
            symbols: default_symbols(),
            asset_prices: default_asset_prices(),
            ws_ping_interval: Duration::from_secs(20),
            ws_pong_timeout: Duration::from_secs(60),
            synthetic_levels: 20,
            dislocation_every: Duration::from_secs(12),
            request_log_cap: 100_000,
            fees: Fees::default(),
            order_latency: Duration::ZERO,
        }
    }
}
