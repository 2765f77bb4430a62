//! Request cost of each Binance spot endpoint.
