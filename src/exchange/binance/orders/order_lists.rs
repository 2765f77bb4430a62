//! Order lists (OCO, OTO, OTOCO) from a strategy's request to the wire: each order put on the grid
//! like any order, the list's own rules checked as the exchange documents them (refused with the
//! exchange's code and message, nothing sent), and the parameters each order goes under.

use rust_decimal::Decimal;

use crate::exchange::types::{
    ApiError, ClientOrderId, ErrorCode, ListLegs, ListRequest, ListType, OrderKind, OrderRequest, SelfTradePrevention,
};

use super::list_rules::{self, ListRuleBreach, PairOrder};
use super::order_wire::order_params;
use super::symbols::ValidOrder;

/// A list that passed every local check: each order exactly on the grid, the list's rules met.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidList {
    symbol: String,
    client_id: Option<ClientOrderId>,
    orders: ListLegs<ValidOrder>,
    client_ids: ListLegs<Option<ClientOrderId>>,
    stp: Option<SelfTradePrevention>,
}

impl ValidList {
    pub fn symbol(&self) -> &str {
        &self.symbol
    }

    /// The list's client id, when the strategy gave one.
    pub fn client_id(&self) -> Option<&ClientOrderId> {
        self.client_id.as_ref()
    }

    pub fn orders(&self) -> &ListLegs<ValidOrder> {
        &self.orders
    }

    /// Each order's client id, when the strategy gave one.
    pub fn client_ids(&self) -> &ListLegs<Option<ClientOrderId>> {
        &self.client_ids
    }

    /// How many orders the list holds (each counts as an open order).
    pub fn len(&self) -> usize {
        self.orders.named().len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The value that can fill, from each order's value (`None` when one cannot be valued): an OCO
    /// pair trades one order at most (the larger), an OTO both, an OTOCO its working order and the
    /// larger of its pair.
    pub fn notional(&self, value: impl Fn(&ValidOrder) -> Option<Decimal>) -> Option<Decimal> {
        Some(match &self.orders {
            ListLegs::Oco { above, below } => value(above)?.max(value(below)?),
            ListLegs::Oto { working, pending } => value(working)? + value(pending)?,
            ListLegs::Otoco {
                working,
                pending_above,
                pending_below,
            } => value(working)? + value(pending_above)?.max(value(pending_below)?),
        })
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidOrder, message)
}

/// A refusal the exchange documents, with its own code and message; here nothing was sent.
fn exchange_refusal(code: i64, message: &str, detail: &str) -> ApiError {
    invalid(format!("{message} ({detail}; nothing was sent)")).with_exchange_code(code)
}

/// Checks `request`: every order on the list's symbol, each put on the grid by `validate` (with the
/// list's self-trade prevention mode), then the list's rules. `reference` is the market price the
/// OCO pair must stand around, when known.
pub fn validate_list(
    request: &ListRequest,
    reference: Option<Decimal>,
    validate: impl Fn(&OrderRequest) -> Result<ValidOrder, ApiError>,
) -> Result<ValidList, ApiError> {
    let mut seen: Vec<&ClientOrderId> = Vec::new();
    for (name, order) in request.legs.named() {
        if order.symbol != request.symbol {
            return Err(invalid(format!(
                "every order of a list is on the list's symbol {}; {name} is on {}",
                request.symbol, order.symbol
            )));
        }
        if let OrderKind::Market {
            amount: crate::exchange::types::MarketAmount::Quote(_),
        } = order.kind
        {
            return Err(invalid(format!(
                "{name}: a MARKET order by quote_quantity cannot be in a list (give quantity)"
            )));
        }
        if let Some(id) = &order.client_id {
            if seen.contains(&id) || request.client_id.as_ref() == Some(id) {
                return Err(invalid(format!(
                    "client_id {:?} is given twice in the list",
                    id.as_str()
                )));
            }
            seen.push(id);
        }
    }
    let orders = request.legs.try_map(|name, order| {
        let mut order = order.clone();
        order.stp = request.stp;
        validate(&order).map_err(|mut e| {
            e.message = format!("{name}: {}", e.message);
            e
        })
    })?;
    check_rules(&orders, reference)?;
    Ok(ValidList {
        symbol: request.symbol.clone(),
        client_id: request.client_id.clone(),
        client_ids: request.legs.try_map(|_, o| Ok::<_, ApiError>(o.client_id.clone()))?,
        orders,
        stp: request.stp,
    })
}

/// The list's documented rules ([`list_rules`]): an OCO pair's kinds, sides, shared side and
/// quantity and prices; an OTO's working order a LIMIT or LIMIT_MAKER.
fn check_rules(orders: &ListLegs<ValidOrder>, reference: Option<Decimal>) -> Result<(), ApiError> {
    match orders {
        ListLegs::Oco { above, below } => check_pair("OCO", above, below, reference),
        ListLegs::Oto { working, .. } => check_working(working),
        ListLegs::Otoco {
            working,
            pending_above,
            pending_below,
        } => {
            check_working(working)?;
            check_pair("OTOCO's pending", pending_above, pending_below, reference)
        }
    }
}

fn check_working(working: &ValidOrder) -> Result<(), ApiError> {
    list_rules::check_working(working.kind().order_type()).map_err(|breach| invalid(breach.to_string()))
}

/// An order of a pair as the rules see it.
fn pair_order(order: &ValidOrder) -> PairOrder {
    let fields = order.kind().fields();
    PairOrder {
        order_type: order.kind().order_type(),
        side: order.side(),
        quantity: fields.quantity,
        price: fields.price,
        stop_price: fields.stop_price,
    }
}

/// Binance's OCO rules, each refused with its own code and a detail naming the pair `what`.
fn check_pair(what: &str, above: &ValidOrder, below: &ValidOrder, reference: Option<Decimal>) -> Result<(), ApiError> {
    let breach = match list_rules::check_pair(&pair_order(above), &pair_order(below), reference) {
        Ok(()) => return Ok(()),
        Err(breach) => breach,
    };
    let detail = match breach {
        ListRuleBreach::PairNotShared => {
            return Err(invalid(format!(
                "the two orders of an {what} pair share one side and one quantity (above: {} {:?}, below: {} {:?})",
                above.side(),
                above.kind().quantity(),
                below.side(),
                below.kind().quantity()
            )))
        }
        ListRuleBreach::Misplaced(_) => format!(
            "above {}, below {}",
            above.kind().order_type(),
            below.kind().order_type()
        ),
        ListRuleBreach::NotInPair(_) | ListRuleBreach::Prices { .. } => format!("an {what} {breach}"),
        ListRuleBreach::Working(_) => breach.to_string(),
    };
    match breach.exchange_error() {
        Some((code, message)) => Err(exchange_refusal(code, message, &detail)),
        None => Err(invalid(detail)),
    }
}

/// The exchange's parameter of order field `name` under `prefix` (`abovePrice`, `workingClientOrderId`...).
macro_rules! prefixed {
    ($prefix:literal, $name:expr) => {
        match $name {
            "type" => concat!($prefix, "Type"),
            "timeInForce" => concat!($prefix, "TimeInForce"),
            "price" => concat!($prefix, "Price"),
            "stopPrice" => concat!($prefix, "StopPrice"),
            "trailingDelta" => concat!($prefix, "TrailingDelta"),
            "newClientOrderId" => concat!($prefix, "ClientOrderId"),
            "side" => concat!($prefix, "Side"),
            "quantity" => concat!($prefix, "Quantity"),
            _ => return None,
        }
    };
}

/// The parameter an order's field goes under in its place of a list; `None` for a field the list
/// gives once for all (symbol, self-trade prevention) or that the place shares with another.
fn leg_param(list: ListType, place: &str, name: &str) -> Option<&'static str> {
    // An OCO pair's side and quantity are the list's own; an OTOCO pair's are `pending...`, given once.
    let shared = matches!(name, "side" | "quantity");
    Some(match (list, place) {
        (_, _) if matches!(name, "symbol" | "selfTradePreventionMode") => return None,
        (ListType::Oco, "above") if shared => return Some(if name == "side" { "side" } else { "quantity" }),
        (ListType::Oco, "below") if shared => return None,
        (ListType::Otoco, "pending_above") if shared => prefixed!("pending", name),
        (ListType::Otoco, "pending_below") if shared => return None,
        (_, "above") => prefixed!("above", name),
        (_, "below") => prefixed!("below", name),
        (_, "working") => prefixed!("working", name),
        (_, "pending") => prefixed!("pending", name),
        (_, "pending_above") => prefixed!("pendingAbove", name),
        (_, "pending_below") => prefixed!("pendingBelow", name),
        _ => return None,
    })
}

/// The parameters of `POST /api/v3/orderList/{oco,oto,otoco}` (and the WebSocket API's
/// `orderList.place.*`), without the signature's: the list's own, then each order's under its place.
pub fn list_params(
    list: &ValidList,
    list_client_id: &ClientOrderId,
    client_ids: &ListLegs<ClientOrderId>,
) -> Vec<(&'static str, String)> {
    let kind = list.orders.list_type();
    let mut params = vec![
        ("symbol", list.symbol.clone()),
        ("listClientOrderId", list_client_id.to_string()),
    ];
    params.extend(
        list.stp
            .map(|stp| ("selfTradePreventionMode", stp.as_str().to_string())),
    );
    let ids = client_ids.named();
    for ((place, order), (_, client_id)) in list.orders.named().into_iter().zip(ids) {
        for (name, value) in order_params(order, client_id) {
            if let Some(param) = leg_param(kind, place, name) {
                params.push((param, value));
            }
        }
    }
    params.push(("newOrderRespType", "FULL".to_string()));
    params
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::binance::orders::symbols::{grid_only_btcusdt, validate};
    use crate::exchange::types::{Side, StopTrigger, TimeInForce};

    fn order(side: Side, kind: OrderKind<f64>) -> OrderRequest {
        OrderRequest::new("BTCUSDT", side, kind)
    }

    fn limit_maker(side: Side, price: f64) -> OrderRequest {
        order(side, OrderKind::LimitMaker { price, quantity: 1.0 })
    }

    fn stop_limit(side: Side, stop: f64, price: f64) -> OrderRequest {
        order(
            side,
            OrderKind::StopLossLimit {
                price,
                quantity: 1.0,
                tif: TimeInForce::Gtc,
                trigger: StopTrigger {
                    stop_price: Some(stop),
                    trailing_delta: None,
                },
            },
        )
    }

    fn list(legs: ListLegs<OrderRequest>) -> ListRequest {
        ListRequest {
            symbol: "BTCUSDT".into(),
            legs,
            client_id: None,
            stp: None,
        }
    }

    fn check(request: &ListRequest, market: Option<i64>) -> Result<ValidList, ApiError> {
        let info = grid_only_btcusdt();
        validate_list(request, market.map(Decimal::from), |o| validate(&info, o, None))
    }

    #[test]
    fn an_oco_pair_follows_the_documented_rules_with_the_exchanges_codes() {
        let good = list(ListLegs::Oco {
            above: limit_maker(Side::Sell, 110.0),
            below: stop_limit(Side::Sell, 90.0, 89.0),
        });
        let valid = check(&good, Some(100)).unwrap();
        assert_eq!(valid.len(), 2);

        // Prices on the wrong sides of the market.
        let error = check(&good, Some(120)).unwrap_err();
        assert_eq!(error.exchange_code, Some(-2010), "{error}");
        assert!(error
            .message
            .starts_with("The relationship of the prices for the orders is not correct."));

        let swapped = list(ListLegs::Oco {
            above: stop_limit(Side::Sell, 110.0, 109.0),
            below: limit_maker(Side::Sell, 90.0),
        });
        assert_eq!(check(&swapped, None).unwrap_err().exchange_code, Some(-1197));

        let buy_limit_above = list(ListLegs::Oco {
            above: limit_maker(Side::Buy, 110.0),
            below: limit_maker(Side::Buy, 90.0),
        });
        assert_eq!(check(&buy_limit_above, None).unwrap_err().exchange_code, Some(-1165));

        let plain_limit = list(ListLegs::Oco {
            above: order(
                Side::Sell,
                OrderKind::Limit {
                    price: 110.0,
                    quantity: 1.0,
                    tif: TimeInForce::Gtc,
                },
            ),
            below: stop_limit(Side::Sell, 90.0, 89.0),
        });
        assert_eq!(check(&plain_limit, None).unwrap_err().exchange_code, Some(-1158));
    }

    #[test]
    fn orders_of_another_symbol_or_a_market_working_order_are_refused() {
        let mut other = limit_maker(Side::Sell, 110.0);
        other.symbol = "ETHUSDT".into();
        let request = list(ListLegs::Oco {
            above: other,
            below: stop_limit(Side::Sell, 90.0, 89.0),
        });
        assert!(check(&request, None).unwrap_err().message.contains("ETHUSDT"));

        let market = list(ListLegs::Oto {
            working: order(
                Side::Buy,
                OrderKind::Market {
                    amount: crate::exchange::types::MarketAmount::Base(1.0),
                },
            ),
            pending: limit_maker(Side::Sell, 110.0),
        });
        let error = check(&market, None).unwrap_err();
        assert!(error.message.contains("LIMIT or LIMIT_MAKER"), "{error}");
    }

    #[test]
    fn the_notional_is_what_can_fill() {
        let buy = |price| {
            order(
                Side::Buy,
                OrderKind::Limit {
                    price,
                    quantity: 1.0,
                    tif: TimeInForce::Gtc,
                },
            )
        };
        let otoco = list(ListLegs::Otoco {
            working: buy(100.0),
            pending_above: limit_maker(Side::Sell, 120.0),
            pending_below: stop_limit(Side::Sell, 90.0, 89.0),
        });
        let valid = check(&otoco, None).unwrap();
        assert_eq!(valid.notional(ValidOrder::notional), Some(Decimal::from(220)));
        let oco = list(ListLegs::Oco {
            above: limit_maker(Side::Sell, 120.0),
            below: stop_limit(Side::Sell, 90.0, 89.0),
        });
        assert_eq!(
            check(&oco, None).unwrap().notional(ValidOrder::notional),
            Some(Decimal::from(120))
        );
    }

    #[test]
    fn each_order_goes_under_its_place() {
        let otoco = list(ListLegs::Otoco {
            working: limit_maker(Side::Buy, 100.0),
            pending_above: limit_maker(Side::Sell, 120.0),
            pending_below: stop_limit(Side::Sell, 90.0, 89.0),
        });
        let valid = check(&otoco, None).unwrap();
        let id = |s: &str| ClientOrderId::new(s).unwrap();
        let ids = ListLegs::Otoco {
            working: id("w"),
            pending_above: id("a"),
            pending_below: id("b"),
        };
        let params = list_params(&valid, &id("list"), &ids);
        let get = |name: &str| params.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("listClientOrderId"), Some("list"));
        assert_eq!(get("workingType"), Some("LIMIT_MAKER"));
        assert_eq!(get("workingSide"), Some("BUY"));
        assert_eq!(get("workingClientOrderId"), Some("w"));
        assert_eq!(get("pendingSide"), Some("SELL"));
        assert_eq!(get("pendingQuantity"), Some("1"));
        assert_eq!(get("pendingAboveClientOrderId"), Some("a"));
        assert_eq!(get("pendingBelowStopPrice"), Some("90"));
        assert_eq!(get("pendingBelowTimeInForce"), Some("GTC"));
        assert_eq!(get("side"), None);
        assert_eq!(params.iter().filter(|(n, _)| *n == "pendingSide").count(), 1);
    }
}
