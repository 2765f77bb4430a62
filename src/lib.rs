//! `runner` runs Lua trading strategies behind one shared ledger of the exchange's limits.
