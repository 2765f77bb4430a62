//! The Binance client library against the built-in simulator on loopback.

#[path = "support.rs"]
mod client_support;

mod amend_replace;
mod answers;
mod breaker;
mod fuzz;
mod keys;
mod limits;
mod market_cache;
mod order_kinds;
mod order_lists;
mod orders;
mod recovery;
mod risk;
mod startup;
mod streams;
mod ws_orders;
