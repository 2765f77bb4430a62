//! `orders`: place, cancel and look up this strategy's orders.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mlua::{Lua, Table, Value};

use super::convert::{self, order_table, Fields};
use super::{exchange_function, host_function, publish, usage, wait_ms, ApiCtx, Args};
use crate::exchange::{
    ApiError, CallCtx, ClientOrderId, ErrorCode, ListLegs, ListRef, ListRequest, ListType, OrderFields, OrderKind,
    OrderRef, OrderRequest, OrderType, PlacedList, ReplaceMode, SelfTradePrevention, Side, TimeInForce,
};
use crate::host::spec::suggest;

/// `orders.place{...}` and `orders.replace{...}`: a new order's fields; a replacement also names the
/// order it replaces and what to do if that cancel fails. One list, so the two cannot drift apart.
macro_rules! new_order_fields {
    ($($field:literal),*) => {
        const PLACE_FIELDS: &[&str] = &[$($field),*];
        const REPLACE_FIELDS: &[&str] = &[$($field,)* "cancel_id", "mode"];
    };
}
new_order_fields!(
    "symbol",
    "side",
    "type",
    "quantity",
    "quote_quantity",
    "price",
    "tif",
    "client_id",
    "stop_price",
    "trailing_delta",
    "stp",
    "wait_ms"
);

const AMEND_FIELDS: &[&str] = &["symbol", "id", "quantity", "wait_ms"];

/// `orders.place_list{...}`: the list's own fields, then one table per order in its place. An OCO's
/// `side` and `quantity` are the pair's (Binance's shape); an order may also give its own.
const LIST_FIELDS: &[&str] = &[
    "symbol",
    "type",
    "side",
    "quantity",
    "client_id",
    "stp",
    "wait_ms",
    "above",
    "below",
    "working",
    "pending",
    "pending_above",
    "pending_below",
];

/// One order of a list: an order's fields without those the list gives for all.
const LEG_FIELDS: &[&str] = &[
    "symbol",
    "side",
    "type",
    "quantity",
    "price",
    "tif",
    "client_id",
    "stop_price",
    "trailing_delta",
];

const CANCEL_LIST_FIELDS: &[&str] = &["symbol", "list_id", "wait_ms"];

pub fn register(lua: &Lua, ctx: &Rc<ApiCtx>) -> mlua::Result<()> {
    let m = lua.create_table()?;

    let stats = ctx.stats.clone();
    m.raw_set(
        "place",
        exchange_function(
            lua,
            ctx,
            "orders.place",
            move |lua, c, args| {
                let Value::Table(spec) = args.get(0).clone() else {
                    return Err(args.bad(lua, 0, "order", "table"));
                };
                let fields = checked_fields(lua, "orders.place", &spec, PLACE_FIELDS)?;
                let (request, wait) = parse_request(lua, c, "orders.place", &fields)?;
                Ok((request, c.order_call(wait)))
            },
            move |venue, call, request| {
                let stats = stats.clone();
                async move {
                    // A malformed order is refused here, as the venue refuses an off-grid one: nothing is sent.
                    let result = match request {
                        Ok(request) => venue.place(&call, request).await,
                        Err(error) => Err(error),
                    };
                    count(&stats, result.as_ref().map(|_| ()).map_err(Clone::clone));
                    result
                }
            },
            order_table,
        )?,
    )?;

    m.raw_set(
        "amend",
        exchange_function(
            lua,
            ctx,
            "orders.amend",
            move |lua, c, args| {
                const FUNC: &str = "orders.amend";
                let Value::Table(spec) = args.get(0).clone() else {
                    return Err(args.bad(lua, 0, "amendment", "table"));
                };
                let fields = checked_fields(lua, FUNC, &spec, AMEND_FIELDS)?;
                let symbol = match fields.get("symbol") {
                    Value::String(s) => s.to_string_lossy(),
                    _ => return Err(usage(lua, format!("{FUNC}: symbol is required (a string)"))),
                };
                c.check_symbol(lua, FUNC, &symbol)?;
                let order = field_order_ref(lua, FUNC, "id", fields.get("id"))?;
                let quantity = match *fields.get("quantity") {
                    Value::Integer(i) => i as f64,
                    Value::Number(n) => n,
                    _ => return Err(usage(lua, format!("{FUNC}: quantity is required (a number)"))),
                };
                let wait = wait_ms(lua, FUNC, fields.get("wait_ms").clone())?;
                Ok(((symbol, order, quantity), c.order_call(wait)))
            },
            |venue, call, (symbol, order, quantity)| async move { venue.amend(&call, &symbol, &order, quantity).await },
            order_table,
        )?,
    )?;

    let stats = ctx.stats.clone();
    m.raw_set(
        "replace",
        exchange_function(
            lua,
            ctx,
            "orders.replace",
            move |lua, c, args| {
                const FUNC: &str = "orders.replace";
                let Value::Table(spec) = args.get(0).clone() else {
                    return Err(args.bad(lua, 0, "order", "table"));
                };
                let fields = checked_fields(lua, FUNC, &spec, REPLACE_FIELDS)?;
                let cancel = field_order_ref(lua, FUNC, "cancel_id", fields.get("cancel_id"))?;
                let mode = match fields.get("mode") {
                    Value::Nil => ReplaceMode::StopOnFailure,
                    Value::String(s) => ReplaceMode::parse(&s.to_string_lossy()).ok_or_else(|| {
                        usage(
                            lua,
                            format!("{FUNC}: mode must be \"STOP_ON_FAILURE\" or \"ALLOW_FAILURE\""),
                        )
                    })?,
                    other => {
                        return Err(usage(
                            lua,
                            format!(
                                "{FUNC}: mode must be a string, got {}",
                                crate::host::api::lua_type(other)
                            ),
                        ))
                    }
                };
                let (request, wait) = parse_request(lua, c, FUNC, &fields)?;
                Ok(((cancel, mode, request), c.order_call(wait)))
            },
            move |venue, call, (cancel, mode, request)| {
                let stats = stats.clone();
                async move {
                    let result = match request {
                        Ok(request) => venue.replace(&call, &cancel, mode, request).await,
                        Err(error) => Err(error),
                    };
                    count(&stats, result.as_ref().map(|_| ()).map_err(Clone::clone));
                    result
                }
            },
            order_table,
        )?,
    )?;

    let stats = ctx.stats.clone();
    m.raw_set(
        "place_list",
        exchange_function(
            lua,
            ctx,
            "orders.place_list",
            move |lua, c, args| {
                let Value::Table(spec) = args.get(0).clone() else {
                    return Err(args.bad(lua, 0, "order list", "table"));
                };
                let (request, wait) = parse_list(lua, c, &spec)?;
                Ok((request, c.order_call(wait)))
            },
            move |venue, call, request| {
                let stats = stats.clone();
                async move {
                    let result = match request {
                        Ok(request) => venue.place_list(&call, request).await,
                        Err(error) => Err(error),
                    };
                    let legs = match &result {
                        Ok(placed) => placed.orders.named().len(),
                        Err(_) => 1,
                    };
                    for _ in 0..legs {
                        count(&stats, result.as_ref().map(|_| ()).map_err(Clone::clone));
                    }
                    result
                }
            },
            placed_list_table,
        )?,
    )?;

    m.raw_set(
        "cancel_list",
        exchange_function(
            lua,
            ctx,
            "orders.cancel_list",
            move |lua, c, args| {
                const FUNC: &str = "orders.cancel_list";
                let Value::Table(spec) = args.get(0).clone() else {
                    return Err(args.bad(lua, 0, "order list", "table"));
                };
                let fields = checked_fields(lua, FUNC, &spec, CANCEL_LIST_FIELDS)?;
                let symbol = match fields.get("symbol") {
                    Value::String(s) => s.to_string_lossy(),
                    _ => return Err(usage(lua, format!("{FUNC}: symbol is required (a string)"))),
                };
                c.check_symbol(lua, FUNC, &symbol)?;
                let list = match field_order_ref(lua, FUNC, "list_id", fields.get("list_id")) {
                    Ok(OrderRef::Id(id)) => ListRef::Id(id),
                    Ok(OrderRef::ClientId(id)) => ListRef::ClientId(id),
                    Err(_) => {
                        return Err(usage(
                            lua,
                            format!("{FUNC}: list_id is required (a list id number or a list client id string)"),
                        ))
                    }
                };
                let wait = wait_ms(lua, FUNC, fields.get("wait_ms").clone())?;
                Ok(((symbol, list), c.order_call(wait)))
            },
            |venue, call, (symbol, list)| async move { venue.cancel_list(&call, &symbol, &list).await },
            |lua, orders| convert::list(lua, orders, order_table),
        )?,
    )?;

    m.raw_set(
        "cancel",
        exchange_function(
            lua,
            ctx,
            "orders.cancel",
            symbol_and_order,
            |venue, call, (symbol, order)| async move { venue.cancel(&call, &symbol, &order).await },
            order_table,
        )?,
    )?;

    m.raw_set(
        "cancel_all",
        exchange_function(
            lua,
            ctx,
            "orders.cancel_all",
            |lua, c, args| {
                Ok((
                    c.symbol_arg(lua, args, 0)?,
                    c.order_call(args.wait_option(lua, &c.keys)?),
                ))
            },
            |venue, call, symbol| async move { venue.cancel_all(&call, &symbol).await },
            |lua, list| convert::list(lua, list, order_table),
        )?,
    )?;

    m.raw_set(
        "get",
        exchange_function(
            lua,
            ctx,
            "orders.get",
            symbol_and_order,
            |venue, call, (symbol, order)| async move { venue.get_order(&call, &symbol, &order).await },
            order_table,
        )?,
    )?;

    m.raw_set(
        "open",
        host_function(lua, ctx, "orders.open", |lua, c, args| {
            let symbol = match args.get(0) {
                Value::Nil => None,
                _ => Some(c.symbol_arg(lua, &args, 0)?),
            };
            let open = c.venue.open_orders(&c.strategy(), symbol.as_deref());
            convert::list(lua, &open, order_table)
        })?,
    )?;

    publish(lua, "orders", m)
}

/// Counts a placement's outcome in the strategy's statistics.
fn count(stats: &crate::host::Stats, result: Result<(), ApiError>) {
    match &result {
        Ok(_) => stats.orders_placed.fetch_add(1, Ordering::Relaxed),
        Err(err) if err.code == ErrorCode::Rejected => stats.orders_rejected.fetch_add(1, Ordering::Relaxed),
        Err(_) => 0,
    };
}

/// `spec`'s fields, refusing one `func` does not take (suggesting the nearest it does).
fn checked_fields(lua: &Lua, func: &str, spec: &Table, names: &'static [&'static str]) -> mlua::Result<Fields> {
    let fields = Fields::read(spec, names)?;
    if let Some(name) = &fields.unknown {
        let hint = suggest(name, names.iter().copied())
            .map(|s| format!("; did you mean {s}?"))
            .unwrap_or_default();
        return Err(usage(lua, format!("{func}: unknown field '{name}'{hint}")));
    }
    Ok(fields)
}

/// An order named in a table field: its exchange id (number) or client id (string).
fn field_order_ref(lua: &Lua, func: &str, field: &str, value: &Value) -> mlua::Result<OrderRef> {
    match value {
        Value::Integer(id) if *id >= 0 => Ok(OrderRef::Id(*id as u64)),
        Value::Number(id) if *id >= 0.0 && id.fract() == 0.0 => Ok(OrderRef::Id(*id as u64)),
        Value::String(s) => Ok(OrderRef::ClientId(s.to_string_lossy())),
        _ => Err(usage(
            lua,
            format!("{func}: {field} is required (an order id number or a client id string)"),
        )),
    }
}

/// `(symbol, order)` arguments of a call about one order, with its budget context.
fn symbol_and_order(lua: &Lua, c: &ApiCtx, args: &Args) -> mlua::Result<((String, OrderRef), CallCtx)> {
    let symbol = c.symbol_arg(lua, args, 0)?;
    let order = order_ref(lua, args, 1)?;
    Ok(((symbol, order), c.order_call(args.wait_option(lua, &c.keys)?)))
}

/// An exchange order id (number) or a client order id (string).
fn order_ref(lua: &Lua, args: &Args, index: usize) -> mlua::Result<OrderRef> {
    match args.get(index) {
        Value::Integer(id) if *id >= 0 => Ok(OrderRef::Id(*id as u64)),
        Value::Number(id) if *id >= 0.0 && id.fract() == 0.0 => Ok(OrderRef::Id(*id as u64)),
        Value::String(s) => Ok(OrderRef::ClientId(s.to_string_lossy())),
        _ => Err(args.bad(lua, index, "id", "order id (number) or client id (string)")),
    }
}

/// The new order's fields of `orders.place` (and `orders.replace`, whose other fields `fields` knows);
/// the caller has refused unknown fields.
fn parse_request(
    lua: &Lua,
    ctx: &ApiCtx,
    func: &'static str,
    fields: &Fields,
) -> mlua::Result<(Result<OrderRequest, ApiError>, Option<Duration>)> {
    let text = |field: &str| text_field(lua, func, fields, field);
    let symbol = text("symbol")?.ok_or_else(|| usage(lua, format!("{func}: symbol is required")))?;
    ctx.check_symbol(lua, func, &symbol)?;
    let request = parse_order(lua, func, fields, &symbol, (None, None))?;
    let wait = wait_ms(lua, func, fields.get("wait_ms").clone())?;
    Ok((request, wait))
}

/// A field read as text, `None` when absent.
fn text_field(lua: &Lua, func: &str, fields: &Fields, field: &str) -> mlua::Result<Option<String>> {
    match fields.get(field) {
        Value::Nil => Ok(None),
        Value::String(s) => Ok(Some(s.to_string_lossy())),
        other => Err(usage(
            lua,
            format!(
                "{func}: {field} must be a string, got {}",
                crate::host::api::lua_type(other)
            ),
        )),
    }
}

/// A field read as a number, `None` when absent.
fn number_field(lua: &Lua, func: &str, fields: &Fields, field: &str) -> mlua::Result<Option<f64>> {
    match *fields.get(field) {
        Value::Nil => Ok(None),
        Value::Integer(i) => Ok(Some(i as f64)),
        Value::Number(n) => Ok(Some(n)),
        ref other => Err(usage(
            lua,
            format!(
                "{func}: {field} must be a number, got {}",
                crate::host::api::lua_type(other)
            ),
        )),
    }
}

/// `stp` read as a self-trade prevention mode.
fn stp_field(lua: &Lua, func: &str, fields: &Fields) -> mlua::Result<Option<SelfTradePrevention>> {
    match text_field(lua, func, fields, "stp")? {
        Some(mode) => Ok(Some(SelfTradePrevention::parse(&mode).ok_or_else(|| {
            usage(
                lua,
                format!(
                    "{func}: stp must be \"NONE\", \"EXPIRE_TAKER\", \"EXPIRE_MAKER\", \"EXPIRE_BOTH\" or \
                     \"DECREMENT\", got \"{mode}\""
                ),
            )
        })?)),
        None => Ok(None),
    }
}

/// One order's fields on `symbol` (an order table, or one order of a list); `inherited` are the side
/// and quantity the order takes when it gives none (an OCO pair's).
fn parse_order(
    lua: &Lua,
    func: &str,
    fields: &Fields,
    symbol: &str,
    inherited: (Option<Side>, Option<f64>),
) -> mlua::Result<Result<OrderRequest, ApiError>> {
    let text = |field: &str| text_field(lua, func, fields, field);
    let amount = |field: &str| number_field(lua, func, fields, field);
    let side = match (text("side")?, inherited.0) {
        (Some(side), _) => Side::parse(&side)
            .ok_or_else(|| usage(lua, format!("{func}: side must be \"BUY\" or \"SELL\", got \"{side}\"")))?,
        (None, Some(side)) => side,
        (None, None) => return Err(usage(lua, format!("{func}: side is required (\"BUY\" or \"SELL\")"))),
    };
    if inherited.0.is_some_and(|s| s != side) {
        return Err(usage(lua, format!("{func}: side differs from the list's")));
    }
    let quantity = match (amount("quantity")?, inherited.1) {
        (Some(q), Some(list)) if q != list => {
            return Err(usage(
                lua,
                format!("{func}: quantity {q} differs from the list's {list}"),
            ))
        }
        (own, list) => own.or(list),
    };
    let kind = text("type")?.ok_or_else(|| usage(lua, format!("{func}: type is required")))?;
    let order_type = OrderType::parse(&kind).ok_or_else(|| {
        usage(
            lua,
            format!(
                "{func}: type must be \"LIMIT\", \"MARKET\", \"LIMIT_MAKER\", \"STOP_LOSS\", \"STOP_LOSS_LIMIT\", \
                 \"TAKE_PROFIT\" or \"TAKE_PROFIT_LIMIT\", got \"{kind}\""
            ),
        )
    })?;
    let tif = match text("tif")? {
        Some(tif) => Some(TimeInForce::parse(&tif).ok_or_else(|| {
            usage(
                lua,
                format!("{func}: tif must be \"GTC\", \"IOC\" or \"FOK\", got \"{tif}\""),
            )
        })?),
        None => None,
    };
    let order_fields = OrderFields {
        price: amount("price")?,
        quantity,
        quote_quantity: amount("quote_quantity")?,
        tif,
        stop_price: amount("stop_price")?,
        trailing_delta: match *fields.get("trailing_delta") {
            Value::Nil => None,
            Value::Integer(i) if i > 0 && i <= i64::from(u32::MAX) => Some(i as u32),
            Value::Number(n) if n > 0.0 && n.fract() == 0.0 && n <= f64::from(u32::MAX) => Some(n as u32),
            ref other => {
                return Err(usage(
                    lua,
                    format!(
                        "{func}: trailing_delta must be a whole number of basis points above 0, got {}",
                        crate::host::api::lua_type(other)
                    ),
                ))
            }
        },
    };
    let stp = stp_field(lua, func, fields)?;
    let client_id = text("client_id")?;
    Ok((|| {
        let kind = OrderKind::from_fields(order_type, order_fields).map_err(invalid)?;
        let mut request = OrderRequest::new(symbol, side, kind);
        request.client_id = client_id.map(ClientOrderId::new).transpose()?;
        request.stp = stp;
        Ok(request)
    })())
}

/// `orders.place_list{...}`: the list's fields and each of its orders in their places.
fn parse_list(
    lua: &Lua,
    ctx: &ApiCtx,
    spec: &Table,
) -> mlua::Result<(Result<ListRequest, ApiError>, Option<Duration>)> {
    const FUNC: &str = "orders.place_list";
    let fields = &checked_fields(lua, FUNC, spec, LIST_FIELDS)?;
    let text = |field: &str| text_field(lua, FUNC, fields, field);
    let symbol = text("symbol")?.ok_or_else(|| usage(lua, format!("{FUNC}: symbol is required")))?;
    ctx.check_symbol(lua, FUNC, &symbol)?;
    let kind =
        text("type")?.ok_or_else(|| usage(lua, format!("{FUNC}: type is required (\"oco\", \"oto\" or \"otoco\")")))?;
    let list_type = match kind.to_ascii_lowercase().as_str() {
        "oco" => ListType::Oco,
        "oto" => ListType::Oto,
        "otoco" => ListType::Otoco,
        _ => {
            return Err(usage(
                lua,
                format!("{FUNC}: type must be \"oco\", \"oto\" or \"otoco\", got \"{kind}\""),
            ))
        }
    };
    // An OCO pair shares one side and quantity, given on the list as Binance does (or on each order).
    let side = match text("side")? {
        Some(side) => Some(
            Side::parse(&side)
                .ok_or_else(|| usage(lua, format!("{FUNC}: side must be \"BUY\" or \"SELL\", got \"{side}\"")))?,
        ),
        None => None,
    };
    let quantity = number_field(lua, FUNC, fields, "quantity")?;
    if list_type != ListType::Oco && (side.is_some() || quantity.is_some()) {
        return Err(usage(
            lua,
            format!("{FUNC}: side and quantity belong to each order of an {list_type} list, not to the list"),
        ));
    }
    let places: &[&str] = match list_type {
        ListType::Oco => &["above", "below"],
        ListType::Oto => &["working", "pending"],
        ListType::Otoco => &["working", "pending_above", "pending_below"],
    };
    for other in LIST_FIELDS.iter().skip(7).filter(|f| !places.contains(f)) {
        if !fields.get(other).is_nil() {
            return Err(usage(
                lua,
                format!(
                    "{FUNC}: an {list_type} list has no '{other}' order (its orders: {})",
                    places.join(", ")
                ),
            ));
        }
    }
    let mut legs = Vec::with_capacity(places.len());
    for place in places {
        let Value::Table(leg) = fields.get(place) else {
            return Err(usage(lua, format!("{FUNC}: {place} is required (an order table)")));
        };
        let func = format!("{FUNC}: {place}");
        let leg_fields = checked_fields(lua, &func, leg, LEG_FIELDS)?;
        if let Some(own) = text_field(lua, &func, &leg_fields, "symbol")? {
            if own != symbol {
                return Err(usage(
                    lua,
                    format!("{func}: every order of a list is on the list's symbol {symbol}, not {own}"),
                ));
            }
        }
        legs.push(parse_order(lua, &func, &leg_fields, &symbol, (side, quantity))?);
    }
    let client_id = text("client_id")?;
    let stp = stp_field(lua, FUNC, fields)?;
    let request = (|| {
        let mut legs = legs.into_iter();
        let mut next = || legs.next().expect("one order per place");
        let legs = match list_type {
            ListType::Oco => ListLegs::Oco {
                above: next()?,
                below: next()?,
            },
            ListType::Oto => ListLegs::Oto {
                working: next()?,
                pending: next()?,
            },
            ListType::Otoco => ListLegs::Otoco {
                working: next()?,
                pending_above: next()?,
                pending_below: next()?,
            },
        };
        Ok(ListRequest {
            symbol: symbol.clone(),
            legs,
            client_id: client_id.map(ClientOrderId::new).transpose()?,
            stp,
        })
    })();
    let wait = wait_ms(lua, FUNC, fields.get("wait_ms").clone())?;
    Ok((request, wait))
}

/// `{list_id, client_id, <place> = order, ..., orders = {order, ...}}`: the list and each of its
/// orders by its place's name (`above`, `working`, `pending_below` ...) and in the list's order.
fn placed_list_table(lua: &Lua, placed: &PlacedList) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(0, 6)?;
    table.raw_set("list_id", placed.list_id.map(|id| id as i64))?;
    table.raw_set("client_id", placed.client_id.as_str())?;
    let named = placed.orders.named();
    let orders = lua.create_table_with_capacity(named.len(), 0)?;
    for (i, (place, order)) in named.into_iter().enumerate() {
        let order = order_table(lua, order)?;
        table.raw_set(place, &order)?;
        orders.raw_set(i + 1, order)?;
    }
    table.raw_set("orders", orders)?;
    Ok(table)
}

fn invalid(message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidOrder, message)
}
