//! Market data: stream connections and subscriptions, the frames they carry routed into market
//! state, and what is kept from them.
//!
//! - [`streams`]: connections and reference-counted subscriptions.
//! - [`stream_router`]: frames in, market state and events out.
//! - [`book`]: local order books kept in sync with depth diffs.
//! - [`kline_series`]: candles kept from the kline streams.

pub(crate) mod book;
pub(crate) mod kline_series;
pub mod stream_router;
pub(crate) mod streams;
