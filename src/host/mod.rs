//! Sandboxed Lua VMs, one per strategy, and the strategy API.
