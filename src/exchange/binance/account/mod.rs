//! Who we are and what the account tells us.
//!
//! - [`profile`]: where to connect and with which credentials.
//! - [`user_data`]: the user-data stream (order reports and balances).

pub(crate) mod profile;
pub mod user_data;
