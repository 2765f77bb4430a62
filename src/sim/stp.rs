//! Self-trade prevention: what happens when a taker order would trade with one of the account's
//! own resting orders (the simulator has one account, so every user-against-user match is a
//! self-trade). The taker order's mode decides, as documented.

use rust_decimal::Decimal;

use super::error::ApiErr;
use super::matching::{End, Exchange};
use super::params::Params;

/// The STP modes the matching engine applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stp {
    /// The orders trade.
    #[default]
    None,
    ExpireTaker,
    ExpireMaker,
    ExpireBoth,
}

impl Stp {
    const ALL: [(Stp, &'static str); 4] = [
        (Stp::None, "NONE"),
        (Stp::ExpireTaker, "EXPIRE_TAKER"),
        (Stp::ExpireMaker, "EXPIRE_MAKER"),
        (Stp::ExpireBoth, "EXPIRE_BOTH"),
    ];

    /// Every symbol's `allowedSelfTradePreventionModes`.
    pub const NAMES: [&'static str; 4] = ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"];

    pub fn as_str(self) -> &'static str {
        Stp::ALL
            .iter()
            .find(|(mode, _)| *mode == self)
            .map_or("NONE", |(_, name)| name)
    }

    /// `selfTradePreventionMode`: a documented mode the symbols do not allow (DECREMENT, TRANSFER)
    /// is refused as the exchange refuses it, anything else as an illegal value.
    pub fn from_params(p: &Params) -> Result<Stp, ApiErr> {
        let Some(raw) = p.get("selfTradePreventionMode") else {
            return Ok(Stp::None);
        };
        if let Some((mode, _)) = Stp::ALL.iter().find(|(_, name)| *name == raw) {
            return Ok(*mode);
        }
        if matches!(raw, "DECREMENT" | "TRANSFER") {
            return Err(ApiErr::bad(
                -1013,
                "This symbol does not allow the specified self-trade prevention mode.",
            ));
        }
        Err(ApiErr::illegal_chars(
            "selfTradePreventionMode",
            "NONE, EXPIRE_TAKER, EXPIRE_MAKER, EXPIRE_BOTH",
        ))
    }

    fn expires_taker(self) -> bool {
        matches!(self, Stp::ExpireTaker | Stp::ExpireBoth)
    }

    fn expires_maker(self) -> bool {
        matches!(self, Stp::ExpireMaker | Stp::ExpireBoth)
    }
}

impl Exchange {
    /// Taker `taker` met the account's own resting order `maker`: the taker's mode expires one or
    /// both (`EXPIRED_IN_MATCH`) under one prevented-match id. Returns whether the taker can go on.
    pub(super) fn prevent_match(&mut self, taker: u64, maker: u64, now: i64) -> bool {
        let mode = self.order(taker).map_or(Stp::None, |o| o.stp);
        let match_id = self.next_prevented_match();
        if mode.expires_maker() {
            self.finish(maker, End::Prevented { match_id }, now);
        }
        if mode.expires_taker() {
            self.finish(taker, End::Prevented { match_id }, now);
        }
        self.order(taker).is_some_and(|o| o.status.is_open())
    }
}

/// What an order ended by STP had left, the quantity the prevention expired.
pub fn prevented_qty(orig: Decimal, executed: Decimal) -> Decimal {
    (orig - executed).max(Decimal::ZERO)
}
