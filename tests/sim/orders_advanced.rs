//! Advanced orders at the simulator, over REST and the WebSocket API: stop-loss / take-profit
//! orders triggered by the last trade, icebergs, amend-keep-priority and cancel-replace with its
//! documented failure modes, cancel restrictions, and the execution reports they push.

use crate::sim_support::*;
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::{json, Value};

fn dec(v: &Value) -> Decimal {
    v.as_str().expect("decimal string").parse().expect("decimal")
}

/// Quantity resting at `price` on one side of the simulator's book.
fn level(sim: &runner::sim::SimHandle, symbol: &str, bids: bool, price: Decimal) -> Decimal {
    let book = sim.book(symbol, 5_000).unwrap();
    let side = if bids { book.bids } else { book.asks };
    side.iter().find(|l| l[0] == price).map(|l| l[1]).unwrap_or_default()
}

#[tokio::test]
async fn stop_loss_and_take_profit_trigger_on_the_last_trade() {
    let sim = start(still_market()).await;
    let rest = Rest::new(&sim);
    let bought = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            "symbol=ETHUSDT&side=BUY&type=MARKET&quantity=0.01",
        )
        .await;
    let last = dec(&bought.body["fills"][0]["price"]);

    let above = (last * Decimal::new(101, 2)).round_dp(2);
    let immediate = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            &format!("symbol=ETHUSDT&side=SELL&type=STOP_LOSS&quantity=0.5&stopPrice={above}"),
        )
        .await;
    assert_eq!(
        (immediate.status, immediate.msg()),
        (400, "Order would trigger immediately.")
    );
    let missing = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            "symbol=ETHUSDT&side=SELL&type=STOP_LOSS&quantity=0.5",
        )
        .await;
    assert_eq!(missing.code(), -1102);

    let stop = (last * Decimal::new(99, 2)).round_dp(2);
    let placed = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            &format!("symbol=ETHUSDT&side=SELL&type=STOP_LOSS&quantity=0.5&stopPrice={stop}&newClientOrderId=stop-1"),
        )
        .await;
    assert_eq!(placed.status, 200, "{}", placed.body);
    assert!(placed.body.get("status").is_none(), "stop orders answer ACK by default");
    let tp_stop = (last * Decimal::new(103, 2)).round_dp(2);
    let tp_price = (last * Decimal::new(102, 2)).round_dp(2);
    let tp = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            &format!("symbol=ETHUSDT&side=SELL&type=TAKE_PROFIT_LIMIT&timeInForce=GTC&quantity=0.2&price={tp_price}&stopPrice={tp_stop}&newClientOrderId=tp-1"),
        )
        .await;
    assert_eq!(tp.status, 200, "{}", tp.body);
    let pending = rest
        .signed(Method::GET, "/api/v3/order", "symbol=ETHUSDT&origClientOrderId=stop-1")
        .await;
    assert_eq!(
        (
            pending.body["status"].as_str(),
            pending.body["isWorking"].as_bool(),
            dec(&pending.body["stopPrice"])
        ),
        (Some("NEW"), Some(false), stop)
    );
    assert!(pending.body.get("workingTime").is_none());
    assert_eq!(sim.balance("ETH").1, Decimal::new(7, 1), "0.5 + 0.2 ETH reserved");

    // The market falls through the stop and a trade prints there: the stop-loss sells at market,
    // the take-profit waits.
    assert!(sim.set_price("ETHUSDT", last * Decimal::new(97, 2)));
    sim.step_market();
    let sold = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            "symbol=ETHUSDT&side=SELL&type=MARKET&quantity=0.01",
        )
        .await;
    assert!(dec(&sold.body["fills"][0]["price"]) <= stop, "{}", sold.body);
    let filled = eventually("the stop-loss fills", || async {
        let o = sim.orders_by_client_id("stop-1");
        (o[0].status == "FILLED").then(|| o[0].clone())
    })
    .await;
    assert_eq!(filled.executed_qty, Decimal::new(5, 1));
    assert_eq!(sim.orders_by_client_id("tp-1")[0].status, "NEW");
    let canceled = rest
        .signed(Method::DELETE, "/api/v3/order", "symbol=ETHUSDT&origClientOrderId=tp-1")
        .await;
    assert_eq!(canceled.body["status"], "CANCELED");
    assert_eq!(sim.balance("ETH").1, Decimal::ZERO);
    sim.shutdown().await;
}

#[tokio::test]
async fn icebergs_show_their_visible_part_and_refill() {
    let sim = start(still_market()).await;
    let rest = Rest::new(&sim);
    let bid = sim.book("ETHUSDT", 1).unwrap().bids[0][0];
    let price = (bid * Decimal::new(99, 2)).round_dp(2);
    let before = level(&sim, "ETHUSDT", true, price);
    let base = format!("symbol=ETHUSDT&side=BUY&type=LIMIT&timeInForce=GTC&price={price}");
    for (extra, msg) in [
        ("&quantity=1&icebergQty=1", "Invalid icebergQty."),
        ("&quantity=1&icebergQty=0.05", "Filter failure: ICEBERG_PARTS"),
    ] {
        let refused = rest
            .signed(Method::POST, "/api/v3/order", &format!("{base}{extra}"))
            .await;
        assert_eq!((refused.code(), refused.msg()), (-1013, msg));
    }
    let ioc = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            &format!("symbol=ETHUSDT&side=BUY&type=LIMIT&timeInForce=IOC&price={price}&quantity=1&icebergQty=0.2"),
        )
        .await;
    assert_eq!(ioc.code(), -1013);

    let placed = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            &format!("{base}&quantity=1&icebergQty=0.2&newClientOrderId=ice-1"),
        )
        .await;
    assert_eq!(placed.status, 200, "{}", placed.body);
    assert_eq!(dec(&placed.body["icebergQty"]), Decimal::new(2, 1));
    assert_eq!(
        level(&sim, "ETHUSDT", true, price) - before,
        Decimal::new(2, 1),
        "only 0.2 shows"
    );
    // Reserved in full.
    assert_eq!(sim.balance("USDT").1, price);

    assert!(sim.set_price("ETHUSDT", price * Decimal::new(97, 2)));
    sim.step_market();
    let done = eventually("the iceberg fills", || async {
        let o = sim.orders_by_client_id("ice-1");
        (o[0].status == "FILLED").then(|| o[0].clone())
    })
    .await;
    let trades = rest
        .signed(
            Method::GET,
            "/api/v3/myTrades",
            &format!("symbol=ETHUSDT&orderId={}", done.order_id),
        )
        .await;
    let parts = trades.body.as_array().unwrap();
    assert!(parts.len() >= 5, "five visible parts of 0.2: {parts:?}");
    assert!(parts.iter().all(|t| dec(&t["qty"]) <= Decimal::new(2, 1)));
    sim.shutdown().await;
}

#[tokio::test]
async fn amend_keeps_the_order_and_only_goes_down() {
    let sim = start(still_market()).await;
    let rest = Rest::new(&sim);
    let bid = sim.book("ETHUSDT", 1).unwrap().bids[0][0];
    let price = (bid * Decimal::new(99, 2)).round_dp(2);
    let before = level(&sim, "ETHUSDT", true, price);
    let placed = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            &format!(
                "symbol=ETHUSDT&side=BUY&type=LIMIT&timeInForce=GTC&price={price}&quantity=1&newClientOrderId=amend-me"
            ),
        )
        .await;
    let id = placed.body["orderId"].as_u64().unwrap();
    let amended = rest
        .signed(
            Method::PUT,
            "/api/v3/order/amend/keepPriority",
            &format!("symbol=ETHUSDT&orderId={id}&newQty=0.4&newClientOrderId=amended"),
        )
        .await;
    assert_eq!(amended.status, 200, "{}", amended.body);
    let order = &amended.body["amendedOrder"];
    assert_eq!(
        (
            order["orderId"].as_u64(),
            order["origClientOrderId"].as_str(),
            order["clientOrderId"].as_str()
        ),
        (Some(id), Some("amend-me"), Some("amended"))
    );
    assert_eq!(dec(&order["qty"]), Decimal::new(4, 1));
    assert!(amended.body["executionId"].as_u64().is_some());
    assert_eq!(level(&sim, "ETHUSDT", true, price) - before, Decimal::new(4, 1));
    assert_eq!(
        sim.balance("USDT").1,
        price * Decimal::new(4, 1),
        "the cut part is released"
    );

    let up = rest
        .signed(
            Method::PUT,
            "/api/v3/order/amend/keepPriority",
            &format!("symbol=ETHUSDT&orderId={id}&newQty=2"),
        )
        .await;
    assert_eq!(
        (up.code(), up.msg()),
        (-2038, "Order amend (quantity increase) is not supported.")
    );
    let unknown = rest
        .signed(
            Method::PUT,
            "/api/v3/order/amend/keepPriority",
            "symbol=ETHUSDT&orderId=999999&newQty=0.1",
        )
        .await;
    assert_eq!((unknown.code(), unknown.msg()), (-2038, "Unknown order sent."));
    let status = rest
        .signed(Method::GET, "/api/v3/order", "symbol=ETHUSDT&origClientOrderId=amended")
        .await;
    assert_eq!(
        (status.body["orderId"].as_u64(), status.body["status"].as_str()),
        (Some(id), Some("NEW"))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn cancel_replace_and_its_failure_modes() {
    let sim = start(still_market()).await;
    let rest = Rest::new(&sim);
    let (bid, ask) = {
        let b = sim.book("ETHUSDT", 1).unwrap();
        (b.bids[0][0], b.asks[0][0])
    };
    let price = (bid * Decimal::new(99, 2)).round_dp(2);
    let limit = |p: Decimal| format!("symbol=ETHUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.1&price={p}");
    let first = rest.signed(Method::POST, "/api/v3/order", &limit(price)).await;
    let first_id = first.body["orderId"].as_u64().unwrap();

    let lower = price - Decimal::ONE;
    let replaced = rest
        .signed(
            Method::POST,
            "/api/v3/order/cancelReplace",
            &format!(
                "{}&cancelReplaceMode=STOP_ON_FAILURE&cancelOrderId={first_id}",
                limit(lower)
            ),
        )
        .await;
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    assert_eq!(
        (
            replaced.body["cancelResult"].as_str(),
            replaced.body["newOrderResult"].as_str()
        ),
        (Some("SUCCESS"), Some("SUCCESS"))
    );
    assert_eq!(replaced.body["cancelResponse"]["status"], "CANCELED");
    let second_id = replaced.body["newOrderResponse"]["orderId"].as_u64().unwrap();
    assert!(replaced.header("x-mbx-order-count-10s").is_some());

    let unknown_stop = rest
        .signed(
            Method::POST,
            "/api/v3/order/cancelReplace",
            &format!(
                "{}&cancelReplaceMode=STOP_ON_FAILURE&cancelOrderId=999999",
                limit(lower)
            ),
        )
        .await;
    assert_eq!((unknown_stop.status, unknown_stop.code()), (400, -2022));
    assert_eq!(unknown_stop.body["data"]["newOrderResult"], "NOT_ATTEMPTED");
    assert_eq!(unknown_stop.body["data"]["cancelResponse"]["code"], -2011);

    let unknown_allow = rest
        .signed(
            Method::POST,
            "/api/v3/order/cancelReplace",
            &format!("{}&cancelReplaceMode=ALLOW_FAILURE&cancelOrderId=999999", limit(lower)),
        )
        .await;
    assert_eq!((unknown_allow.status, unknown_allow.code()), (409, -2021));
    assert_eq!(
        (
            unknown_allow.body["data"]["cancelResult"].as_str(),
            unknown_allow.body["data"]["newOrderResult"].as_str()
        ),
        (Some("FAILURE"), Some("SUCCESS"))
    );

    // The cancel succeeds, the new LIMIT_MAKER would take: partially failed.
    let taking = format!("symbol=ETHUSDT&side=BUY&type=LIMIT_MAKER&quantity=0.1&price={ask}");
    let half = rest
        .signed(
            Method::POST,
            "/api/v3/order/cancelReplace",
            &format!("{taking}&cancelReplaceMode=STOP_ON_FAILURE&cancelOrderId={second_id}"),
        )
        .await;
    assert_eq!((half.status, half.code()), (409, -2021), "{}", half.body);
    assert_eq!(
        half.body["data"]["newOrderResponse"],
        json!({"code": -2010, "msg": "Order would immediately match and take."})
    );

    // A new order failing its filters changes nothing.
    let third = rest.signed(Method::POST, "/api/v3/order", &limit(price)).await;
    let third_id = third.body["orderId"].as_u64().unwrap();
    let filtered = rest
        .signed(
            Method::POST,
            "/api/v3/order/cancelReplace",
            &format!(
                "{}&cancelReplaceMode=ALLOW_FAILURE&cancelOrderId={third_id}",
                limit(price + Decimal::new(1, 3))
            ),
        )
        .await;
    assert_eq!(filtered.code(), -1013);
    let still = rest
        .signed(
            Method::GET,
            "/api/v3/order",
            &format!("symbol=ETHUSDT&orderId={third_id}"),
        )
        .await;
    assert_eq!(still.body["status"], "NEW");
    sim.shutdown().await;
}

#[tokio::test]
async fn websocket_api_amends_and_replaces_with_full_execution_reports() {
    let sim = start(still_market()).await;
    let mut ws = ws_api_with_user_data(&sim).await;
    let bid = sim.book("ETHUSDT", 1).unwrap().bids[0][0];
    let price = (bid * Decimal::new(99, 2)).round_dp(2).to_string();
    let order = ws_signed(&[
        ("symbol", json!("ETHUSDT")),
        ("side", json!("BUY")),
        ("type", json!("LIMIT")),
        ("timeInForce", json!("GTC")),
        ("quantity", json!("1")),
        ("price", json!(price)),
    ]);
    send_json(&mut ws, json!({"id": "p", "method": "order.place", "params": order})).await;
    let placed = next_matching(&mut ws, |v| v["id"] == "p").await;
    let id = placed["result"]["orderId"].as_u64().unwrap();
    let report = next_matching(&mut ws, |v| v["event"]["e"] == "executionReport").await;
    let event = &report["event"];
    for field in ["P", "F", "g", "I", "M", "Q", "V", "W"] {
        assert!(event.get(field).is_some(), "{field} missing: {event}");
    }
    assert_eq!(
        (event["g"].as_i64(), event["V"].as_str(), event["w"].as_bool()),
        (Some(-1), Some("NONE"), Some(true))
    );

    let amend = ws_signed(&[
        ("symbol", json!("ETHUSDT")),
        ("orderId", json!(id)),
        ("newQty", json!("0.5")),
    ]);
    send_json(
        &mut ws,
        json!({"id": "a", "method": "order.amend.keepPriority", "params": amend}),
    )
    .await;
    let amended = next_matching(&mut ws, |v| v["id"] == "a").await;
    assert_eq!(amended["status"], 200, "{amended}");
    let replaced = next_matching(&mut ws, |v| v["event"]["x"] == "REPLACED").await;
    assert_eq!(replaced["event"]["q"], "0.50000000");

    let swap = ws_signed(&[
        ("symbol", json!("ETHUSDT")),
        ("side", json!("BUY")),
        ("type", json!("LIMIT")),
        ("timeInForce", json!("GTC")),
        ("quantity", json!("0.2")),
        ("price", json!(price)),
        ("cancelReplaceMode", json!("STOP_ON_FAILURE")),
        ("cancelOrderId", json!(id)),
    ]);
    send_json(
        &mut ws,
        json!({"id": "r", "method": "order.cancelReplace", "params": swap}),
    )
    .await;
    let swapped = next_matching(&mut ws, |v| v["id"] == "r").await;
    assert_eq!(swapped["result"]["cancelResult"], "SUCCESS", "{swapped}");
    let failed = ws_signed(&[
        ("symbol", json!("ETHUSDT")),
        ("side", json!("BUY")),
        ("type", json!("LIMIT")),
        ("timeInForce", json!("GTC")),
        ("quantity", json!("0.2")),
        ("price", json!(price)),
        ("cancelReplaceMode", json!("STOP_ON_FAILURE")),
        ("cancelOrderId", json!(id)),
    ]);
    send_json(
        &mut ws,
        json!({"id": "f", "method": "order.cancelReplace", "params": failed}),
    )
    .await;
    let refused = next_matching(&mut ws, |v| v["id"] == "f").await;
    assert_eq!(refused["error"]["code"], -2022);
    assert_eq!(refused["error"]["data"]["newOrderResult"], "NOT_ATTEMPTED");
    sim.shutdown().await;
}

#[tokio::test]
async fn cancel_restrictions_keep_an_order_of_the_other_status() {
    let sim = start(still_market()).await;
    let rest = Rest::new(&sim);
    let bid = sim.book("ETHUSDT", 1).unwrap().bids[0][0];
    let price = (bid * Decimal::new(95, 2)).round_dp(2);
    let placed = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            &format!(
                "symbol=ETHUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.1&price={price}&newClientOrderId=keep"
            ),
        )
        .await;
    assert_eq!(placed.status, 200, "{}", placed.body);
    let kept = rest
        .signed(
            Method::DELETE,
            "/api/v3/order",
            "symbol=ETHUSDT&origClientOrderId=keep&cancelRestrictions=ONLY_PARTIALLY_FILLED",
        )
        .await;
    assert_eq!(
        (kept.code(), kept.msg()),
        (-2011, "Order was not canceled due to cancel restrictions.")
    );
    assert_eq!(sim.orders_by_client_id("keep")[0].status, "NEW");
    let bad = rest
        .signed(
            Method::DELETE,
            "/api/v3/order",
            "symbol=ETHUSDT&origClientOrderId=keep&cancelRestrictions=SOMETIMES",
        )
        .await;
    assert_eq!(bad.code(), -1100);
    let canceled = rest
        .signed(
            Method::DELETE,
            "/api/v3/order",
            "symbol=ETHUSDT&origClientOrderId=keep&cancelRestrictions=ONLY_NEW",
        )
        .await;
    assert_eq!(canceled.body["status"], "CANCELED", "{}", canceled.body);
    sim.shutdown().await;
}
