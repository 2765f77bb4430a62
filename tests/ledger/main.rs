//! The ledger's properties, and the ledger shared through Redis: by ledgers in this process
//! (`shared`) and by real `runner` processes against the simulator (`processes`); egress IP
//! groups, each its own weight pool at the simulator (`egress`).

// Shared with the fault tests; this binary uses part of it.
#[allow(dead_code)]
#[path = "../faults/harness.rs"]
mod harness;
#[path = "../support/redis.rs"]
mod redis_server;
#[path = "../support/mod.rs"]
mod support;

mod accounts;
mod egress;
mod processes;
mod props;
mod shared;
