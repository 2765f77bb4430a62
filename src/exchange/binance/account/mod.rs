//! Who we are and what the account tells us.
//!
//! - [`accounts`]: the accounts one process trades, and which strategy trades on which.
//! - [`profile`]: where to connect and with which credentials.
//! - [`user_data`]: the user-data stream (order reports and balances).

pub mod accounts;
pub(crate) mod profile;
pub mod user_data;
