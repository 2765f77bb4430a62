//! Binance spot's rate-limit pools: the documented defaults, and the pools a
//! request's weight, order count, raw request and connection attempt draw on.
//!
//! Binance counts request weight, raw requests and connection attempts per egress
//! IP, and unfilled orders per account.

use crate::ledger::limits::IntervalUnit::{Day, Minute, Second};
use crate::ledger::limits::PoolKind::{Connections, Orders, RawRequests, RequestWeight};
use crate::ledger::{Cost, PoolKind, RateLimit, Scope};

/// The egress IP group requests leave from (one address today).
pub const IP: Scope = Scope::Ip(0);
/// The account orders are placed for (one account today).
pub const ACCOUNT: Scope = Scope::Account(0);

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

/// What a request costs, in Binance's terms, as the pools it draws on.
pub const fn cost(weight: u32, orders: u32, raw: u32, connections: u32) -> Cost {
    Cost::new()
        .with_scoped(IP, RequestWeight, weight)
        .with_scoped(ACCOUNT, Orders, orders)
        .with_scoped(IP, RawRequests, raw)
        .with_scoped(IP, Connections, connections)
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
}
