//! Who we are and what the account tells us.
//!
//! - [`profile`]: where to connect and with which credentials.
//! - [`user_data`]: the user-data stream (order reports and balances).

pub mod profile;
pub mod user_data;
