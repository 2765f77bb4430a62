//! Orders from a valid request to their last state.
//!
//! - [`symbols`]: the symbol table and the grid check that makes a `ValidOrder`.
//! - [`client_ids`]: client order ids this process mints.
//! - [`order_wire`]: parameters out, answers and reports in.
//! - [`order_lists`]: OCO / OTO / OTOCO lists checked as the exchange documents and put on the wire.
//! - [`order_state`]: the status merge that never regresses.
//! - [`order_registry`]: every order with its owner and state, made durable by the [`journal`]
//!   (synced to disk by [`journal_sync`]).

pub(crate) mod client_ids;
pub mod journal;
pub mod journal_sync;
pub mod order_lists;
pub(crate) mod order_registry;
pub mod order_state;
pub(crate) mod order_wire;
pub mod symbols;
