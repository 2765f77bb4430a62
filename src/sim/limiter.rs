//! The exchange's limits, enforced exactly: fixed epoch-aligned windows, 429 with Retry-After
//! when a request takes a pool over its limit, 418 with an escalating ban for any request sent
//! during a 429 wait or a ban. Also keeps the per-window peaks the tests assert on.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

use super::error::{ApiErr, RetryAfter};
use crate::ledger::limits::{PoolKind, RateLimit};

const MAX_BAN_MS: i64 = 3 * 86_400_000;
/// Finished windows remembered per pool for the stats.
const WINDOW_HISTORY: usize = 256;

#[derive(Debug, Clone)]
struct Pool {
    limit: RateLimit,
    window_start: i64,
    count: u64,
    peak: u64,
    peak_window_start: i64,
    history: VecDeque<WindowUsage>,
}

impl Pool {
    fn new(limit: RateLimit) -> Self {
        Pool {
            limit,
            window_start: i64::MIN,
            count: 0,
            peak: 0,
            peak_window_start: 0,
            history: VecDeque::new(),
        }
    }

    fn roll(&mut self, now: i64) {
        let start = self.limit.interval.window_start(now);
        if start != self.window_start {
            if self.count > 0 {
                if self.history.len() == WINDOW_HISTORY {
                    self.history.pop_front();
                }
                self.history.push_back(WindowUsage {
                    start: self.window_start,
                    count: self.count,
                });
            }
            self.window_start = start;
            self.count = 0;
        }
    }

    fn window_end(&self) -> i64 {
        self.window_start + self.limit.interval.millis()
    }

    fn note_peak(&mut self) {
        if self.count > self.peak {
            self.peak = self.count;
            self.peak_window_start = self.window_start;
        }
    }

    fn over(&self) -> bool {
        self.count > self.limit.limit
    }
}

/// The final count of one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WindowUsage {
    pub start: i64,
    pub count: u64,
}

/// Peak use of one pool, for the tests' "never exceeded" assertions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolStats {
    pub kind: PoolKind,
    /// The client address a per-IP pool counts (request weight, raw requests, connections);
    /// `None` for an account's order pools.
    pub ip: Option<IpAddr>,
    /// The account an order pool counts; `None` for the per-IP pools.
    pub account: Option<u16>,
    pub interval: String,
    pub limit: u64,
    /// Highest count seen in any single window.
    pub peak: u64,
    pub peak_window_start: i64,
    /// Count in the current window (as of the last request).
    pub current: u64,
    /// Recent windows that had any use, oldest first, the current one last.
    pub windows: Vec<WindowUsage>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SimStats {
    pub pools: Vec<PoolStats>,
    pub count_429: u64,
    pub count_418: u64,
    pub rest_requests: u64,
    pub ws_api_requests: u64,
    pub ws_connections: u64,
    /// Market-stream connections closed for sending more than 5 messages in a second.
    pub ws_message_limit_closes: u64,
    pub orders_placed: u64,
    pub bans: u32,
}

/// What an admitted request was charged, to settle it later (orders that succeed cost 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    pub weight: u64,
    charged_at_ms: i64,
    ip: IpAddr,
}

/// What one arrival draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draw {
    pub weight: u64,
    /// REST requests count 1 raw request each.
    pub raw: bool,
    /// WebSocket handshakes count one connection attempt.
    pub connection: bool,
    /// The weight is refunded on success, so the peak is noted when settled.
    pub refundable: bool,
}

impl Draw {
    /// What the arrival adds to a pool of `kind` (orders are counted when placed, not here).
    fn units(&self, kind: PoolKind) -> u64 {
        match kind {
            PoolKind::RequestWeight => self.weight,
            PoolKind::RawRequests => u64::from(self.raw),
            PoolKind::Connections => u64::from(self.connection),
            PoolKind::Orders => 0,
        }
    }
}

/// What the exchange counts per client IP (the peer address of the TCP connection): request
/// weight, raw requests, connection attempts, and the 429 wait and bans that follow from them.
struct IpCounts {
    pools: Vec<Pool>,
    wait_until: i64,
    /// After a connection attempt over the CONNECTIONS limit: new connections from this address
    /// wait until then (its requests on open connections and REST go on).
    connect_wait_until: i64,
    ban_until: i64,
    bans: u32,
}

/// What the exchange counts per account: its unfilled orders, and the wait after a -1015.
struct AccountOrders {
    pools: Vec<Pool>,
    /// After a -1015: new orders of this account are held until then.
    wait_until: i64,
}

/// The address the fault knobs act on when they name none: the loopback address tests use.
const DEFAULT_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub struct Limiter {
    /// The per-IP limits each new client address starts with.
    ip_limits: Vec<RateLimit>,
    ips: BTreeMap<IpAddr, IpCounts>,
    /// The order limits each account starts with.
    order_limits: Vec<RateLimit>,
    /// Each account's order pools, by account number.
    accounts: BTreeMap<u16, AccountOrders>,
    ban_base_ms: i64,
    stats: SimStats,
}

impl Limiter {
    pub fn new(limits: &[RateLimit], ban_base_ms: i64) -> Self {
        let (orders, ip_limits): (Vec<RateLimit>, Vec<RateLimit>) =
            limits.iter().copied().partition(|l| l.kind == PoolKind::Orders);
        let mut limiter = Limiter {
            ip_limits,
            ips: BTreeMap::new(),
            order_limits: orders,
            accounts: BTreeMap::new(),
            ban_base_ms: ban_base_ms.max(1),
            stats: SimStats::default(),
        };
        // The first account's order pools are reported from the start, as before there were
        // several (a run that places no order still shows them, empty).
        limiter.account(0);
        limiter
    }

    pub fn stats_mut(&mut self) -> &mut SimStats {
        &mut self.stats
    }

    fn ip(&mut self, ip: IpAddr) -> &mut IpCounts {
        let limits = &self.ip_limits;
        self.ips.entry(ip).or_insert_with(|| IpCounts {
            pools: limits.iter().copied().map(Pool::new).collect(),
            wait_until: i64::MIN,
            connect_wait_until: i64::MIN,
            ban_until: i64::MIN,
            bans: 0,
        })
    }

    fn account(&mut self, account: u16) -> &mut AccountOrders {
        let limits = &self.order_limits;
        self.accounts.entry(account).or_insert_with(|| AccountOrders {
            pools: limits.iter().copied().map(Pool::new).collect(),
            wait_until: i64::MIN,
        })
    }

    pub fn stats(&self) -> SimStats {
        let mut stats = self.stats.clone();
        stats.bans = self.ips.values().map(|c| c.bans).sum();
        let per_ip = self
            .ips
            .iter()
            .flat_map(|(ip, counts)| counts.pools.iter().map(move |p| (Some(*ip), None, p)));
        let per_account = self
            .accounts
            .iter()
            .flat_map(|(account, orders)| orders.pools.iter().map(move |p| (None, Some(*account), p)));
        stats.pools = per_ip
            .chain(per_account)
            .map(|(ip, account, p)| PoolStats {
                kind: p.limit.kind,
                ip,
                account,
                interval: p.limit.interval.to_string(),
                limit: p.limit.limit,
                peak: p.peak,
                peak_window_start: p.peak_window_start,
                current: p.count,
                windows: p
                    .history
                    .iter()
                    .copied()
                    .chain((p.count > 0).then_some(WindowUsage {
                        start: p.window_start,
                        count: p.count,
                    }))
                    .collect(),
            })
            .collect();
        stats
    }

    /// Admits one arrival from `ip` or answers it with 429/418. A forced 429 (fault knob) comes in as `forced_429`.
    pub fn admit(&mut self, now: i64, ip: IpAddr, draw: Draw, forced_429: Option<u64>) -> Result<Charge, ApiErr> {
        let counts = self.ip(ip);
        if now < counts.ban_until {
            return Err(self.banned(now, ip));
        }
        if now < counts.wait_until || (draw.connection && now < counts.connect_wait_until) {
            return Err(self.ban(now, ip));
        }
        for p in &mut counts.pools {
            p.roll(now);
            let add = draw.units(p.limit.kind);
            p.count += add;
            if add > 0 && !(draw.refundable && p.limit.kind == PoolKind::RequestWeight) {
                p.note_peak();
            }
        }
        if let Some(secs) = forced_429 {
            let until = secs_after(now, secs);
            counts.wait_until = counts.wait_until.max(until);
            return Err(self.throttled(now, until, -1003, "Too much request weight used; current limit is exceeded. Please use WebSocket Streams for live updates to avoid polling the API.".to_string()));
        }
        // Only a pool this arrival draws on can refuse it: a full CONNECTIONS pool refuses new
        // connections, not REST requests or requests on open connections.
        let blocking = counts
            .pools
            .iter()
            .filter(|p| draw.units(p.limit.kind) > 0 && p.over())
            .max_by_key(|p| p.window_end());
        if let Some(p) = blocking {
            let (until, kind) = (p.window_end(), p.limit.kind);
            let (code, msg) = match kind {
                PoolKind::RawRequests => (
                    -1003,
                    format!(
                        "Too many requests; current limit is {} requests per {}.",
                        p.limit.limit, p.limit.interval
                    ),
                ),
                PoolKind::Connections => (
                    -1034,
                    format!(
                        "Too many connection attempts from IP; current limit is {} per '{}'.",
                        p.limit.limit, p.limit.interval
                    ),
                ),
                _ => (
                    -1003,
                    format!(
                        "Too much request weight used; current limit is {} request weight per {}. Please use WebSocket Streams for live updates to avoid polling the API.",
                        p.limit.limit, p.limit.interval
                    ),
                ),
            };
            if kind == PoolKind::Connections {
                counts.connect_wait_until = counts.connect_wait_until.max(until);
            } else {
                counts.wait_until = counts.wait_until.max(until);
            }
            return Err(self.throttled(now, until, code, msg));
        }
        Ok(Charge {
            weight: draw.weight,
            charged_at_ms: now,
            ip,
        })
    }

    /// Settles a refundable charge: `keep` is the weight the request finally costs.
    pub fn settle(&mut self, charge: Charge, keep: u64) {
        let refund = charge.weight.saturating_sub(keep);
        for p in &mut self.ip(charge.ip).pools {
            if p.limit.kind != PoolKind::RequestWeight {
                continue;
            }
            if p.limit.interval.window_start(charge.charged_at_ms) == p.window_start {
                p.count = p.count.saturating_sub(refund);
                p.note_peak();
            }
        }
    }

    /// Answers 429 (-1015) as if the order limit were reached, holding new orders for `secs`
    /// (a new order before then is banned, as in [`Limiter::take_order`]).
    pub fn hit_order_limit(&mut self, now: i64, account: u16, secs: u64) -> ApiErr {
        let until = secs_after(now, secs);
        let orders = self.account(account);
        orders.wait_until = orders.wait_until.max(until);
        self.throttled(
            now,
            until,
            -1015,
            "Too many new orders; current limit is exceeded.".to_string(),
        )
    }

    /// Takes one slot in every ORDERS pool of `account` for a new order, or answers 429 (-1015).
    pub fn take_order(&mut self, now: i64, account: u16) -> Result<(), ApiErr> {
        self.take_orders(now, account, 1)
    }

    /// A new order of `account` from `ip` while its new orders must wait after a -1015: the IP is
    /// banned, as for any request during a 429 wait. `None` when new orders may go.
    pub fn refuse_held_order(&mut self, now: i64, ip: IpAddr, account: u16) -> Option<ApiErr> {
        (now < self.account(account).wait_until).then(|| self.ban(now, ip))
    }

    /// Takes `n` slots at once (an order list counts each of its orders), or none and answers 429 (-1015).
    /// The handlers ban an order sent during the wait ([`Limiter::refuse_held_order`]); one that
    /// slips past them in a race is refused here with the same -1015.
    pub fn take_orders(&mut self, now: i64, account: u16, n: u64) -> Result<(), ApiErr> {
        let orders = self.account(account);
        if now < orders.wait_until {
            let until = orders.wait_until;
            return Err(self.throttled(
                now,
                until,
                -1015,
                "Too many new orders; current limit is exceeded.".to_string(),
            ));
        }
        for p in &mut orders.pools {
            p.roll(now);
        }
        let blocking = orders
            .pools
            .iter()
            .filter(|p| p.count + n > p.limit.limit)
            .max_by_key(|p| p.window_end());
        if let Some(p) = blocking {
            let until = p.window_end();
            let msg = format!(
                "Too many new orders; current limit is {} orders per {}.",
                p.limit.limit, p.limit.interval
            );
            // The wait applies to this account's new orders only; the weight pools stay usable.
            orders.wait_until = until;
            return Err(self.throttled(now, until, -1015, msg));
        }
        for p in &mut orders.pools {
            p.count += n;
            p.note_peak();
        }
        self.stats.orders_placed += n;
        Ok(())
    }

    /// The first fill of an order of `account` lowers its unfilled order count (never below zero).
    pub fn order_filled(&mut self, now: i64, account: u16) {
        for p in &mut self.account(account).pools {
            p.roll(now);
            p.count = p.count.saturating_sub(1);
        }
    }

    /// Weight used elsewhere on the loopback IP (fault knob).
    pub fn add_external_weight(&mut self, now: i64, weight: u64) {
        for p in self
            .ip(DEFAULT_IP)
            .pools
            .iter_mut()
            .filter(|p| p.limit.kind == PoolKind::RequestWeight)
        {
            p.roll(now);
            p.count += weight;
            p.note_peak();
        }
    }

    /// Bans the loopback IP for `secs` (fault knob).
    pub fn ban_for(&mut self, now: i64, secs: u64) {
        let counts = self.ip(DEFAULT_IP);
        counts.ban_until = secs_after(now, secs);
        counts.bans += 1;
    }

    /// `(header suffix, count)` of every pool of `kind` counting `ip` (or `account`, for orders) at
    /// `now`, for the usage headers.
    pub fn usage(&mut self, now: i64, ip: IpAddr, account: u16, kind: PoolKind) -> Vec<(String, u64)> {
        self.usage_entries(now, ip, account, kind)
            .into_iter()
            .map(|(limit, count)| (limit.interval.header_suffix(), count))
            .collect()
    }

    /// `(limit, count)` of every pool of `kind` counting `ip` (`account`'s, for orders), for
    /// WebSocket API `rateLimits`.
    pub fn usage_entries(&mut self, now: i64, ip: IpAddr, account: u16, kind: PoolKind) -> Vec<(RateLimit, u64)> {
        match kind {
            PoolKind::Orders => self.order_usage(now, account),
            _ => Self::entries(&mut self.ip(ip).pools, now, kind),
        }
    }

    /// `(limit, count)` of `account`'s order pools.
    pub fn order_usage(&mut self, now: i64, account: u16) -> Vec<(RateLimit, u64)> {
        Self::entries(&mut self.account(account).pools, now, PoolKind::Orders)
    }

    fn entries(pools: &mut [Pool], now: i64, kind: PoolKind) -> Vec<(RateLimit, u64)> {
        pools
            .iter_mut()
            .filter(|p| p.limit.kind == kind)
            .map(|p| {
                p.roll(now);
                (p.limit, p.count)
            })
            .collect()
    }

    fn throttled(&mut self, now: i64, until: i64, code: i64, msg: String) -> ApiErr {
        self.stats.count_429 += 1;
        ApiErr::new(429, code, msg).with_retry(RetryAfter {
            secs: ceil_secs(until - now),
            until_ms: until,
        })
    }

    /// A request during a 429 wait: the IP is banned, longer for each repeat.
    fn ban(&mut self, now: i64, ip: IpAddr) -> ApiErr {
        let base = self.ban_base_ms;
        let counts = self.ip(ip);
        let doublings = counts.bans.min(20);
        let len = base.saturating_mul(1i64 << doublings).min(MAX_BAN_MS);
        counts.bans += 1;
        counts.ban_until = now + len;
        self.banned(now, ip)
    }

    fn banned(&mut self, now: i64, ip: IpAddr) -> ApiErr {
        self.stats.count_418 += 1;
        let until = self.ip(ip).ban_until;
        ApiErr::new(
            418,
            -1003,
            format!(
                "Way too much request weight used; IP banned until {until}. Please use WebSocket Streams for live updates to avoid bans."
            ),
        )
        .with_retry(RetryAfter {
            secs: ceil_secs(until - now),
            until_ms: until,
        })
    }
}

/// `now` plus `secs` seconds in ms, saturating: the knobs come from an HTTP body.
fn secs_after(now: i64, secs: u64) -> i64 {
    let ms = i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000);
    now.saturating_add(ms)
}

fn ceil_secs(ms: i64) -> u64 {
    (ms.max(0) as u64).div_ceil(1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::limits::IntervalUnit;

    const LO: IpAddr = DEFAULT_IP;

    fn draw(weight: u64) -> Draw {
        Draw {
            weight,
            raw: true,
            connection: false,
            refundable: false,
        }
    }

    #[test]
    fn over_limit_is_429_then_any_request_in_the_wait_is_418() {
        let limits = [RateLimit::new(PoolKind::RequestWeight, IntervalUnit::Second, 2, 10)];
        let mut l = Limiter::new(&limits, 1000);
        let t0 = 1_000_000_000_000; // aligned to 2 s
        assert!(l.admit(t0, LO, draw(10), None).is_ok());
        let e = l.admit(t0 + 500, LO, draw(1), None).unwrap_err();
        assert_eq!((e.status, e.code, e.retry.unwrap().secs), (429, -1003, 2));
        let b = l.admit(t0 + 600, LO, draw(1), None).unwrap_err();
        assert_eq!((b.status, b.retry.unwrap().until_ms), (418, t0 + 1600));
        assert_eq!(l.admit(t0 + 1500, LO, draw(1), None).unwrap_err().status, 418);
        // The ban is over but the 429 wait (until the window resets) is not: banned again, twice as long.
        let again = l.admit(t0 + 1600, LO, draw(1), None).unwrap_err();
        assert_eq!((again.status, again.retry.unwrap().until_ms), (418, t0 + 3600));
        assert!(l.admit(t0 + 3600, LO, draw(1), None).is_ok());
        assert_eq!(l.stats().pools[0].peak, 11);
        let windows: Vec<u64> = l.stats().pools[0].windows.iter().map(|w| w.count).collect();
        assert_eq!(windows, vec![11, 1]);
        assert_eq!((l.stats().count_429, l.stats().count_418, l.stats().bans), (1, 3, 2));
    }

    #[test]
    fn a_full_connection_pool_refuses_connections_only() {
        let limits = [
            RateLimit::new(PoolKind::RequestWeight, IntervalUnit::Minute, 1, 100),
            RateLimit::new(PoolKind::Connections, IntervalUnit::Minute, 5, 1),
        ];
        let mut l = Limiter::new(&limits, 1000);
        let connect = Draw {
            connection: true,
            ..draw(2)
        };
        let t0 = 1_800_000_000_000; // aligned to 5 minutes
        assert!(l.admit(t0, LO, connect, None).is_ok());
        let refused = l.admit(t0 + 10, LO, connect, None).unwrap_err();
        assert_eq!((refused.status, refused.code), (429, -1034));
        assert_eq!(refused.retry.unwrap().until_ms, t0 + 300_000);
        // Requests go on; another connection attempt during the wait is banned.
        assert!(l.admit(t0 + 20, LO, draw(1), None).is_ok());
        assert_eq!(l.admit(t0 + 30, LO, connect, None).unwrap_err().status, 418);
    }

    #[test]
    fn ban_length_doubles_up_to_three_days() {
        let mut l = Limiter::new(&[], 120_000);
        l.ip(LO).wait_until = i64::MAX;
        let first = l.admit(0, LO, draw(1), None).unwrap_err();
        assert_eq!(first.retry.unwrap().secs, 120);
        l.ip(LO).ban_until = 0;
        assert_eq!(l.admit(0, LO, draw(1), None).unwrap_err().retry.unwrap().secs, 240);
        for _ in 0..30 {
            l.ip(LO).ban_until = 0;
            let _ = l.admit(0, LO, draw(1), None);
        }
        l.ip(LO).ban_until = 0;
        assert_eq!(
            l.admit(0, LO, draw(1), None).unwrap_err().retry.unwrap().secs,
            3 * 86_400
        );
    }

    #[test]
    fn absurd_forced_waits_saturate_instead_of_overflowing() {
        let mut l = Limiter::new(&[], 1000);
        l.ban_for(1_000, u64::MAX);
        assert_eq!(l.admit(2_000, LO, draw(1), None).unwrap_err().status, 418);
        let mut l = Limiter::new(&[], 1000);
        let e = l.admit(1_000, LO, draw(1), Some(u64::MAX)).unwrap_err();
        assert_eq!((e.status, e.retry.unwrap().until_ms), (429, i64::MAX));
    }

    #[test]
    fn orders_count_goes_down_at_first_fill_and_refunds_settle() {
        let limits = [
            RateLimit::new(PoolKind::Orders, IntervalUnit::Second, 10, 2),
            RateLimit::new(PoolKind::RequestWeight, IntervalUnit::Minute, 1, 100),
        ];
        let mut l = Limiter::new(&limits, 1000);
        let now = 10_000;
        let refundable = Draw {
            refundable: true,
            ..draw(1)
        };
        let c = l.admit(now, LO, refundable, None).unwrap();
        l.take_order(now, 0).unwrap();
        l.settle(c, 0);
        l.take_order(now, 0).unwrap();
        assert_eq!(l.take_order(now, 0).unwrap_err().code, -1015);
        l.order_filled(now, 0);
        assert_eq!(
            l.usage(now, LO, 0, PoolKind::RequestWeight),
            vec![("1M".to_string(), 0)]
        );
        let weight = l
            .stats()
            .pools
            .into_iter()
            .find(|p| p.kind == PoolKind::RequestWeight)
            .unwrap();
        assert_eq!(weight.peak, 0);
    }

    #[test]
    fn each_client_ip_has_its_own_weight_pools_and_bans() {
        let limits = [
            RateLimit::new(PoolKind::RequestWeight, IntervalUnit::Minute, 1, 10),
            RateLimit::new(PoolKind::Orders, IntervalUnit::Second, 10, 1),
        ];
        let mut l = Limiter::new(&limits, 1000);
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(l.admit(0, LO, draw(10), None).is_ok());
        assert!(
            l.admit(0, other, draw(10), None).is_ok(),
            "another address has its own weight"
        );
        assert_eq!(l.admit(1, LO, draw(1), None).unwrap_err().status, 429);
        assert_eq!(
            l.usage(1, other, 0, PoolKind::RequestWeight),
            vec![("1M".to_string(), 10)]
        );
        l.take_order(1, 0).unwrap();
        assert_eq!(
            l.take_order(1, 0).unwrap_err().code,
            -1015,
            "orders count per account, not per IP"
        );
        assert_eq!(l.refuse_held_order(2, other, 0).map(|e| e.status), Some(418));
        assert!(l.take_order(1, 1).is_ok(), "another account has its own order count");
        assert_eq!(
            l.refuse_held_order(2, other, 1),
            None,
            "and is not held by the first's -1015"
        );
        let third: IpAddr = "127.0.0.3".parse().unwrap();
        assert!(l.admit(3, third, draw(1), None).is_ok(), "only the sender is banned");
        let weight: Vec<(Option<IpAddr>, u64)> = l
            .stats()
            .pools
            .iter()
            .filter(|p| p.kind == PoolKind::RequestWeight)
            .map(|p| (p.ip, p.peak))
            .collect();
        assert_eq!(weight, vec![(Some(LO), 11), (Some(other), 10), (Some(third), 1)]);
    }
}
