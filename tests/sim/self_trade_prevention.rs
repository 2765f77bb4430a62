//! Self-trade prevention at the simulator: the taker order's mode decides whether it trades with
//! the account's own resting order, or which of the two expires (`EXPIRED_IN_MATCH`, with the
//! prevented match and quantity as documented).

use crate::sim_support::*;
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::Value;

fn dec(v: &Value) -> Decimal {
    v.as_str().expect("decimal string").parse().expect("decimal")
}

#[tokio::test]
async fn the_taker_mode_expires_the_taker_or_the_maker() {
    let sim = start(still_market()).await;
    let rest = Rest::new(&sim);
    let info = rest.get("/api/v3/exchangeInfo?symbol=ETHUSDT").await;
    let modes = &info.body["symbols"][0]["allowedSelfTradePreventionModes"];
    assert!(modes.as_array().unwrap().iter().any(|m| m == "EXPIRE_BOTH"), "{modes}");
    assert_eq!(info.body["symbols"][0]["defaultSelfTradePreventionMode"], "NONE");

    let [ask, synthetic] = sim.book("ETHUSDT", 1).unwrap().asks[0];
    let maker = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            &format!(
                "symbol=ETHUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.1&price={ask}&newClientOrderId=mine"
            ),
        )
        .await;
    assert_eq!(maker.status, 200, "{}", maker.body);

    let refused = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            &format!("symbol=ETHUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.1&price={ask}&selfTradePreventionMode=TRANSFER"),
        )
        .await;
    assert_eq!(
        (refused.code(), refused.msg()),
        (
            -1013,
            "This symbol does not allow the specified self-trade prevention mode."
        )
    );

    // The buyer takes the market's quantity at the ask, then meets its own sell: it expires.
    let qty = synthetic + Decimal::new(2, 1);
    let taker = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            &format!("symbol=ETHUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity={qty}&price={ask}&selfTradePreventionMode=EXPIRE_TAKER"),
        )
        .await;
    assert_eq!(taker.status, 200, "{}", taker.body);
    assert_eq!(
        (
            taker.body["status"].as_str(),
            dec(&taker.body["executedQty"]),
            dec(&taker.body["preventedQuantity"]),
            taker.body["selfTradePreventionMode"].as_str()
        ),
        (
            Some("EXPIRED_IN_MATCH"),
            synthetic,
            Decimal::new(2, 1),
            Some("EXPIRE_TAKER")
        )
    );
    assert!(taker.body["preventedMatchId"].as_u64().is_some());
    let mine = rest
        .signed(Method::GET, "/api/v3/order", "symbol=ETHUSDT&origClientOrderId=mine")
        .await;
    assert_eq!(
        (mine.body["status"].as_str(), dec(&mine.body["executedQty"])),
        (Some("NEW"), Decimal::ZERO)
    );

    // Now the resting sell expires and the buyer rests in its place.
    let second = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            &format!("symbol=ETHUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.05&price={ask}&selfTradePreventionMode=EXPIRE_MAKER"),
        )
        .await;
    assert_eq!(second.body["status"], "NEW", "{}", second.body);
    let mine = rest
        .signed(Method::GET, "/api/v3/order", "symbol=ETHUSDT&origClientOrderId=mine")
        .await;
    assert_eq!(
        (mine.body["status"].as_str(), dec(&mine.body["preventedQuantity"])),
        (Some("EXPIRED_IN_MATCH"), Decimal::new(1, 1))
    );
    assert_eq!(sim.book("ETHUSDT", 1).unwrap().bids[0], [ask, Decimal::new(5, 2)]);
    assert_eq!(sim.balance("ETH").1, Decimal::ZERO, "the expired sell released its ETH");

    // Without a mode (NONE) the account trades with itself.
    let seller = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            &format!("symbol=ETHUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.05&price={ask}"),
        )
        .await;
    assert_eq!(seller.body["status"], "FILLED", "{}", seller.body);
    sim.shutdown().await;
}

#[tokio::test]
async fn an_oco_order_expired_in_match_ends_its_list() {
    let sim = start(still_market()).await;
    let rest = Rest::new(&sim);
    // A sale prints the last trade at the bid, under the ask the limit-maker will rest at.
    let sold = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            "symbol=ETHUSDT&side=SELL&type=MARKET&quantity=0.01",
        )
        .await;
    let last = dec(&sold.body["fills"][0]["price"]);
    let [ask, synthetic] = sim.book("ETHUSDT", 1).unwrap().asks[0];
    let stop = (last * Decimal::new(98, 2)).round_dp(2);
    let oco = rest
        .signed(
            Method::POST,
            "/api/v3/orderList/oco",
            &format!(
                "symbol=ETHUSDT&side=SELL&quantity=0.1&listClientOrderId=stp-list\
                 &aboveType=LIMIT_MAKER&abovePrice={ask}&aboveClientOrderId=stp-tp\
                 &belowType=STOP_LOSS&belowStopPrice={stop}&belowClientOrderId=stp-sl"
            ),
        )
        .await;
    assert_eq!(oco.status, 200, "{}", oco.body);
    let qty = synthetic + Decimal::new(1, 1);
    let taker = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            &format!("symbol=ETHUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity={qty}&price={ask}&selfTradePreventionMode=EXPIRE_MAKER"),
        )
        .await;
    assert_eq!(
        (taker.body["status"].as_str(), dec(&taker.body["executedQty"])),
        (Some("PARTIALLY_FILLED"), synthetic),
        "{}",
        taker.body
    );
    let status = |cid: &'static str| {
        let sim = &sim;
        async move { sim.orders_by_client_id(cid)[0].status.clone() }
    };
    assert_eq!(status("stp-tp").await, "EXPIRED_IN_MATCH");
    assert_eq!(status("stp-sl").await, "EXPIRED");
    let list = rest
        .signed(Method::GET, "/api/v3/orderList", "origClientOrderId=stp-list")
        .await;
    assert_eq!(list.body["listOrderStatus"], "ALL_DONE", "{}", list.body);
    assert_eq!(sim.balance("ETH").1, Decimal::ZERO);
    sim.shutdown().await;
}
