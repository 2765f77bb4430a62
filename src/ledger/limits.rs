//! What a limit is: a kind of pool, a fixed clock-aligned window, and a count.
//!
//! Venue-neutral. Venue adapters translate their exchange's announcements
//! (Binance's `exchangeInfo.rateLimits`, usage headers) into these types.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a pool counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PoolKind {
    /// Request weight per IP (REST and WebSocket API together).
    RequestWeight,
    /// Unfilled order count per account.
    Orders,
    /// Raw request count per IP.
    RawRequests,
    /// WebSocket connection attempts per IP.
    Connections,
}

impl PoolKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolKind::RequestWeight => "REQUEST_WEIGHT",
            PoolKind::Orders => "ORDERS",
            PoolKind::RawRequests => "RAW_REQUESTS",
            PoolKind::Connections => "CONNECTIONS",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "REQUEST_WEIGHT" => Some(PoolKind::RequestWeight),
            "ORDERS" => Some(PoolKind::Orders),
            "RAW_REQUESTS" => Some(PoolKind::RawRequests),
            "CONNECTIONS" => Some(PoolKind::Connections),
            _ => None,
        }
    }
}

impl fmt::Display for PoolKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum IntervalUnit {
    Second,
    Minute,
    Hour,
    Day,
}

impl IntervalUnit {
    pub fn millis(self) -> i64 {
        match self {
            IntervalUnit::Second => 1_000,
            IntervalUnit::Minute => 60_000,
            IntervalUnit::Hour => 3_600_000,
            IntervalUnit::Day => 86_400_000,
        }
    }

    /// The exchange's spelling: SECOND, MINUTE, HOUR, DAY.
    pub fn as_str(self) -> &'static str {
        match self {
            IntervalUnit::Second => "SECOND",
            IntervalUnit::Minute => "MINUTE",
            IntervalUnit::Hour => "HOUR",
            IntervalUnit::Day => "DAY",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "SECOND" => Some(IntervalUnit::Second),
            "MINUTE" => Some(IntervalUnit::Minute),
            "HOUR" => Some(IntervalUnit::Hour),
            "DAY" => Some(IntervalUnit::Day),
            _ => None,
        }
    }

    /// The letter used in usage header names (`X-MBX-USED-WEIGHT-1M`).
    pub fn letter(self) -> char {
        match self {
            IntervalUnit::Second => 'S',
            IntervalUnit::Minute => 'M',
            IntervalUnit::Hour => 'H',
            IntervalUnit::Day => 'D',
        }
    }

    pub fn from_letter(c: char) -> Option<Self> {
        match c.to_ascii_uppercase() {
            'S' => Some(IntervalUnit::Second),
            'M' => Some(IntervalUnit::Minute),
            'H' => Some(IntervalUnit::Hour),
            'D' => Some(IntervalUnit::Day),
            _ => None,
        }
    }
}

/// A window length such as "10 SECOND" or "1 DAY".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Interval {
    pub unit: IntervalUnit,
    pub num: u32,
}

impl Interval {
    pub const fn new(unit: IntervalUnit, num: u32) -> Self {
        Interval { unit, num }
    }

    pub fn millis(self) -> i64 {
        self.unit.millis() * i64::from(self.num.max(1))
    }

    /// Start (exchange epoch ms) of the fixed window containing `now_ms`.
    /// Windows are aligned to the epoch, so a DAY window starts at 00:00 UTC.
    pub fn window_start(self, now_ms: i64) -> i64 {
        now_ms.div_euclid(self.millis()) * self.millis()
    }

    /// Suffix of the usage headers, e.g. "1M", "10S".
    pub fn header_suffix(self) -> String {
        format!("{}{}", self.num, self.unit.letter())
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.num, self.unit.as_str())
    }
}

/// One pool: at most `limit` units of `kind` per fixed `interval` window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RateLimit {
    pub kind: PoolKind,
    pub interval: Interval,
    pub limit: u64,
}

impl RateLimit {
    pub const fn new(kind: PoolKind, unit: IntervalUnit, num: u32, limit: u64) -> Self {
        RateLimit {
            kind,
            interval: Interval::new(unit, num),
            limit,
        }
    }
}

/// Binance spot's documented limits, used until the exchange announces its own.
pub fn binance_spot_defaults() -> Vec<RateLimit> {
    use IntervalUnit::*;
    use PoolKind::*;
    vec![
        RateLimit::new(RequestWeight, Minute, 1, 6000),
        RateLimit::new(Orders, Second, 10, 100),
        RateLimit::new(Orders, Day, 1, 200_000),
        RateLimit::new(RawRequests, Minute, 5, 300_000),
        RateLimit::new(Connections, Minute, 5, 300),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_align_to_the_epoch() {
        let ten_s = Interval::new(IntervalUnit::Second, 10);
        assert_eq!(ten_s.window_start(1_700_000_012_345), 1_700_000_010_000);
        let day = Interval::new(IntervalUnit::Day, 1);
        assert_eq!(day.window_start(86_400_000 * 3 + 5), 86_400_000 * 3);
        assert_eq!(Interval::new(IntervalUnit::Minute, 1).header_suffix(), "1M");
    }
}
