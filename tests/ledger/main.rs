//! The ledger's properties, and the ledger shared through Redis.

mod props;
mod shared;
