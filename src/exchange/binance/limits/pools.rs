//! Binance spot's rate-limit pools: the documented defaults, and the pools a
//! request's weight, order count, raw request and connection attempt draw on.
//!
//! Binance counts request weight, raw requests and connection attempts per egress
//! IP, and unfilled orders per account.

use crate::ledger::limits::IntervalUnit::{Day, Minute, Second};
use crate::ledger::limits::PoolKind::{Connections, Orders, RawRequests, RequestWeight};
use crate::ledger::{Cost, PoolKind, RateLimit, Scope, ServerUsage};

/// The first egress IP group (see [`crate::exchange::binance::transport::egress`]): the pools the
/// endpoint table prices requests in; [`in_group`] moves a cost to another group's.
pub const IP: Scope = Scope::Ip(0);
/// The first account (see [`crate::exchange::binance::account::accounts`]): the pools the endpoint
/// table prices orders in; [`for_account`] moves a cost to another account's.
pub const ACCOUNT: Scope = Scope::Account(0);
/// The pool group of a separate market-data server (paper trading on a real market: public market
/// data and streams from the source, orders on the local paper exchange). It is numbered apart
/// from the egress groups (which count from 0), since it is another server, not another address.
pub const SOURCE_GROUP: u16 = u16::MAX;
/// The source's IP pools. That server counts what it is sent on its own; nothing sent to the paper
/// exchange draws on these pools, and nothing sent to the source draws on an egress group's.
pub const SOURCE_IP: Scope = Scope::Ip(SOURCE_GROUP);

/// Binance spot's documented limits, used until the exchange announces its own.
pub fn spot_defaults() -> Vec<RateLimit> {
    vec![
        RateLimit::new(RequestWeight, Minute, 1, 6000).scoped(IP),
        RateLimit::new(Orders, Second, 10, 100).scoped(ACCOUNT),
        RateLimit::new(Orders, Day, 1, 200_000).scoped(ACCOUNT),
        RateLimit::new(RawRequests, Minute, 5, 300_000).scoped(IP),
        RateLimit::new(Connections, Minute, 5, 300).scoped(IP),
    ]
}

/// Binance's documented limits with `given` in place of every default of the same kind (for
/// `--limit`: an exchange, simulator or backtest with other limits).
pub fn spot_defaults_with(given: &[RateLimit]) -> Vec<RateLimit> {
    let mut limits = spot_defaults();
    limits.retain(|l| !given.iter().any(|g| g.kind == l.kind));
    limits.extend(given.iter().copied());
    limits
}

/// `limits` with each per-IP pool of the first group repeated for groups 1..`groups`: every egress
/// address has the same limits, counted apart.
pub fn for_groups(limits: Vec<RateLimit>, groups: u16) -> Vec<RateLimit> {
    let mut out: Vec<RateLimit> = limits
        .iter()
        .copied()
        .filter(|l| !matches!(l.scope, Scope::Ip(n) if n > 0 && n != SOURCE_GROUP))
        .collect();
    for group in 1..groups {
        out.extend(
            limits
                .iter()
                .filter(|l| l.scope == IP)
                .map(|l| l.scoped(Scope::Ip(group))),
        );
    }
    out
}

/// Whom a 429 or 418 stops: Binance bans the client IP, so every request leaving from `group`'s
/// address (the market source: every request to that server), and nothing else.
pub const fn backoff_scope(group: u16) -> Scope {
    Scope::Ip(group)
}

/// `limits` with each order pool of the first account repeated for accounts 1..`accounts`: every
/// account has the same order limits, counted apart (the IP's pools are not repeated).
pub fn for_accounts(limits: Vec<RateLimit>, accounts: u16) -> Vec<RateLimit> {
    let mut out: Vec<RateLimit> = limits
        .iter()
        .copied()
        .filter(|l| !matches!(l.scope, Scope::Account(n) if n > 0))
        .collect();
    for account in 1..accounts {
        out.extend(
            limits
                .iter()
                .filter(|l| l.scope == ACCOUNT)
                .map(|l| l.scoped(Scope::Account(account))),
        );
    }
    out
}

/// `cost` drawn from `account`'s order pools instead of the first account's.
pub fn for_account(cost: Cost, account: u16) -> Cost {
    match account {
        0 => cost,
        n => cost.rescoped(ACCOUNT, Scope::Account(n)),
    }
}

/// Usage a server reported to `account`'s key: its order counts are that account's.
pub fn usage_for_account(mut usage: Vec<ServerUsage>, account: u16) -> Vec<ServerUsage> {
    if account > 0 {
        for u in usage.iter_mut().filter(|u| u.scope == ACCOUNT) {
            u.scope = Scope::Account(account);
        }
    }
    usage
}

/// `cost` drawn from `group`'s per-IP pools instead of the first group's.
pub fn in_group(cost: Cost, group: u16) -> Cost {
    match group {
        0 => cost,
        n => cost.rescoped(IP, Scope::Ip(n)),
    }
}

/// Usage a server reported for the address of `group`: its per-IP counts are that group's. A
/// market source's order counts are its accounts', not the paper account's, so they are dropped.
pub fn usage_in_group(mut usage: Vec<ServerUsage>, group: u16) -> Vec<ServerUsage> {
    if group == SOURCE_GROUP {
        usage.retain(|u| u.scope == IP);
    }
    if group > 0 {
        for u in usage.iter_mut().filter(|u| u.scope == IP) {
            u.scope = Scope::Ip(group);
        }
    }
    usage
}

/// What a request costs, in Binance's terms, as the pools it draws on.
pub const fn cost(weight: u32, orders: u32, raw: u32, connections: u32) -> Cost {
    Cost::new()
        .with_scoped(IP, RequestWeight, weight)
        .with_scoped(ACCOUNT, Orders, orders)
        .with_scoped(IP, RawRequests, raw)
        .with_scoped(IP, Connections, connections)
}

/// `cost` as charged by the market-data source: its IP draws move to [`SOURCE_IP`]. The source
/// takes no orders, so an order draw (which no market-data request has) would stay the account's.
pub fn at_source(cost: Cost) -> Cost {
    in_group(cost, SOURCE_GROUP)
}

/// The source's usage headers, as counts of its own pools (see [`usage_in_group`]).
pub fn usage_at_source(usage: Vec<ServerUsage>) -> Vec<ServerUsage> {
    usage_in_group(usage, SOURCE_GROUP)
}

/// The source's announced limits as its own pools: the IP ones at [`SOURCE_IP`]; its order limits
/// are its accounts', never spent by paper orders, so they are left out.
pub fn limits_at_source(limits: &[RateLimit]) -> Vec<RateLimit> {
    limits
        .iter()
        .filter(|l| l.scope == IP)
        .map(|l| l.scoped(SOURCE_IP))
        .collect()
}

/// The pools of a run whose market data comes from a separate server: `local` (the paper
/// exchange's) plus the same IP pools again for the source, until the source announces its own.
pub fn with_source_pools(local: Vec<RateLimit>) -> Vec<RateLimit> {
    let source = limits_at_source(&local);
    local.into_iter().chain(source).collect()
}

/// What Binance counts a kind of pool by.
pub const fn scope_of(kind: PoolKind) -> Scope {
    match kind {
        Orders => ACCOUNT,
        RequestWeight | RawRequests | Connections => IP,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_land_in_the_pools_binance_counts_them_in() {
        let c = cost(5, 1, 1, 0);
        assert_eq!(c.units(IP, RequestWeight), 5);
        assert_eq!(c.units(ACCOUNT, Orders), 1);
        assert_eq!(c.units(IP, Orders), 0);
        assert_eq!(c.draws().len(), 3, "zero draws are left out");
        for limit in spot_defaults() {
            assert_eq!(scope_of(limit.kind), limit.scope);
        }
    }

    #[test]
    fn the_market_sources_requests_draw_on_its_own_pools_only() {
        let c = at_source(cost(250, 0, 1, 1));
        assert_eq!(c.units(SOURCE_IP, RequestWeight), 250);
        assert_eq!(c.units(SOURCE_IP, RawRequests), 1);
        assert_eq!(c.units(SOURCE_IP, Connections), 1);
        assert_eq!(
            c.units(IP, RequestWeight) + c.units(IP, RawRequests) + c.units(IP, Connections),
            0
        );
        let pools = with_source_pools(spot_defaults());
        assert_eq!(
            pools.len(),
            spot_defaults().len() + 3,
            "weight, raw requests, connections"
        );
        assert!(pools.iter().all(|l| l.scope != SOURCE_IP || l.kind != Orders));
        let minute = crate::ledger::Interval::new(Minute, 1);
        let header = |scope, kind| ServerUsage {
            scope,
            kind,
            interval: minute,
            used: 7,
        };
        let usage = usage_at_source(vec![header(IP, RequestWeight), header(ACCOUNT, Orders)]);
        assert_eq!(usage, vec![header(SOURCE_IP, RequestWeight)]);
    }

    #[test]
    fn each_egress_group_has_its_own_ip_pools() {
        let limits = for_groups(spot_defaults(), 2);
        let second: Vec<PoolKind> = limits
            .iter()
            .filter(|l| l.scope == Scope::Ip(1))
            .map(|l| l.kind)
            .collect();
        assert_eq!(second, vec![RequestWeight, RawRequests, Connections]);
        assert_eq!(for_groups(limits.clone(), 2), limits, "repeating is idempotent");
        assert_eq!(for_groups(limits, 1), spot_defaults());
        let c = in_group(cost(5, 1, 1, 0), 1);
        assert_eq!(
            (c.units(Scope::Ip(1), RequestWeight), c.units(IP, RequestWeight)),
            (5, 0)
        );
        assert_eq!(c.units(ACCOUNT, Orders), 1, "orders stay the account's");
    }

    #[test]
    fn each_account_has_its_own_order_pools_and_shares_the_ips() {
        let limits = for_groups(for_accounts(spot_defaults(), 2), 2);
        let second: Vec<PoolKind> = limits
            .iter()
            .filter(|l| l.scope == Scope::Account(1))
            .map(|l| l.kind)
            .collect();
        assert_eq!(second, vec![Orders, Orders], "10 s and 1 day");
        assert_eq!(
            limits.iter().filter(|l| l.kind == RequestWeight).count(),
            2,
            "weight per egress group, not per account"
        );
        assert_eq!(
            for_groups(for_accounts(limits.clone(), 2), 2),
            limits,
            "repeating is idempotent"
        );
        assert_eq!(for_accounts(spot_defaults(), 1), spot_defaults());
        let c = for_account(in_group(cost(1, 1, 1, 0), 1), 1);
        assert_eq!((c.units(Scope::Account(1), Orders), c.units(ACCOUNT, Orders)), (1, 0));
        assert_eq!(c.units(Scope::Ip(1), RequestWeight), 1, "the weight stays the group's");
        let minute = crate::ledger::Interval::new(Minute, 1);
        let header = |scope, kind| ServerUsage {
            scope,
            kind,
            interval: minute,
            used: 3,
        };
        assert_eq!(
            usage_for_account(vec![header(IP, RequestWeight), header(ACCOUNT, Orders)], 1),
            vec![header(IP, RequestWeight), header(Scope::Account(1), Orders)]
        );
    }
}
