//! Binance spot: the first venue adapter.
//!
//! - [`wire`]: the exchange's JSON shapes (shared with the simulator).
//! - [`weights`]: request cost per endpoint and parameters.
//! - [`usage`]: `rateLimits` parsing, usage headers, 429/418 classification.

pub mod usage;
pub mod weights;
pub mod wire;
