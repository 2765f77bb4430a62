//! Order lists at the simulator (OCO, OTO, OTOCO) over REST and the WebSocket API: the documented
//! answers, one order working or filling ending the other, pending orders placed once the working
//! order filled, one reservation per OCO pair, the unfilled-order count, `listStatus` events, and
//! lists refused whole with the exchange's codes.

use crate::sim_support::*;
use reqwest::Method;
use runner::sim::SimHandle;
use rust_decimal::Decimal;
use serde_json::{json, Value};

fn dec(v: &Value) -> Decimal {
    v.as_str().expect("decimal string").parse().expect("decimal")
}

/// `last × percent / 100`, on ETHUSDT's 0.01 tick.
fn pct(last: Decimal, percent: i64) -> Decimal {
    (last * Decimal::new(percent, 2)).round_dp(2)
}

/// Buys a little ETH at market: the trade it prints is the last price the lists are checked against.
async fn last_trade(rest: &Rest) -> Decimal {
    let bought = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            "symbol=ETHUSDT&side=BUY&type=MARKET&quantity=0.01",
        )
        .await;
    dec(&bought.body["fills"][0]["price"])
}

/// Sells a little ETH at market, printing a trade at the bid.
async fn print_sell(rest: &Rest) {
    let sold = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            "symbol=ETHUSDT&side=SELL&type=MARKET&quantity=0.01",
        )
        .await;
    assert_eq!(sold.status, 200, "{}", sold.body);
}

async fn status_of(sim: &SimHandle, client_id: &str) -> String {
    sim.orders_by_client_id(client_id)
        .last()
        .map(|o| o.status.clone())
        .unwrap_or_default()
}

async fn open_lists(rest: &Rest) -> Vec<Value> {
    let open = rest.signed(Method::GET, "/api/v3/openOrderList", "").await;
    open.body.as_array().cloned().expect("an array")
}

fn sell_oco(last: Decimal, list: &str) -> String {
    format!(
        "symbol=ETHUSDT&side=SELL&quantity=0.5&listClientOrderId={list}\
         &aboveType=LIMIT_MAKER&abovePrice={}&aboveClientOrderId={list}-tp\
         &belowType=STOP_LOSS_LIMIT&belowStopPrice={}&belowPrice={}&belowTimeInForce=GTC&belowClientOrderId={list}-sl\
         &newOrderRespType=RESULT",
        pct(last, 102),
        pct(last, 98),
        pct(last, 97)
    )
}

#[tokio::test]
async fn an_oco_reserves_once_and_its_filled_limit_maker_expires_the_stop() {
    let sim = start(still_market()).await;
    let rest = Rest::new(&sim);
    let last = last_trade(&rest).await;

    let placed = rest
        .signed(Method::POST, "/api/v3/orderList/oco", &sell_oco(last, "oco-1"))
        .await;
    assert_eq!(placed.status, 200, "{}", placed.body);
    let body = &placed.body;
    assert_eq!(
        (
            body["contingencyType"].as_str(),
            body["listStatusType"].as_str(),
            body["listOrderStatus"].as_str(),
            body["listClientOrderId"].as_str()
        ),
        (Some("OCO"), Some("EXEC_STARTED"), Some("EXECUTING"), Some("oco-1"))
    );
    let list_id = body["orderListId"].as_i64().unwrap();
    // The stop-loss order is listed first; it is not working yet.
    assert_eq!(body["orders"][0]["clientOrderId"], "oco-1-sl");
    let reports = body["orderReports"].as_array().unwrap();
    assert_eq!(reports.len(), 2);
    assert_eq!(
        (reports[0]["type"].as_str(), reports[0]["workingTime"].as_i64()),
        (Some("STOP_LOSS_LIMIT"), Some(-1))
    );
    assert_eq!(
        (reports[1]["type"].as_str(), reports[1]["status"].as_str()),
        (Some("LIMIT_MAKER"), Some("NEW"))
    );
    assert!(reports.iter().all(|r| r["orderListId"].as_i64() == Some(list_id)));
    // A list counts each of its orders; the market order before it filled and counts no more.
    assert_eq!(placed.header("x-mbx-order-count-10s").as_deref(), Some("2"));
    assert_eq!(sim.balance("ETH").1, Decimal::new(5, 1), "one reservation for the pair");

    let again = rest
        .signed(Method::POST, "/api/v3/orderList/oco", &sell_oco(last, "oco-1"))
        .await;
    assert_eq!((again.code(), again.msg()), (-2010, "Duplicate order sent."));
    let queried = rest
        .signed(Method::GET, "/api/v3/orderList", "origClientOrderId=oco-1")
        .await;
    assert_eq!(queried.body["orderListId"].as_i64(), Some(list_id));
    assert_eq!(open_lists(&rest).await.len(), 1);

    // The market rises through the limit-maker: it fills, and the stop-loss expires.
    assert!(sim.set_price("ETHUSDT", pct(last, 105)));
    sim.step_market();
    eventually("the limit-maker fills", || async {
        (status_of(&sim, "oco-1-tp").await == "FILLED").then_some(())
    })
    .await;
    assert_eq!(status_of(&sim, "oco-1-sl").await, "EXPIRED");
    let done = rest
        .signed(Method::GET, "/api/v3/orderList", &format!("orderListId={list_id}"))
        .await;
    assert_eq!(
        (
            done.body["listStatusType"].as_str(),
            done.body["listOrderStatus"].as_str()
        ),
        (Some("ALL_DONE"), Some("ALL_DONE"))
    );
    assert!(open_lists(&rest).await.is_empty());
    assert_eq!(sim.balance("ETH").1, Decimal::ZERO);
    let leg = rest
        .signed(
            Method::GET,
            "/api/v3/order",
            "symbol=ETHUSDT&origClientOrderId=oco-1-sl",
        )
        .await;
    assert_eq!(leg.body["orderListId"].as_i64(), Some(list_id));
    let all = rest.signed(Method::GET, "/api/v3/allOrderList", "").await;
    assert_eq!(all.body[0]["orderListId"].as_i64(), Some(list_id));
    sim.shutdown().await;
}

#[tokio::test]
async fn wrong_sided_or_unaffordable_lists_are_refused_whole() {
    let sim = start(still_market()).await;
    let rest = Rest::new(&sim);
    let last = last_trade(&rest).await;
    let cases = [
        // A stop-loss above in a sell OCO.
        (
            format!(
                "symbol=ETHUSDT&side=SELL&quantity=0.5&aboveType=STOP_LOSS&aboveStopPrice={}\
                 &belowType=STOP_LOSS&belowStopPrice={}",
                pct(last, 102),
                pct(last, 98)
            ),
            -1197,
            "A stop loss order in a sell OCO must be below.",
        ),
        // A take-profit below in a buy OCO is fine, a stop-loss below is not.
        (
            format!(
                "symbol=ETHUSDT&side=BUY&quantity=0.5&aboveType=TAKE_PROFIT&aboveStopPrice={}\
                 &belowType=STOP_LOSS&belowStopPrice={}",
                pct(last, 102),
                pct(last, 98)
            ),
            -1196,
            "A stop loss order in a buy OCO must be above.",
        ),
        // The limit-maker under the last price in a sell OCO.
        (
            format!(
                "symbol=ETHUSDT&side=SELL&quantity=0.5&aboveType=LIMIT_MAKER&abovePrice={}\
                 &belowType=STOP_LOSS&belowStopPrice={}",
                pct(last, 99),
                pct(last, 98)
            ),
            -2010,
            "The relationship of the prices for the orders is not correct.",
        ),
        // More than the account holds.
        (
            format!(
                "symbol=ETHUSDT&side=SELL&quantity=500&aboveType=LIMIT_MAKER&abovePrice={}\
                 &belowType=STOP_LOSS&belowStopPrice={}",
                pct(last, 102),
                pct(last, 98)
            ),
            -2010,
            "Account has insufficient balance for requested action.",
        ),
        (
            format!(
                "symbol=ETHUSDT&side=SELL&quantity=0.5&aboveType=LIMIT_MAKER&abovePrice={}\
                 &belowType=STOP_LOSS_LIMIT&belowStopPrice={}&belowPrice={}",
                pct(last, 102),
                pct(last, 98),
                pct(last, 97)
            ),
            -1102,
            "Mandatory parameter 'belowTimeInForce' was not sent, was empty/null, or malformed.",
        ),
    ];
    for (params, code, msg) in cases {
        let refused = rest.signed(Method::POST, "/api/v3/orderList/oco", &params).await;
        assert_eq!((refused.code(), refused.msg()), (code, msg), "{params}");
    }
    let open = rest.signed(Method::GET, "/api/v3/openOrders", "symbol=ETHUSDT").await;
    assert_eq!(open.body, json!([]), "nothing half-placed");
    assert!(open_lists(&rest).await.is_empty());
    assert_eq!(sim.balance("ETH").1, Decimal::ZERO);
    assert_eq!(sim.stats().orders_placed, 1, "only the market order counted");
    sim.shutdown().await;
}

#[tokio::test]
async fn canceling_one_order_of_a_list_cancels_the_list() {
    let sim = start(still_market()).await;
    let rest = Rest::new(&sim);
    let last = last_trade(&rest).await;
    let placed = rest
        .signed(Method::POST, "/api/v3/orderList/oco", &sell_oco(last, "c-1"))
        .await;
    assert_eq!(placed.status, 200, "{}", placed.body);
    let canceled = rest
        .signed(
            Method::DELETE,
            "/api/v3/order",
            "symbol=ETHUSDT&origClientOrderId=c-1-tp",
        )
        .await;
    assert_eq!(canceled.body["status"], "CANCELED", "{}", canceled.body);
    assert_eq!(status_of(&sim, "c-1-sl").await, "CANCELED");
    assert!(open_lists(&rest).await.is_empty());

    // Every open order of the symbol: a list is answered as a list.
    let placed = rest
        .signed(Method::POST, "/api/v3/orderList/oco", &sell_oco(last, "c-2"))
        .await;
    assert_eq!(placed.status, 200, "{}", placed.body);
    let all = rest
        .signed(Method::DELETE, "/api/v3/openOrders", "symbol=ETHUSDT")
        .await;
    let rows = all.body.as_array().expect("an array");
    assert_eq!(rows.len(), 1, "{}", all.body);
    assert_eq!(rows[0]["listOrderStatus"], "ALL_DONE");
    assert_eq!(rows[0]["orderReports"].as_array().map(Vec::len), Some(2));

    let placed = rest
        .signed(Method::POST, "/api/v3/orderList/oco", &sell_oco(last, "c-3"))
        .await;
    let list_id = placed.body["orderListId"].as_i64().unwrap();
    let by_list = rest
        .signed(
            Method::DELETE,
            "/api/v3/orderList",
            &format!("symbol=ETHUSDT&orderListId={list_id}&newClientOrderId=bye"),
        )
        .await;
    assert_eq!(by_list.body["listStatusType"], "ALL_DONE", "{}", by_list.body);
    let reports = by_list.body["orderReports"].as_array().unwrap();
    assert!(reports
        .iter()
        .all(|r| r["status"] == "CANCELED" && r["clientOrderId"] == "bye"));
    let twice = rest
        .signed(
            Method::DELETE,
            "/api/v3/orderList",
            &format!("symbol=ETHUSDT&orderListId={list_id}"),
        )
        .await;
    assert_eq!(twice.code(), -2011);
    assert_eq!(sim.balance("ETH").1, Decimal::ZERO);
    sim.shutdown().await;
}

#[tokio::test]
async fn an_otoco_places_its_pair_when_the_working_order_fills_and_the_stop_ends_it() {
    let sim = start(still_market()).await;
    let rest = Rest::new(&sim);
    let last = last_trade(&rest).await;
    let bid = sim.book("ETHUSDT", 1).unwrap().bids[0][0];
    let working_price = pct(bid, 99);
    let params = format!(
        "symbol=ETHUSDT&listClientOrderId=oc\
         &workingType=LIMIT&workingSide=BUY&workingPrice={working_price}&workingQuantity=0.5\
         &workingTimeInForce=GTC&workingClientOrderId=oc-w\
         &pendingSide=SELL&pendingQuantity=0.5\
         &pendingAboveType=LIMIT_MAKER&pendingAbovePrice={}&pendingAboveClientOrderId=oc-tp\
         &pendingBelowType=STOP_LOSS&pendingBelowStopPrice={}&pendingBelowClientOrderId=oc-sl",
        pct(last, 110),
        pct(last, 90)
    );
    let placed = rest.signed(Method::POST, "/api/v3/orderList/otoco", &params).await;
    assert_eq!(placed.status, 200, "{}", placed.body);
    assert_eq!(placed.body["contingencyType"], "OTO");
    let reports = placed.body["orderReports"].as_array().unwrap();
    let statuses: Vec<&str> = reports.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["NEW", "PENDING_NEW", "PENDING_NEW"]);
    assert_eq!(placed.header("x-mbx-order-count-10s").as_deref(), Some("3"));
    assert_eq!(
        sim.balance("ETH").1,
        Decimal::ZERO,
        "the pending sells reserve nothing yet"
    );

    // The market falls to the working buy: it fills, the pair goes on the book.
    assert!(sim.set_price("ETHUSDT", pct(working_price, 97)));
    sim.step_market();
    eventually("the working order fills", || async {
        (status_of(&sim, "oc-w").await == "FILLED").then_some(())
    })
    .await;
    assert_eq!(status_of(&sim, "oc-tp").await, "NEW");
    assert_eq!(status_of(&sim, "oc-sl").await, "NEW");
    assert_eq!(sim.balance("ETH").1, Decimal::new(5, 1));

    // A trade under the stop: the stop-loss sells at market, the limit-maker expires.
    assert!(sim.set_price("ETHUSDT", pct(last, 85)));
    sim.step_market();
    print_sell(&rest).await;
    eventually("the stop-loss fills", || async {
        (status_of(&sim, "oc-sl").await == "FILLED").then_some(())
    })
    .await;
    assert_eq!(status_of(&sim, "oc-tp").await, "EXPIRED");
    assert!(open_lists(&rest).await.is_empty());
    assert_eq!(sim.balance("ETH").1, Decimal::ZERO);
    sim.shutdown().await;
}

/// The pending order of the OTO going on the book (its second report, `NEW`).
fn pending_placed(v: &Value) -> bool {
    v["event"]["e"] == "executionReport" && v["event"]["c"] == "ws-oto-p" && v["event"]["X"] == "NEW"
}

fn find(frames: &[Value], pred: impl Fn(&Value) -> bool) -> Option<&Value> {
    frames.iter().find(|v| pred(v))
}

/// Frames from the socket until `done` holds for all gathered so far.
async fn gather(ws: &mut Ws, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut frames = Vec::new();
    while !done(&frames) {
        frames.push(next_json(ws).await.expect("socket stays open"));
    }
    frames
}

#[tokio::test]
async fn websocket_api_oto_reports_every_order_and_the_list() {
    let sim = start(still_market()).await;
    let mut ws = ws_api_with_user_data(&sim).await;
    let ask = sim.book("ETHUSDT", 1).unwrap().asks[0][0];
    // The working buy takes the best ask at once; the pending sell then rests above.
    let oto = ws_signed(&[
        ("symbol", json!("ETHUSDT")),
        ("listClientOrderId", json!("ws-oto")),
        ("workingType", json!("LIMIT")),
        ("workingSide", json!("BUY")),
        ("workingPrice", json!(ask.to_string())),
        ("workingQuantity", json!("0.01")),
        ("workingTimeInForce", json!("IOC")),
        ("pendingType", json!("LIMIT_MAKER")),
        ("pendingSide", json!("SELL")),
        ("pendingPrice", json!(pct(ask, 105).to_string())),
        ("pendingQuantity", json!("0.01")),
        ("pendingClientOrderId", json!("ws-oto-p")),
    ]);
    send_json(
        &mut ws,
        json!({"id": "oto", "method": "orderList.place.oto", "params": oto}),
    )
    .await;
    // Events and the answer come on one socket in either order: gather until all are in.
    let frames = gather(&mut ws, |seen| {
        find(seen, |v| v["id"] == "oto").is_some()
            && find(seen, |v| v["event"]["e"] == "listStatus").is_some()
            && find(seen, pending_placed).is_some()
    })
    .await;
    let placed = find(&frames, |v| v["id"] == "oto").unwrap();
    assert_eq!(placed["status"], 200, "{placed}");
    let list_id = placed["result"]["orderListId"].as_i64().unwrap();
    let event = &find(&frames, |v| v["event"]["e"] == "listStatus").unwrap()["event"];
    assert_eq!(
        (
            event["g"].as_i64(),
            event["c"].as_str(),
            event["l"].as_str(),
            event["L"].as_str()
        ),
        (Some(list_id), Some("OTO"), Some("EXEC_STARTED"), Some("EXECUTING"))
    );
    assert_eq!(event["O"].as_array().map(Vec::len), Some(2));
    let waiting = find(&frames, |v| {
        v["event"]["c"] == "ws-oto-p" && v["event"]["X"] == "PENDING_NEW"
    })
    .unwrap();
    assert_eq!(waiting["event"]["g"].as_i64(), Some(list_id));
    assert_eq!(
        find(&frames, pending_placed).unwrap()["event"]["g"].as_i64(),
        Some(list_id)
    );

    let status = ws_signed(&[("origClientOrderId", json!("ws-oto"))]);
    send_json(
        &mut ws,
        json!({"id": "st", "method": "orderList.status", "params": status}),
    )
    .await;
    let queried = next_matching(&mut ws, |v| v["id"] == "st").await;
    assert_eq!(queried["result"]["listOrderStatus"], "EXECUTING", "{queried}");

    let cancel = ws_signed(&[("symbol", json!("ETHUSDT")), ("orderListId", json!(list_id))]);
    send_json(
        &mut ws,
        json!({"id": "c", "method": "orderList.cancel", "params": cancel}),
    )
    .await;
    let all_done = |v: &Value| v["event"]["e"] == "listStatus" && v["event"]["l"] == "ALL_DONE";
    let frames = gather(&mut ws, |seen| {
        find(seen, |v| v["id"] == "c").is_some() && find(seen, all_done).is_some()
    })
    .await;
    let canceled = find(&frames, |v| v["id"] == "c").unwrap();
    assert_eq!(canceled["result"]["listOrderStatus"], "ALL_DONE", "{canceled}");
    assert_eq!(find(&frames, all_done).unwrap()["event"]["L"], "ALL_DONE");
    let leg_canceled = |v: &Value| v["event"]["X"] == "CANCELED" && v["event"]["g"].as_i64() == Some(list_id);
    assert!(find(&frames, leg_canceled).is_some());
    sim.shutdown().await;
}
