//! The real `runner` binary as a user runs it: commands, the README's promises, logs, metrics and `runner top`.

#[path = "../support/mod.rs"]
mod support;

mod accounts_ed25519;
mod bracket;
mod cli;
mod cli_breaker;
mod cli_hostile;
mod log_colour;
mod market_maker;
mod metrics;
mod paper_market;
mod readme;
mod readme_first_run;
mod top;
