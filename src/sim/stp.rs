//! Self-trade prevention: what happens when a taker order would trade with one of the account's
//! own resting orders (the simulator has one account, so every user-against-user match is a
//! self-trade). The taker order's mode decides, as documented; every prevention is recorded as a
//! prevented match (`myPreventedMatches`).

use rust_decimal::Decimal;

use super::error::ApiErr;
use super::matching::{End, Exchange};
use super::order_record::Prevented;
use super::params::Params;
use crate::exchange::types::Side;

/// The STP modes the matching engine applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stp {
    /// The orders trade.
    #[default]
    None,
    ExpireTaker,
    ExpireMaker,
    ExpireBoth,
    /// Both orders lose the smaller one's quantity; whichever has nothing left expires.
    Decrement,
}

impl Stp {
    const ALL: [(Stp, &'static str); 5] = [
        (Stp::None, "NONE"),
        (Stp::ExpireTaker, "EXPIRE_TAKER"),
        (Stp::ExpireMaker, "EXPIRE_MAKER"),
        (Stp::ExpireBoth, "EXPIRE_BOTH"),
        (Stp::Decrement, "DECREMENT"),
    ];

    /// Every symbol's `allowedSelfTradePreventionModes`.
    pub const NAMES: [&'static str; 5] = ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "DECREMENT"];

    pub fn as_str(self) -> &'static str {
        Stp::ALL
            .iter()
            .find(|(mode, _)| *mode == self)
            .map_or("NONE", |(_, name)| name)
    }

    /// `selfTradePreventionMode`: a documented mode the symbols do not allow (TRANSFER, which
    /// needs trade groups of several accounts) is refused as the exchange refuses it, anything
    /// else as an illegal value.
    pub fn from_params(p: &Params) -> Result<Stp, ApiErr> {
        let Some(raw) = p.get("selfTradePreventionMode") else {
            return Ok(Stp::None);
        };
        if let Some((mode, _)) = Stp::ALL.iter().find(|(_, name)| *name == raw) {
            return Ok(*mode);
        }
        if raw == "TRANSFER" {
            return Err(ApiErr::bad(
                -1013,
                "This symbol does not allow the specified self-trade prevention mode.",
            ));
        }
        Err(ApiErr::illegal_chars(
            "selfTradePreventionMode",
            "NONE, EXPIRE_TAKER, EXPIRE_MAKER, EXPIRE_BOTH, DECREMENT",
        ))
    }

    fn expires_taker(self) -> bool {
        matches!(self, Stp::ExpireTaker | Stp::ExpireBoth)
    }

    fn expires_maker(self) -> bool {
        matches!(self, Stp::ExpireMaker | Stp::ExpireBoth)
    }
}

/// One prevented match, as `myPreventedMatches` answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct PreventedMatch {
    pub id: u64,
    pub symbol: usize,
    pub taker_order_id: u64,
    pub maker_order_id: u64,
    pub mode: Stp,
    pub price: Decimal,
    /// What the prevention took from the taker (absent when it took nothing from it).
    pub taker_qty: Option<Decimal>,
    pub maker_qty: Option<Decimal>,
    pub time: i64,
}

impl Exchange {
    /// Taker `taker` met the account's own resting order `maker` at `price`: the taker's mode
    /// expires one or both (`EXPIRED_IN_MATCH`), or (DECREMENT) takes the smaller remaining
    /// quantity from both, under one prevented-match id.
    pub(super) fn prevent_match(&mut self, taker: u64, maker: u64, price: Decimal, now: i64) {
        let mode = self.order(taker).map_or(Stp::None, |o| o.stp);
        let remaining = |ex: &Exchange, id: u64| ex.order(id).map_or(Decimal::ZERO, |o| o.remaining());
        let (taker_left, maker_left) = (remaining(self, taker), self.maker_shown(maker));
        let id = self.next_prevented_match();
        let cut = taker_left.min(maker_left);
        let (taker_qty, maker_qty) = if mode == Stp::Decrement && !cut.is_zero() {
            self.decrement(maker, cut, id, now);
            self.decrement(taker, cut, id, now);
            (Some(cut), Some(cut))
        } else {
            // (A DECREMENT with nothing to take, which the book should never show, expires the
            // maker so the taker can go on.)
            let maker_qty = (mode.expires_maker() || mode == Stp::Decrement).then(|| remaining(self, maker));
            let taker_qty = mode.expires_taker().then_some(taker_left);
            if maker_qty.is_some() {
                self.finish(maker, End::Prevented { match_id: id }, now);
            }
            if taker_qty.is_some() {
                self.finish(taker, End::Prevented { match_id: id }, now);
            }
            (taker_qty, maker_qty)
        };
        let symbol = self.order(taker).map_or(0, |o| o.symbol);
        self.prevented.push(PreventedMatch {
            id,
            symbol,
            taker_order_id: taker,
            maker_order_id: maker,
            mode,
            price,
            taker_qty,
            maker_qty,
            time: now,
        });
    }

    /// What the resting order shows on the book (an iceberg's visible part), the most one
    /// prevented match can take from it.
    fn maker_shown(&self, id: u64) -> Decimal {
        self.order(id).map_or(Decimal::ZERO, |o| {
            if o.iceberg_qty.is_zero() {
                o.remaining()
            } else {
                o.visible.min(o.remaining())
            }
        })
    }

    /// DECREMENT: `cut` of the order's quantity is prevented (and its reservation freed); with
    /// nothing left it expires in match, otherwise it goes on with less (a resting one keeps its
    /// place in the queue).
    fn decrement(&mut self, id: u64, cut: Decimal, match_id: u64, now: i64) {
        let Some(o) = self.orders_mut(id) else { return };
        let before = o.prevented.map_or(Decimal::ZERO, |p| p.qty);
        o.prevented = Some(Prevented {
            match_id,
            qty: before + cut,
            last_qty: cut,
            expired: false,
        });
        o.update_time = now;
        if o.remaining().is_zero() {
            self.finish(id, End::Prevented { match_id }, now);
            return;
        }
        // A buy reserved its limit price for the cut quantity (a market buy keeps its
        // reservation until it ends); a sell reserved the quantity itself.
        let freed = match o.side {
            Side::Buy if o.price > Decimal::ZERO => (o.price * cut).min(o.locked),
            Side::Buy => Decimal::ZERO,
            Side::Sell => cut.min(o.locked),
        };
        o.locked -= freed;
        let (account, symbol, side, price, on_book) = (o.account, o.symbol, o.side, o.price, o.on_book);
        if on_book {
            let shown = (o.visible - cut).max(Decimal::ZERO);
            o.visible = shown;
            let iceberg = !o.iceberg_qty.is_zero();
            self.markets[symbol].book.resize_user(side, price, id, shown);
            if shown.is_zero() && iceberg {
                self.refill_iceberg(id);
            }
            self.touch_top(symbol);
        }
        self.release(account, symbol, side, freed);
        self.report(id, super::user_reports::Exec::TradePrevention, now);
    }

    /// Prevented matches of `symbol`, oldest first.
    pub fn prevented_matches(&self, symbol: usize) -> impl Iterator<Item = &PreventedMatch> {
        self.prevented.iter().filter(move |m| m.symbol == symbol)
    }
}
