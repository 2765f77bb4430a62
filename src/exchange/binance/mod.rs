//! Binance spot: the first venue adapter.
//!
//! - [`profile`]: where to connect and with which credentials.
//! - [`gateway`]: the only code that sends bytes to the exchange (price → admit → reserve → sign →
//!   send → observe).
//! - [`weights`]: the endpoint table (REST path, WebSocket API method and request weight per endpoint).
//! - [`transport`]: one request and its answer, over [`http`] or the WebSocket API ([`ws_api`]).
//! - [`sign`]: request signing (HMAC-SHA256 or Ed25519) for both transports.
//! - [`rest`]: typed calls and the retry policy.
//! - [`errors`]: exchange answers → the strategy API's error codes.
//! - [`usage`]: `rateLimits` parsing, usage headers, 429/418 classification.
//! - [`wire`]: the exchange's JSON shapes (shared with the simulator).
//! - [`venue`]: the `Venue` the host trades through; behind it, for orders: [`symbols`] (the grid check that
//!   makes a `ValidOrder`), [`client_ids`], [`order_wire`] (parameters out, answers in), [`order_state`] (the
//!   status merge), [`order_registry`] (with its [`journal`]).
//! - [`streams`], [`router`], [`book`], [`user_data`]: market data and the user-data stream.

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
pub mod transport;
pub mod usage;
pub mod user_data;
pub mod venue;
pub mod weights;
pub mod wire;
pub mod ws_api;

pub use errors::ClientError;
pub use profile::{ConfigError, Credentials, Profile, ProfileKind};
pub use rest::RetryPolicy;
pub use venue::{BinanceVenue, ClientOptions};
