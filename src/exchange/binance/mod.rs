//! Binance spot: the first venue adapter, grouped by job.
//!
//! - [`transport`]: one request and its answer over HTTP or the WebSocket API, through the
//!   [`transport::gateway`], the only code that sends bytes to the exchange.
//! - [`limits`]: the endpoint table and the rate-limit pools each request draws on.
//! - [`market_data`]: streams, frames routed into market state, local books, candles.
//! - [`orders`]: the grid check, client ids, wire shapes, the status merge, the registry and its journal.
//! - [`account`]: the profile and credentials, the user-data stream.
//! - [`venue`]: the `Venue` the host trades through, wiring all of the above.
//! - [`errors`]: exchange answers → the strategy API's error codes.
//! - [`wire`]: the exchange's JSON shapes (shared with the simulator).

pub mod account;
pub(crate) mod errors;
pub mod limits;
pub mod market_data;
pub mod orders;
pub mod transport;
pub(crate) mod venue;
pub mod wire;

pub use account::profile::{ConfigError, Credentials, Profile, ProfileKind};
pub use errors::ClientError;
pub use transport::api_calls::RetryPolicy;
pub use venue::{BinanceVenue, ClientOptions};
