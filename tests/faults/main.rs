//! Injected faults: the real `runner` binary (and, where the assertion needs internals, the
//! client library) against a simulator on loopback whose fault knobs and request log are the
//! ground truth. Nothing is sent during a back-off, nothing is lost, no order is placed twice.
//!
//! - `backoff`: forced 429 and 418, weight used by another process on the same IP.
//! - `orders`: 5xx and lost answers on order placement.
//! - `streams`: dropped sockets and depth sequence gaps.
//! - `restart`: stops and `kill -9` in the middle of a window, a ban, and open orders.

#[path = "../client/support.rs"]
mod client_support;
#[path = "../support/mod.rs"]
mod support;

mod harness;

mod answers;
mod backoff;
mod order_lists;
mod orders;
mod restart;
mod streams;
