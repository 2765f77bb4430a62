//! Recording market streams and replaying them: `runner record` and `runner backtest`.

#[path = "../support/mod.rs"]
mod support;

mod examples;
mod fees;
mod files;
mod parity;
mod replay;
