//! Binance's rules for order lists (OCO, OTO, OTOCO), written once: the client checks a list
//! with them before sending it, and the simulator judges the lists it receives with them. A
//! broken rule comes back as a [`ListRuleBreach`] carrying the exchange's code and message
//! (errors.md); each caller words its own refusal around it.

use std::fmt;

use rust_decimal::Decimal;

use crate::exchange::types::{OrderType, Side};

/// One order of an OCO pair, as the rules look at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairOrder {
    pub order_type: OrderType,
    pub side: Side,
    pub quantity: Option<Decimal>,
    /// The limit price (LIMIT_MAKER and the `_LIMIT` kinds).
    pub price: Option<Decimal>,
    pub stop_price: Option<Decimal>,
}

impl PairOrder {
    /// The price it stands at relative to the market: the limit price of a limit-maker or
    /// take-profit-limit, the stop price otherwise (as the exchange's price rules compare them).
    pub fn standing_price(&self) -> Option<Decimal> {
        match self.order_type {
            OrderType::LimitMaker | OrderType::TakeProfitLimit => self.price,
            _ => self.stop_price,
        }
    }
}

/// A stop-loss kind: the other order of its OCO pair is a limit-maker or a take-profit.
pub fn is_stop_loss(order_type: OrderType) -> bool {
    matches!(order_type, OrderType::StopLoss | OrderType::StopLossLimit)
}

/// The kinds an OCO pair (or an OTOCO's pending pair) may hold.
pub fn allowed_in_pair(order_type: OrderType) -> bool {
    matches!(
        order_type,
        OrderType::StopLoss
            | OrderType::StopLossLimit
            | OrderType::TakeProfit
            | OrderType::TakeProfitLimit
            | OrderType::LimitMaker
    )
}

/// The kinds the working order of an OTO or OTOCO may be.
pub fn allowed_as_working(order_type: OrderType) -> bool {
    matches!(order_type, OrderType::Limit | OrderType::LimitMaker)
}

/// Which order of a pair stands on the wrong side for the pair's side; each has its own code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misplaced {
    /// -1197.
    SellStopLossAbove,
    /// -1166.
    SellLimitBelow,
    /// -1199.
    SellTakeProfitBelow,
    /// -1196.
    BuyStopLossBelow,
    /// -1165.
    BuyLimitAbove,
    /// -1198.
    BuyTakeProfitAbove,
}

impl Misplaced {
    pub fn code(self) -> i64 {
        match self {
            Misplaced::SellStopLossAbove => -1197,
            Misplaced::SellLimitBelow => -1166,
            Misplaced::SellTakeProfitBelow => -1199,
            Misplaced::BuyStopLossBelow => -1196,
            Misplaced::BuyLimitAbove => -1165,
            Misplaced::BuyTakeProfitAbove => -1198,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Misplaced::SellStopLossAbove => "A stop loss order in a sell OCO must be below.",
            Misplaced::SellLimitBelow => "A limit order in a sell OCO must be above.",
            Misplaced::SellTakeProfitBelow => "A take profit order in a sell OCO must be above.",
            Misplaced::BuyStopLossBelow => "A stop loss order in a buy OCO must be above.",
            Misplaced::BuyLimitAbove => "A limit order in a buy OCO must be below.",
            Misplaced::BuyTakeProfitAbove => "A take profit order in a buy OCO must be below.",
        }
    }
}

/// A list rule broken. Its text is a detail for a caller's message: the pair's rules read
/// "pair holds ..." / "pair needs ...", for the caller to name the pair ("an OCO pair ...").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListRuleBreach {
    /// A kind a pair may not hold (-1158).
    NotInPair(OrderType),
    /// The two orders of a pair differ in side or quantity. The exchange reads one side and one
    /// quantity for a pair, so it has no code for this: only a client building a pair can break it.
    PairNotShared,
    /// An order on the wrong side of its pair (-1165, -1166, -1196 ... -1199).
    Misplaced(Misplaced),
    /// The prices do not stand `above > market > below` (`above > below` without a market
    /// price) (-2010).
    Prices {
        above: Decimal,
        below: Decimal,
        market: Option<Decimal>,
    },
    /// The working order of an OTO or OTOCO is not LIMIT or LIMIT_MAKER.
    Working(OrderType),
}

/// The exchange's message for a pair's prices that do not stand around the market.
pub const PRICES_MESSAGE: &str = "The relationship of the prices for the orders is not correct.";

impl ListRuleBreach {
    /// The exchange's code and message for this breach; `None` for those only a client can
    /// commit (the exchange's parameters cannot express them).
    pub fn exchange_error(&self) -> Option<(i64, &'static str)> {
        match self {
            ListRuleBreach::NotInPair(_) => Some((-1158, "Order type not supported in OCO.")),
            ListRuleBreach::Misplaced(m) => Some((m.code(), m.message())),
            ListRuleBreach::Prices { .. } => Some((-2010, PRICES_MESSAGE)),
            ListRuleBreach::PairNotShared | ListRuleBreach::Working(_) => None,
        }
    }
}

impl fmt::Display for ListRuleBreach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListRuleBreach::NotInPair(kind) => write!(
                f,
                "pair holds STOP_LOSS, STOP_LOSS_LIMIT, TAKE_PROFIT, TAKE_PROFIT_LIMIT or LIMIT_MAKER orders, not {kind}"
            ),
            ListRuleBreach::PairNotShared => f.write_str("the two orders of a pair share one side and one quantity"),
            ListRuleBreach::Misplaced(m) => f.write_str(m.message()),
            ListRuleBreach::Prices { above, below, market } => {
                let market = market.map(|m| format!(" market {m} >")).unwrap_or_default();
                write!(f, "pair needs above {above} >{market} below {below}")
            }
            ListRuleBreach::Working(kind) => write!(
                f,
                "the working order of a list must be LIMIT or LIMIT_MAKER, got {kind}"
            ),
        }
    }
}

/// Checks an OCO pair (or an OTOCO's pending pair) in the exchange's order: the kinds it may
/// hold, one side and one quantity, which kind stands above and which below for that side, then
/// `above > market > below` (`above > below` when the market price is unknown). A pair whose
/// standing prices are not both known (a trailing stop without a stop price) is left to the
/// exchange's matching.
pub fn check_pair(above: &PairOrder, below: &PairOrder, market: Option<Decimal>) -> Result<(), ListRuleBreach> {
    let (a, b) = (above.order_type, below.order_type);
    for kind in [a, b] {
        if !allowed_in_pair(kind) {
            return Err(ListRuleBreach::NotInPair(kind));
        }
    }
    if above.side != below.side || above.quantity != below.quantity {
        return Err(ListRuleBreach::PairNotShared);
    }
    let misplaced = match above.side {
        Side::Sell if is_stop_loss(a) => Some(Misplaced::SellStopLossAbove),
        Side::Sell if b == OrderType::LimitMaker => Some(Misplaced::SellLimitBelow),
        Side::Sell if !is_stop_loss(b) => Some(Misplaced::SellTakeProfitBelow),
        Side::Buy if is_stop_loss(b) => Some(Misplaced::BuyStopLossBelow),
        Side::Buy if a == OrderType::LimitMaker => Some(Misplaced::BuyLimitAbove),
        Side::Buy if !is_stop_loss(a) => Some(Misplaced::BuyTakeProfitAbove),
        _ => None,
    };
    if let Some(m) = misplaced {
        return Err(ListRuleBreach::Misplaced(m));
    }
    let (Some(hi), Some(lo)) = (above.standing_price(), below.standing_price()) else {
        return Ok(());
    };
    let ordered = match market {
        Some(market) => hi > market && market > lo,
        None => hi > lo,
    };
    if ordered {
        Ok(())
    } else {
        Err(ListRuleBreach::Prices {
            above: hi,
            below: lo,
            market,
        })
    }
}

/// Checks the working order of an OTO or OTOCO: a LIMIT or LIMIT_MAKER.
pub fn check_working(order_type: OrderType) -> Result<(), ListRuleBreach> {
    if allowed_as_working(order_type) {
        Ok(())
    } else {
        Err(ListRuleBreach::Working(order_type))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: i64) -> Decimal {
        Decimal::from(n)
    }

    fn order(order_type: OrderType, side: Side, price: Option<i64>, stop: Option<i64>) -> PairOrder {
        PairOrder {
            order_type,
            side,
            quantity: Some(d(1)),
            price: price.map(d),
            stop_price: stop.map(d),
        }
    }

    fn limit_maker(side: Side, price: i64) -> PairOrder {
        order(OrderType::LimitMaker, side, Some(price), None)
    }

    fn stop_limit(side: Side, stop: i64, price: i64) -> PairOrder {
        order(OrderType::StopLossLimit, side, Some(price), Some(stop))
    }

    fn stop(side: Side, stop: i64) -> PairOrder {
        order(OrderType::StopLoss, side, None, Some(stop))
    }

    fn take_profit(side: Side, stop: i64) -> PairOrder {
        order(OrderType::TakeProfit, side, None, Some(stop))
    }

    fn take_profit_limit(side: Side, stop: i64, price: i64) -> PairOrder {
        order(OrderType::TakeProfitLimit, side, Some(price), Some(stop))
    }

    fn code(result: Result<(), ListRuleBreach>) -> Option<i64> {
        result.unwrap_err().exchange_error().map(|(code, _)| code)
    }

    #[test]
    fn valid_pairs_of_each_side_pass() {
        use Side::{Buy, Sell};
        let market = Some(d(100));
        // Sell: the limit-maker or take-profit above, the stop-loss below.
        assert_eq!(
            check_pair(&limit_maker(Sell, 110), &stop_limit(Sell, 90, 89), market),
            Ok(())
        );
        assert_eq!(check_pair(&take_profit(Sell, 110), &stop(Sell, 90), market), Ok(()));
        assert_eq!(
            check_pair(&take_profit_limit(Sell, 110, 111), &stop(Sell, 90), market),
            Ok(())
        );
        // Buy: the stop-loss above, the limit-maker or take-profit below.
        assert_eq!(
            check_pair(&stop_limit(Buy, 110, 111), &limit_maker(Buy, 90), market),
            Ok(())
        );
        assert_eq!(check_pair(&stop(Buy, 110), &take_profit(Buy, 90), market), Ok(()));
        // No market price: above > below is enough.
        assert_eq!(check_pair(&limit_maker(Sell, 110), &stop(Sell, 90), None), Ok(()));
    }

    #[test]
    fn a_kind_a_pair_cannot_hold_is_1158() {
        for kind in [OrderType::Limit, OrderType::Market] {
            let bad = order(kind, Side::Sell, Some(110), None);
            let result = check_pair(&bad, &stop(Side::Sell, 90), None);
            assert_eq!(result, Err(ListRuleBreach::NotInPair(kind)));
            assert_eq!(code(result), Some(-1158));
            let result = check_pair(&limit_maker(Side::Sell, 110), &bad, None);
            assert_eq!(code(result), Some(-1158));
        }
    }

    #[test]
    fn a_pair_shares_one_side_and_one_quantity() {
        let result = check_pair(&limit_maker(Side::Sell, 110), &stop(Side::Buy, 90), None);
        assert_eq!(result, Err(ListRuleBreach::PairNotShared));
        assert_eq!(
            result.unwrap_err().exchange_error(),
            None,
            "the exchange has no code for it"
        );
        let mut more = stop(Side::Sell, 90);
        more.quantity = Some(d(2));
        assert_eq!(
            check_pair(&limit_maker(Side::Sell, 110), &more, None),
            Err(ListRuleBreach::PairNotShared)
        );
        // The kinds are judged first.
        let limit = order(OrderType::Limit, Side::Sell, Some(110), None);
        assert_eq!(code(check_pair(&limit, &stop(Side::Buy, 90), None)), Some(-1158));
    }

    #[test]
    fn each_misplaced_order_has_its_own_code() {
        use Side::{Buy, Sell};
        let cases = [
            (
                stop(Sell, 110),
                limit_maker(Sell, 90),
                -1197,
                "A stop loss order in a sell OCO must be below.",
            ),
            (
                take_profit(Sell, 110),
                limit_maker(Sell, 90),
                -1166,
                "A limit order in a sell OCO must be above.",
            ),
            (
                limit_maker(Sell, 110),
                take_profit(Sell, 90),
                -1199,
                "A take profit order in a sell OCO must be above.",
            ),
            (
                take_profit(Buy, 110),
                stop(Buy, 90),
                -1196,
                "A stop loss order in a buy OCO must be above.",
            ),
            (
                limit_maker(Buy, 110),
                take_profit(Buy, 90),
                -1165,
                "A limit order in a buy OCO must be below.",
            ),
            (
                take_profit(Buy, 110),
                limit_maker(Buy, 90),
                -1198,
                "A take profit order in a buy OCO must be below.",
            ),
        ];
        for (above, below, want_code, want_message) in cases {
            let breach = check_pair(&above, &below, None).unwrap_err();
            assert!(matches!(breach, ListRuleBreach::Misplaced(_)), "{breach:?}");
            assert_eq!(breach.exchange_error(), Some((want_code, want_message)));
        }
    }

    #[test]
    fn prices_must_stand_around_the_market_2010() {
        let (above, below) = (limit_maker(Side::Sell, 110), stop_limit(Side::Sell, 90, 89));
        for market in [90, 110, 120, 50] {
            let result = check_pair(&above, &below, Some(d(market)));
            assert_eq!(
                result,
                Err(ListRuleBreach::Prices {
                    above: d(110),
                    below: d(90),
                    market: Some(d(market)),
                })
            );
            assert_eq!(result.unwrap_err().exchange_error(), Some((-2010, PRICES_MESSAGE)));
        }
        // Without a market price, the two prices must still be in order.
        let low = limit_maker(Side::Sell, 80);
        assert_eq!(code(check_pair(&low, &below, None)), Some(-2010));
        // The limit-maker's price and the stop-loss-limit's stop price are what stand.
        assert_eq!(
            check_pair(
                &limit_maker(Side::Sell, 95),
                &stop_limit(Side::Sell, 94, 200),
                Some(d(94))
            ),
            Err(ListRuleBreach::Prices {
                above: d(95),
                below: d(94),
                market: Some(d(94)),
            })
        );
        let text = check_pair(&above, &below, Some(d(120))).unwrap_err().to_string();
        assert_eq!(text, "pair needs above 110 > market 120 > below 90");
    }

    #[test]
    fn a_pair_without_both_standing_prices_is_left_to_the_exchange() {
        let trailing = order(OrderType::StopLoss, Side::Sell, None, None);
        assert_eq!(
            check_pair(&limit_maker(Side::Sell, 110), &trailing, Some(d(200))),
            Ok(())
        );
    }

    #[test]
    fn the_working_order_is_limit_or_limit_maker() {
        assert_eq!(check_working(OrderType::Limit), Ok(()));
        assert_eq!(check_working(OrderType::LimitMaker), Ok(()));
        for kind in [
            OrderType::Market,
            OrderType::StopLoss,
            OrderType::StopLossLimit,
            OrderType::TakeProfit,
            OrderType::TakeProfitLimit,
        ] {
            let breach = check_working(kind).unwrap_err();
            assert_eq!(breach, ListRuleBreach::Working(kind));
            assert_eq!(breach.exchange_error(), None);
            assert!(breach.to_string().contains("LIMIT or LIMIT_MAKER"), "{breach}");
        }
    }
}
