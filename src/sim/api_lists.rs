//! The order-list endpoints (`orderList/oco|oto|otoco`, `DELETE orderList`, `orderList`,
//! `openOrderList`, `allOrderList` and their WebSocket API methods): parameters read per order
//! under their prefixes, answers in the documented shapes.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::api::{cancel_client_id, cancel_wire, new_order, placed_answer, symbol_of, valid_client_id};
use super::error::ApiErr;
use super::matching::{Exchange, Placed};
use super::order_lists::{Legs, NewList, OrderList, Pair};
use super::order_record::{Kind, NewOrder};
use super::params::Params;
use super::run_state::Sim;
use super::stp::Stp;
use crate::exchange::binance::orders::list_rules;
use crate::exchange::types::OrderType;

/// The parameters of each list placement: the list's own, then each order's under its prefix.
pub const OCO_PARAMS: &[&str] = &[
    "symbol",
    "listClientOrderId",
    "newOrderRespType",
    "selfTradePreventionMode",
    "side",
    "quantity",
    "aboveType",
    "aboveClientOrderId",
    "aboveIcebergQty",
    "abovePrice",
    "aboveStopPrice",
    "aboveTrailingDelta",
    "aboveTimeInForce",
    "aboveStrategyId",
    "aboveStrategyType",
    "abovePegPriceType",
    "abovePegOffsetType",
    "abovePegOffsetValue",
    "belowType",
    "belowClientOrderId",
    "belowIcebergQty",
    "belowPrice",
    "belowStopPrice",
    "belowTrailingDelta",
    "belowTimeInForce",
    "belowStrategyId",
    "belowStrategyType",
    "belowPegPriceType",
    "belowPegOffsetType",
    "belowPegOffsetValue",
];
pub const OTO_PARAMS: &[&str] = &[
    "symbol",
    "listClientOrderId",
    "newOrderRespType",
    "selfTradePreventionMode",
    "workingSide",
    "workingQuantity",
    "pendingSide",
    "pendingQuantity",
    "workingType",
    "workingClientOrderId",
    "workingIcebergQty",
    "workingPrice",
    "workingStopPrice",
    "workingTrailingDelta",
    "workingTimeInForce",
    "workingStrategyId",
    "workingStrategyType",
    "workingPegPriceType",
    "workingPegOffsetType",
    "workingPegOffsetValue",
    "pendingType",
    "pendingClientOrderId",
    "pendingIcebergQty",
    "pendingPrice",
    "pendingStopPrice",
    "pendingTrailingDelta",
    "pendingTimeInForce",
    "pendingStrategyId",
    "pendingStrategyType",
    "pendingPegPriceType",
    "pendingPegOffsetType",
    "pendingPegOffsetValue",
];
pub const OTOCO_PARAMS: &[&str] = &[
    "symbol",
    "listClientOrderId",
    "newOrderRespType",
    "selfTradePreventionMode",
    "workingSide",
    "workingQuantity",
    "pendingSide",
    "pendingQuantity",
    "workingType",
    "workingClientOrderId",
    "workingIcebergQty",
    "workingPrice",
    "workingStopPrice",
    "workingTrailingDelta",
    "workingTimeInForce",
    "workingStrategyId",
    "workingStrategyType",
    "workingPegPriceType",
    "workingPegOffsetType",
    "workingPegOffsetValue",
    "pendingAboveType",
    "pendingAboveClientOrderId",
    "pendingAboveIcebergQty",
    "pendingAbovePrice",
    "pendingAboveStopPrice",
    "pendingAboveTrailingDelta",
    "pendingAboveTimeInForce",
    "pendingAboveStrategyId",
    "pendingAboveStrategyType",
    "pendingAbovePegPriceType",
    "pendingAbovePegOffsetType",
    "pendingAbovePegOffsetValue",
    "pendingBelowType",
    "pendingBelowClientOrderId",
    "pendingBelowIcebergQty",
    "pendingBelowPrice",
    "pendingBelowStopPrice",
    "pendingBelowTrailingDelta",
    "pendingBelowTimeInForce",
    "pendingBelowStrategyId",
    "pendingBelowStrategyType",
    "pendingBelowPegPriceType",
    "pendingBelowPegOffsetType",
    "pendingBelowPegOffsetValue",
];

/// Where one order of a list reads its side and quantity.
struct LegNames<'a> {
    prefix: &'a str,
    side: &'a str,
    quantity: &'a str,
}

/// One order of a list, read as a plain order (`aboveType` as `type`, `abovePrice` as `price` ...);
/// errors name the parameter that was sent.
fn leg(ex: &Exchange, p: &Params, names: &LegNames) -> Result<NewOrder, ApiErr> {
    let prefix = names.prefix;
    for unsupported in ["TrailingDelta", "PegPriceType", "PegOffsetType", "PegOffsetValue"] {
        if p.get(&format!("{prefix}{unsupported}")).is_some() {
            let what = if unsupported == "TrailingDelta" {
                "Trailing stop orders are not supported for this symbol."
            } else {
                "Pegged orders are not supported for this symbol."
            };
            return Err(ApiErr::rejected(what));
        }
    }
    let renames: Vec<(String, String)> = [
        ("side", names.side.to_string()),
        ("quantity", names.quantity.to_string()),
        ("type", format!("{prefix}Type")),
        ("price", format!("{prefix}Price")),
        ("stopPrice", format!("{prefix}StopPrice")),
        ("timeInForce", format!("{prefix}TimeInForce")),
        ("icebergQty", format!("{prefix}IcebergQty")),
        ("newClientOrderId", format!("{prefix}ClientOrderId")),
    ]
    .into_iter()
    .map(|(plain, sent)| (plain.to_string(), sent))
    .collect();
    let mut pairs: Vec<(String, String)> = renames
        .iter()
        .filter_map(|(plain, sent)| p.get(sent).map(|v| (plain.clone(), v.to_string())))
        .collect();
    for shared in ["symbol", "newOrderRespType", "selfTradePreventionMode"] {
        if let Some(v) = p.get(shared) {
            pairs.push((shared.to_string(), v.to_string()));
        }
    }
    let plain = Params::from_pairs(pairs).for_account(p.account());
    new_order(ex, &plain).map(|(req, _)| req).map_err(|mut e| {
        for (plain, sent) in &renames {
            e.msg = e.msg.replace(&format!("'{plain}'"), &format!("'{sent}'"));
        }
        e
    })
}

fn list_client_id(p: &Params) -> Result<Option<String>, ApiErr> {
    match p.get("listClientOrderId") {
        None => Ok(None),
        Some(c) if valid_client_id(c) => Ok(Some(c.to_string())),
        Some(_) => Err(ApiErr::illegal_chars(
            "listClientOrderId",
            "^[\\.A-Z\\:/a-z0-9_-]{1,36}$",
        )),
    }
}

fn resp_type(p: &Params) -> Result<&str, ApiErr> {
    match p.get("newOrderRespType") {
        None => Ok("FULL"),
        Some(r @ ("ACK" | "RESULT" | "FULL")) => Ok(r),
        Some(_) => Err(ApiErr::illegal_chars("newOrderRespType", "ACK, RESULT, FULL")),
    }
}

/// The working order of an OTO / OTOCO: a LIMIT or LIMIT_MAKER.
fn working_leg(ex: &Exchange, p: &Params) -> Result<NewOrder, ApiErr> {
    let working_type = Kind::parse(p.require("workingType")?).map(OrderType::from);
    if !working_type.is_some_and(list_rules::allowed_as_working) {
        return Err(ApiErr::illegal_chars("workingType", "LIMIT, LIMIT_MAKER"));
    }
    p.require("workingPrice")?;
    let names = LegNames {
        prefix: "working",
        side: "workingSide",
        quantity: "workingQuantity",
    };
    leg(ex, p, &names)
}

fn pending_pair(
    ex: &Exchange,
    p: &Params,
    above: &str,
    below: &str,
    side: &str,
    quantity: &str,
) -> Result<Pair, ApiErr> {
    Ok(Pair {
        above: leg(
            ex,
            p,
            &LegNames {
                prefix: above,
                side,
                quantity,
            },
        )?,
        below: leg(
            ex,
            p,
            &LegNames {
                prefix: below,
                side,
                quantity,
            },
        )?,
    })
}

/// `POST /api/v3/orderList/oco`.
pub fn place_oco(sim: &Sim, p: &Params, now: i64) -> Result<Value, ApiErr> {
    let mut world = sim.world.lock();
    let ex = &world.ex;
    let symbol = symbol_of(ex, p)?;
    p.require("aboveType")?;
    p.require("belowType")?;
    let pair = pending_pair(ex, p, "above", "below", "side", "quantity")?;
    let new = NewList {
        symbol,
        client_id: list_client_id(p)?,
        working: None,
        legs: Legs::Pair(pair),
        stp: Stp::from_params(p)?,
    };
    place(&mut world.ex, new, resp_type(p)?, now)
}

/// `POST /api/v3/orderList/oto`.
pub fn place_oto(sim: &Sim, p: &Params, now: i64) -> Result<Value, ApiErr> {
    let mut world = sim.world.lock();
    let ex = &world.ex;
    let symbol = symbol_of(ex, p)?;
    let working = working_leg(ex, p)?;
    p.require("pendingType")?;
    let pending = leg(
        ex,
        p,
        &LegNames {
            prefix: "pending",
            side: "pendingSide",
            quantity: "pendingQuantity",
        },
    )?;
    let new = NewList {
        symbol,
        client_id: list_client_id(p)?,
        working: Some(working),
        legs: Legs::Single(pending),
        stp: Stp::from_params(p)?,
    };
    place(&mut world.ex, new, resp_type(p)?, now)
}

/// `POST /api/v3/orderList/otoco`.
pub fn place_otoco(sim: &Sim, p: &Params, now: i64) -> Result<Value, ApiErr> {
    let mut world = sim.world.lock();
    let ex = &world.ex;
    let symbol = symbol_of(ex, p)?;
    let working = working_leg(ex, p)?;
    p.require("pendingAboveType")?;
    p.require("pendingBelowType")?;
    let pair = pending_pair(ex, p, "pendingAbove", "pendingBelow", "pendingSide", "pendingQuantity")?;
    let new = NewList {
        symbol,
        client_id: list_client_id(p)?,
        working: Some(working),
        legs: Legs::Pair(pair),
        stp: Stp::from_params(p)?,
    };
    place(&mut world.ex, new, resp_type(p)?, now)
}

fn place(ex: &mut Exchange, new: NewList, resp: &str, now: i64) -> Result<Value, ApiErr> {
    let placed = ex.place_list(new, now)?;
    let list = ex
        .order_list(placed.list_id)
        .ok_or_else(|| ApiErr::new(500, -1000, "An unknown error occurred while processing the request."))?;
    let mut value = list_json(ex, list, now);
    let mut fills = placed.fills;
    value["orderReports"] = placement_reports(ex, list, resp, &mut fills, now)?;
    Ok(value)
}

/// Each order's report in the list's `newOrderRespType`; an order not yet working shows `workingTime: -1`.
fn placement_reports(
    ex: &Exchange,
    list: &OrderList,
    resp: &str,
    fills: &mut HashMap<u64, Vec<crate::exchange::binance::wire::Fill>>,
    now: i64,
) -> Result<Value, ApiErr> {
    let mut reports = Vec::new();
    for &id in &list.orders {
        let placed = Placed {
            order_id: id,
            fills: fills.remove(&id).unwrap_or_default(),
        };
        let mut report = placed_answer(ex, placed, resp, now)?;
        if resp != "ACK" && report.get("workingTime").is_none() {
            report["workingTime"] = json!(-1);
        }
        reports.push(report);
    }
    Ok(Value::Array(reports))
}

/// A list as the query endpoints show it (placement and cancel answers add `orderReports`).
pub fn list_json(ex: &Exchange, list: &OrderList, _now: i64) -> Value {
    let symbol = &ex.markets[list.symbol].spec.symbol;
    let (status_type, order_status) = if list.done {
        ("ALL_DONE", "ALL_DONE")
    } else {
        ("EXEC_STARTED", "EXECUTING")
    };
    let orders: Vec<Value> = list
        .orders
        .iter()
        .filter_map(|id| ex.order(*id))
        .map(|o| json!({"symbol": symbol, "orderId": o.id, "clientOrderId": o.client_id}))
        .collect();
    json!({
        "orderListId": list.id,
        "contingencyType": list.contingency.wire_name(),
        "listStatusType": status_type,
        "listOrderStatus": order_status,
        "listClientOrderId": list.client_id,
        "transactionTime": list.time,
        "symbol": symbol,
        "orders": orders,
    })
}

/// The list named by `orderListId` and/or `clientParam` (both given must agree).
fn find_list<'a>(ex: &'a Exchange, p: &Params, client_param: &str) -> Result<Option<&'a OrderList>, ApiErr> {
    let mine = |l: &&OrderList| ex.list_account(l) == p.account();
    match (p.uint("orderListId")?, p.get(client_param)) {
        (Some(id), cid) => Ok(ex
            .order_list(id)
            .filter(|l| cid.is_none_or(|c| c == l.client_id))
            .filter(mine)),
        (None, Some(cid)) => Ok(ex.order_list_by_client(cid).filter(mine)),
        (None, None) => Err(ApiErr::bad(
            -1102,
            format!("Param '{client_param}' or 'orderListId' must be sent, but both were empty/null!"),
        )),
    }
}

/// `DELETE /api/v3/orderList`: every order of the list is canceled under one cancel id.
pub fn cancel_list(sim: &Sim, p: &Params, now: i64) -> Result<Value, ApiErr> {
    let mut world = sim.world.lock();
    let symbol = symbol_of(&world.ex, p)?;
    let list_id = match find_list(&world.ex, p, "listClientOrderId")? {
        Some(l) if l.symbol == symbol => l.id,
        _ => return Err(ApiErr::unknown_order_cancel()),
    };
    let cancel_id = cancel_client_id(p.get("newClientOrderId"), list_id);
    world.ex.cancel_list(list_id, &cancel_id, now)?;
    Ok(canceled_list_json(&world.ex, list_id, &cancel_id, now))
}

/// A canceled list with its orders' cancel reports.
pub fn canceled_list_json(ex: &Exchange, list_id: u64, cancel_id: &str, now: i64) -> Value {
    let Some(list) = ex.order_list(list_id) else {
        return Value::Null;
    };
    let mut value = list_json(ex, list, now);
    value["transactionTime"] = json!(now);
    value["orderReports"] = Value::Array(
        list.orders
            .iter()
            .map(|&id| cancel_wire(ex, id, cancel_id.to_string(), now))
            .collect(),
    );
    value
}

/// `GET /api/v3/orderList`.
pub fn query_list(sim: &Sim, p: &Params, now: i64) -> Result<Value, ApiErr> {
    let world = sim.world.lock();
    let list = find_list(&world.ex, p, "origClientOrderId")?
        .ok_or_else(|| ApiErr::bad(-2013, "Order list does not exist."))?;
    Ok(list_json(&world.ex, list, now))
}

/// `GET /api/v3/openOrderList`.
pub fn open_lists(sim: &Sim, p: &Params, now: i64) -> Result<Value, ApiErr> {
    let world = sim.world.lock();
    let ex = &world.ex;
    Ok(Value::Array(
        ex.order_lists()
            .filter(|l| !l.done && ex.list_account(l) == p.account())
            .map(|l| list_json(ex, l, now))
            .collect(),
    ))
}

/// `GET /api/v3/allOrderList`: newest first, as documented; `fromId` excludes a time range.
pub fn all_lists(sim: &Sim, p: &Params, now: i64) -> Result<Value, ApiErr> {
    let limit = p.limit(500, 1000)? as usize;
    let (from_id, start, end) = (p.uint("fromId")?, p.int("startTime")?, p.int("endTime")?);
    if from_id.is_some() && (start.is_some() || end.is_some()) {
        return Err(ApiErr::bad(-1128, "Combination of optional parameters invalid."));
    }
    let world = sim.world.lock();
    let ex = &world.ex;
    let selected: Vec<&OrderList> = ex
        .order_lists()
        .filter(|l| ex.list_account(l) == p.account())
        .filter(|l| from_id.is_none_or(|f| l.id >= f))
        .filter(|l| start.is_none_or(|s| l.time >= s) && end.is_none_or(|e| l.time <= e))
        .collect();
    let rows: Vec<Value> = if from_id.is_some() {
        selected
            .into_iter()
            .take(limit)
            .rev()
            .map(|l| list_json(ex, l, now))
            .collect()
    } else {
        selected
            .into_iter()
            .rev()
            .take(limit)
            .map(|l| list_json(ex, l, now))
            .collect()
    };
    Ok(Value::Array(rows))
}
