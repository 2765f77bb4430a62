//! Recording market streams and replaying them: `runner record` and `runner backtest`.

#[path = "../support/mod.rs"]
mod support;

mod examples;
mod fees;
mod files;
mod market_pools;
mod parity;
mod replay;
