//! The simulated exchange's REST, stream and WebSocket API protocols, as any client sees them.

#[path = "support.rs"]
mod sim_support;

mod accounts;
mod connection_limit;
mod fees_latency;
mod kline_seconds;
mod order_lists;
mod orders_advanced;
mod rest;
mod rest_endpoints;
mod self_trade_prevention;
mod stp_decrement;
mod ws;
mod ws_session;
