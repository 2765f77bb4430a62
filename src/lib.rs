//! `runner` runs Lua trading strategies behind one shared ledger of the exchange's limits.
//!
//! - [`ledger`]: the exchange's limits, reserved before every request and reconciled after.
//! - [`exchange`]: the venue boundary and the Binance spot adapter (the only code that talks to an exchange).
//! - [`sim`]: a simulated Binance-compatible exchange, the default paper-trading venue.
//! - [`host`]: sandboxed Lua VMs, one per strategy, and the strategy API.
//! - [`telemetry`], [`status`], [`top`]: Prometheus metrics, the `/status` report, and the live terminal view.
//! - [`record`]: market recordings (`runner record`); [`backtest`]: replays them through the matching engine.

/// Every allocation of the runner (and of its Lua VMs, which allocate through Rust) goes to mimalloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod app;
pub mod backtest;
pub mod cli;
pub(crate) mod config;
pub(crate) mod engine;
pub mod error_chain;
pub mod exchange;
pub mod host;
pub mod ledger;
pub mod record;
pub mod reload;
pub mod sim;
pub(crate) mod status;
pub(crate) mod telemetry;
pub(crate) mod top;
