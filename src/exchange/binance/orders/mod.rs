//! Orders from a valid request to their last state.
//!
//! - [`symbols`]: the symbol table and the grid check that makes a `ValidOrder`.
//! - [`client_ids`]: client order ids this process mints.
//! - [`order_wire`]: parameters out, answers and reports in.
//! - [`list_rules`]: the exchange's OCO / OTO / OTOCO rules, shared with the simulator.
//! - [`order_lists`]: OCO / OTO / OTOCO lists checked by those rules and put on the wire.
//! - [`order_state`]: the status merge that never regresses.
//! - [`order_registry`]: every order with its owner and state, made durable by the [`journal`]
//!   (synced to disk by [`journal_sync`], its records placed in the file by [`journal_file`]).

pub(crate) mod client_ids;
pub mod journal;
pub(crate) mod journal_file;
pub mod journal_sync;
pub(crate) mod list_rules;
pub mod order_lists;
pub(crate) mod order_registry;
pub mod order_state;
pub(crate) mod order_wire;
pub mod symbols;
