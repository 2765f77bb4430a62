//! Self-trade prevention's DECREMENT mode (both orders lose the smaller remaining quantity;
//! whichever has nothing left expires in match) and the prevented matches it records, as
//! `GET /api/v3/myPreventedMatches` and the WebSocket API's `myPreventedMatches` answer them
//! (by match id, weight 2; by order id, weight 20, from a match id on).

use crate::sim_support::*;
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::{json, Value};

fn dec(v: &Value) -> Decimal {
    v.as_str().expect("decimal string").parse().expect("decimal")
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// The weight a signed REST query costs, from the used-weight header before and after it
/// (asked again should a minute end in between).
async fn weight_of(rest: &Rest, query: &str) -> (u64, Answer) {
    loop {
        let before = rest.get("/api/v3/time").await.used_weight().expect("weight header");
        let answer = rest.signed(Method::GET, "/api/v3/myPreventedMatches", query).await;
        let after = answer.used_weight().expect("weight header");
        if after > before {
            return (after - before, answer);
        }
    }
}

#[tokio::test]
async fn decrement_takes_the_smaller_quantity_from_both_and_records_the_match() {
    let sim = start(still_market()).await;
    let rest = Rest::new(&sim);
    let mut user = ws_api_with_user_data(&sim).await;
    let info = rest.get("/api/v3/exchangeInfo?symbol=ETHUSDT").await;
    let modes = &info.body["symbols"][0]["allowedSelfTradePreventionModes"];
    assert!(modes.as_array().unwrap().iter().any(|m| m == "DECREMENT"), "{modes}");

    // The account's own sell of 0.5 rests at the ask, behind the market's quantity there.
    let [ask, synthetic] = sim.book("ETHUSDT", 1).unwrap().asks[0];
    let maker = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            &format!(
                "symbol=ETHUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.5&price={ask}&newClientOrderId=own-ask"
            ),
        )
        .await;
    assert_eq!(maker.status, 200, "{}", maker.body);
    let maker_id = maker.body["orderId"].as_u64().unwrap();

    // A buyer of the market's quantity and 0.2 more meets its own sell for the 0.2: both lose
    // 0.2; the buyer has nothing left and expires in match, the sell goes on with 0.3.
    let taker = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            &format!(
                "symbol=ETHUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity={}&price={ask}&selfTradePreventionMode=DECREMENT",
                synthetic + d("0.2")
            ),
        )
        .await;
    assert_eq!(
        (
            taker.body["status"].as_str(),
            dec(&taker.body["executedQty"]),
            dec(&taker.body["preventedQuantity"]),
            taker.body["selfTradePreventionMode"].as_str()
        ),
        (Some("EXPIRED_IN_MATCH"), synthetic, d("0.2"), Some("DECREMENT")),
        "{}",
        taker.body
    );
    let first_match = taker.body["preventedMatchId"].as_u64().expect("preventedMatchId");
    let own = rest
        .signed(Method::GET, "/api/v3/order", "symbol=ETHUSDT&origClientOrderId=own-ask")
        .await;
    assert_eq!(
        (
            own.body["status"].as_str(),
            dec(&own.body["origQty"]),
            dec(&own.body["preventedQuantity"])
        ),
        (Some("NEW"), d("0.5"), d("0.2")),
        "{}",
        own.body
    );
    assert_eq!(
        sim.book("ETHUSDT", 1).unwrap().asks[0],
        [ask, d("0.3")],
        "the sell shows what is left"
    );
    assert_eq!(sim.balance("ETH").1, d("0.3"), "only what is left stays locked");
    let report = next_matching(&mut user, |v| {
        v["event"]["e"] == "executionReport" && v["event"]["i"] == maker_id && v["event"]["x"] == "TRADE_PREVENTION"
    })
    .await;
    let event = &report["event"];
    assert_eq!(
        (
            event["X"].as_str(),
            dec(&event["A"]),
            dec(&event["B"]),
            event["v"].as_u64()
        ),
        (Some("NEW"), d("0.2"), d("0.2"), Some(first_match)),
        "{event}"
    );

    // A buyer of 0.5 meets the sell's 0.3: the sell expires in match, the buyer rests with 0.2.
    let second = rest
        .signed(
            Method::POST,
            "/api/v3/order",
            &format!("symbol=ETHUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.5&price={ask}&selfTradePreventionMode=DECREMENT"),
        )
        .await;
    assert_eq!(
        (second.body["status"].as_str(), dec(&second.body["preventedQuantity"])),
        (Some("NEW"), d("0.3")),
        "{}",
        second.body
    );
    let second_id = second.body["orderId"].as_u64().unwrap();
    let own = rest
        .signed(Method::GET, "/api/v3/order", "symbol=ETHUSDT&origClientOrderId=own-ask")
        .await;
    assert_eq!(
        (own.body["status"].as_str(), dec(&own.body["preventedQuantity"])),
        (Some("EXPIRED_IN_MATCH"), d("0.5")),
        "{}",
        own.body
    );
    assert_eq!(sim.book("ETHUSDT", 1).unwrap().bids[0], [ask, d("0.2")]);
    assert_eq!(sim.balance("ETH").1, Decimal::ZERO);

    // The sell's prevented matches, by order id (weight 20), then one by its id (weight 2).
    let (weight, by_order) = weight_of(&rest, &format!("symbol=ETHUSDT&orderId={maker_id}")).await;
    assert_eq!(weight, 20);
    let rows = by_order.body.as_array().expect("rows").clone();
    assert_eq!(rows.len(), 2, "{}", by_order.body);
    let second_match = rows[1]["preventedMatchId"].as_u64().unwrap();
    assert!(second_match > first_match);
    let expected = [
        (first_match, taker.body["orderId"].as_u64().unwrap(), d("0.2")),
        (second_match, second_id, d("0.3")),
    ];
    for (row, (id, taker_id, qty)) in rows.iter().zip(expected) {
        assert_eq!(
            (
                row["preventedMatchId"].as_u64(),
                row["takerOrderId"].as_u64(),
                row["makerOrderId"].as_u64(),
                row["selfTradePreventionMode"].as_str(),
                dec(&row["price"]),
                dec(&row["takerPreventedQuantity"]),
                dec(&row["makerPreventedQuantity"]),
                row["symbol"].as_str(),
                row["makerSymbol"].as_str(),
                row["tradeGroupId"].as_i64(),
            ),
            (
                Some(id),
                Some(taker_id),
                Some(maker_id),
                Some("DECREMENT"),
                ask,
                qty,
                qty,
                Some("ETHUSDT"),
                Some("ETHUSDT"),
                Some(-1)
            ),
            "{row}"
        );
        assert!(row["transactTime"].as_i64().is_some());
    }
    let (weight, one) = weight_of(&rest, &format!("symbol=ETHUSDT&preventedMatchId={second_match}")).await;
    assert_eq!(weight, 2);
    assert_eq!(one.body.as_array().map(Vec::len), Some(1));
    assert_eq!(one.body[0], rows[1]);
    let from = rest
        .signed(
            Method::GET,
            "/api/v3/myPreventedMatches",
            &format!("symbol=ETHUSDT&orderId={maker_id}&fromPreventedMatchId={second_match}&limit=5"),
        )
        .await;
    assert_eq!(from.body, json!([rows[1]]));
    for bad in [
        "symbol=ETHUSDT".to_string(),
        format!("symbol=ETHUSDT&preventedMatchId={first_match}&fromPreventedMatchId=1"),
        format!("symbol=ETHUSDT&preventedMatchId={first_match}&orderId={maker_id}"),
    ] {
        let refused = rest.signed(Method::GET, "/api/v3/myPreventedMatches", &bad).await;
        assert_eq!(refused.code(), -1128, "{bad}: {}", refused.body);
    }

    // The WebSocket API answers the same rows, reporting the weight of the query.
    let mut ws = ws_connect(&sim.ws_api_url()).await;
    let params = ws_signed(&[("symbol", json!("ETHUSDT")), ("orderId", json!(maker_id))]);
    send_json(
        &mut ws,
        json!({"id": "pm", "method": "myPreventedMatches", "params": params}),
    )
    .await;
    let answer = next_matching(&mut ws, |v| v["id"] == "pm").await;
    assert_eq!(answer["result"], json!(rows), "{answer}");
    assert!(
        answer["rateLimits"][0]["count"].as_u64().is_some_and(|c| c >= 20),
        "{answer}"
    );
    sim.shutdown().await;
}
