//! The ledger's properties, and the ledger shared through Redis: by ledgers in this process
//! (`shared`) and by real `runner` processes against the simulator (`processes`).

// Shared with the fault tests; this binary uses part of it.
#[allow(dead_code)]
#[path = "../faults/harness.rs"]
mod harness;
#[path = "../support/redis.rs"]
mod redis_server;
#[path = "../support/mod.rs"]
mod support;

mod processes;
mod props;
mod shared;
