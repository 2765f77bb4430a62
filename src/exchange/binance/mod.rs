//! Binance spot: the first venue adapter.
//!
//! - [`profile`]: where to connect and with which credentials.
//! - [`gateway`]: the only code that sends bytes to the exchange (reserve → sign → send → observe).
//! - [`sign`]: HMAC-SHA256 request signing.
//! - [`errors`]: exchange answers → the strategy API's error codes.
//! - [`wire`]: the exchange's JSON shapes (shared with the simulator).
//! - [`weights`]: request cost per endpoint and parameters.
//! - [`usage`]: `rateLimits` parsing, usage headers, 429/418 classification.
//! - Orders: [`symbols`] (the grid check that makes a `ValidOrder`), [`client_ids`], [`order_wire`]
//!   (parameters out, answers in), [`order_state`] (the status merge), [`order_registry`] (with its [`journal`]).

pub mod book;
pub mod client_ids;
pub mod errors;
pub mod gateway;
pub mod http;
pub mod journal;
pub mod journal_sync;
pub mod kline_series;
pub mod order_registry;
pub mod order_state;
pub mod order_wire;
pub mod per_thread;
pub mod profile;
pub mod rate_limits;
pub mod rest;
pub mod router;
pub mod sign;
pub mod streams;
pub mod symbols;
pub mod usage;
pub mod user_data;
pub mod venue;
pub mod weights;
pub mod wire;
pub mod ws_orders;

pub use errors::ClientError;
pub use profile::{ConfigError, Credentials, Profile, ProfileKind};
pub use rest::RetryPolicy;
pub use venue::{BinanceVenue, ClientOptions};
