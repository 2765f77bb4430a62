//! Binance spot's rate limits as the venue adapter sees them: which pools each endpoint draws on
//! and how much.
//!
//! - [`endpoints`]: the endpoint table (REST path, WebSocket API method and request weight per endpoint).
//! - [`pools`]: the documented pools and what a request draws from each.
//! - [`usage`]: `rateLimits` parsing, usage headers, 429/418 classification.

pub(crate) mod endpoints;
pub mod pools;
pub mod usage;
