//! The simulated Binance-compatible exchange.
