//! What a limit is: a pool (scope, kind, window) and a count.
//!
//! Venue-neutral. Venue adapters translate their exchange's announcements
//! (e.g. a `rateLimits` list, usage headers) into these types, and map each
//! request to the pools it draws on (see [`super::Cost`]).

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

impl PoolKind {
    /// Where exchanges usually count this kind: orders per account, the rest per
    /// egress IP. [`RateLimit::new`] uses it; an adapter whose exchange counts
    /// otherwise says so with [`RateLimit::scoped`].
    pub const fn default_scope(self) -> Scope {
        match self {
            PoolKind::Orders => Scope::Account(0),
            PoolKind::RequestWeight | PoolKind::RawRequests | PoolKind::Connections => Scope::Ip(0),
        }
    }
}

/// What an exchange counts a pool by. The numbers are ids the venue adapter assigns
/// (IP group 0 is the default egress address, account 0 the first account), so a
/// scope is `Copy` and compares in one instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    /// An egress IP address (a group of connections leaving from one address).
    Ip(u16),
    /// An account, sub-account or UID.
    Account(u16),
    /// One connection (e.g. messages per WebSocket connection).
    Connection(u16),
    /// One endpoint (venues that count per endpoint per IP).
    Endpoint(u16),
    /// One account's use of one instrument (venues that count per UID and symbol).
    AccountInstrument { account: u16, instrument: u32 },
}

impl Default for Scope {
    fn default() -> Self {
        Scope::Ip(0)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Ip(n) => write!(f, "ip{n}"),
            Scope::Account(n) => write!(f, "account{n}"),
            Scope::Connection(n) => write!(f, "connection{n}"),
            Scope::Endpoint(n) => write!(f, "endpoint{n}"),
            Scope::AccountInstrument { account, instrument } => write!(f, "account{account}/instrument{instrument}"),
        }
    }
}

/// A scope and a kind in one integer, ordered as (kind, scope): a draw finds its pools
/// with one compare each, and pools sorted by it keep every window of a pair together.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey(u64);

impl PoolKey {
    pub const fn new(scope: Scope, kind: PoolKind) -> Self {
        let (variant, id, instrument) = match scope {
            Scope::Ip(n) => (0, n, 0),
            Scope::Account(n) => (1, n, 0),
            Scope::Connection(n) => (2, n, 0),
            Scope::Endpoint(n) => (3, n, 0),
            Scope::AccountInstrument { account, instrument } => (4, account, instrument),
        };
        PoolKey(((kind as u64) << 56) | (variant << 48) | ((id as u64) << 32) | instrument as u64)
    }

    /// `==`, usable in a `const fn`.
    pub const fn const_eq(self, other: PoolKey) -> bool {
        self.0 == other.0
    }

    pub const fn kind(self) -> PoolKind {
        match self.0 >> 56 {
            0 => PoolKind::RequestWeight,
            1 => PoolKind::Orders,
            2 => PoolKind::RawRequests,
            _ => PoolKind::Connections,
        }
    }

    pub const fn scope(self) -> Scope {
        let id = (self.0 >> 32) as u16;
        match (self.0 >> 48) as u8 {
            0 => Scope::Ip(id),
            1 => Scope::Account(id),
            2 => Scope::Connection(id),
            3 => Scope::Endpoint(id),
            _ => Scope::AccountInstrument {
                account: id,
                instrument: self.0 as u32,
            },
        }
    }
}

impl fmt::Debug for PoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.scope(), self.kind())
    }
}

/// How a pool's window moves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    /// Fixed windows aligned to the exchange's epoch: the count resets at each boundary.
    #[default]
    Fixed,
    /// A window sliding with time: what was sent in the last interval counts.
    Rolling,
    /// A leaky (credit) bucket: the limit drains away evenly over each interval.
    Bucket,
}

impl WindowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WindowKind::Fixed => "fixed",
            WindowKind::Rolling => "rolling",
            WindowKind::Bucket => "bucket",
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

/// One pool: at most `limit` units of `kind`, counted by `scope`, per `interval`
/// window of the given `window` kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RateLimit {
    pub kind: PoolKind,
    pub interval: Interval,
    pub limit: u64,
    #[serde(default)]
    pub scope: Scope,
    #[serde(default)]
    pub window: WindowKind,
}

impl RateLimit {
    /// A fixed-window pool in the kind's usual scope ([`PoolKind::default_scope`]).
    pub const fn new(kind: PoolKind, unit: IntervalUnit, num: u32, limit: u64) -> Self {
        RateLimit {
            kind,
            interval: Interval::new(unit, num),
            limit,
            scope: kind.default_scope(),
            window: WindowKind::Fixed,
        }
    }

    /// The same pool counted by another scope.
    pub const fn scoped(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    /// The same pool with another kind of window.
    pub const fn windowed(mut self, window: WindowKind) -> Self {
        self.window = window;
        self
    }

    /// The pool's scope and kind.
    pub const fn key(&self) -> PoolKey {
        PoolKey::new(self.scope, self.kind)
    }

    /// Whether two limits describe the same pool (their counts are the same count).
    pub fn same_pool(&self, other: &RateLimit) -> bool {
        self.scope == other.scope
            && self.kind == other.kind
            && self.window == other.window
            && self.interval.millis() == other.interval.millis()
    }
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

    #[test]
    fn a_pool_key_gives_back_its_scope_and_kind_and_sorts_by_kind_then_scope() {
        let scopes = [
            Scope::Ip(0),
            Scope::Ip(u16::MAX),
            Scope::Account(3),
            Scope::Connection(7),
            Scope::Endpoint(9),
            Scope::AccountInstrument {
                account: 2,
                instrument: u32::MAX,
            },
        ];
        let kinds = [
            PoolKind::RequestWeight,
            PoolKind::Orders,
            PoolKind::RawRequests,
            PoolKind::Connections,
        ];
        let mut pairs = Vec::new();
        for kind in kinds {
            for scope in scopes {
                let key = PoolKey::new(scope, kind);
                assert_eq!((key.scope(), key.kind()), (scope, kind));
                pairs.push((key, (kind, scope)));
            }
        }
        let mut by_key = pairs.clone();
        by_key.sort_by_key(|p| p.0);
        pairs.sort_by_key(|p| p.1);
        assert_eq!(by_key, pairs);
    }
}
