//! The Lua strategy host: the sandbox, the API modules, reload and isolation.

#[path = "support.rs"]
mod support;

mod amend_replace;
mod api;
mod attacks;
mod declarations;
mod fan_out;
mod isolation;
mod log;
mod market_cache;
mod market_runs;
mod order_lists;
mod reload;
mod sandbox;
mod sim;
mod sizing;
