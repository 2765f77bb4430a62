//! Binance rate-limit announcements, usage headers and 429/418 classification.
