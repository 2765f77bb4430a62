//! Several accounts on one simulator: each API key is an account with its own balances, open
//! orders, order-count limits and user-data stream, while request weight is counted per client IP.

use std::time::Duration;

use runner::ledger::limits::{IntervalUnit, PoolKind, RateLimit};
use runner::sim::{hmac_hex, paper_credentials, SimConfig};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::sim_support::*;

/// A signed REST request of paper account `account`.
async fn signed_as(rest: &Rest, account: u16, method: reqwest::Method, path: &str, params: &str) -> Answer {
    let (key, secret) = paper_credentials(account);
    let payload = format!("{params}&timestamp={}", now_ms());
    let query = format!("{payload}&signature={}", hmac_hex(&secret, &payload));
    rest.send(method, &format!("{path}?{query}"), Some(&key), None).await
}

fn two_accounts(orders_per_10s: u64) -> SimConfig {
    SimConfig {
        accounts: 2,
        limits: vec![
            RateLimit::new(PoolKind::RequestWeight, IntervalUnit::Minute, 1, 6000),
            RateLimit::new(PoolKind::Orders, IntervalUnit::Second, 10, orders_per_10s),
        ],
        ..still_market()
    }
}

/// A buy of 0.001 BTC resting 10 % under the bid, and its price.
fn far_buy(sim: &runner::sim::SimHandle) -> (String, Decimal) {
    let bid = sim.book("BTCUSDT", 1).unwrap().bids[0][0];
    let price = (bid * Decimal::new(90, 2)).round_dp(2);
    let order = format!("symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price={price}");
    (order, price)
}

#[tokio::test]
async fn each_key_is_an_account_with_its_own_balances_orders_and_order_count() {
    let sim = start(two_accounts(2)).await;
    let rest = Rest::new(&sim);
    let (far_buy, price) = far_buy(&sim);
    let far_buy = far_buy.as_str();
    for _ in 0..2 {
        let placed = signed_as(&rest, 1, reqwest::Method::POST, "/api/v3/order", far_buy).await;
        assert_eq!(placed.status, 200, "{:?}", placed.body);
    }
    let refused = signed_as(&rest, 1, reqwest::Method::POST, "/api/v3/order", far_buy).await;
    assert_eq!(
        (refused.status, refused.code()),
        (429, -1015),
        "account 1's own order limit"
    );
    let first = signed_as(&rest, 0, reqwest::Method::POST, "/api/v3/order", far_buy).await;
    assert_eq!(first.status, 200, "account 0 counts its own orders: {:?}", first.body);
    assert_eq!(first.header("x-mbx-order-count-10s").as_deref(), Some("1"));

    assert_eq!((sim.open_order_count(0), sim.open_order_count(1)), (1, 2));
    let open = signed_as(&rest, 0, reqwest::Method::GET, "/api/v3/openOrders", "symbol=BTCUSDT").await;
    assert_eq!(open.body.as_array().map(Vec::len), Some(1), "only its own open orders");
    // Each buy locks its price × 0.001 USDT of its own account.
    let each = price * Decimal::new(1, 3);
    let locked = |account| sim.balance_of(account, "USDT").1;
    assert_eq!((locked(0), locked(1)), (each, each * Decimal::TWO));
    let account = signed_as(
        &rest,
        1,
        reqwest::Method::GET,
        "/api/v3/account",
        "omitZeroBalances=true",
    )
    .await;
    let usdt = account.body["balances"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["asset"] == "USDT"))
        .cloned()
        .unwrap_or(Value::Null);
    let shown: Decimal = usdt["locked"].as_str().unwrap_or("0").parse().unwrap();
    assert_eq!(shown, each * Decimal::TWO, "{usdt}");

    // Another account's order cannot be seen or cancelled.
    let id = first.body["orderId"].as_u64().unwrap();
    let foreign = signed_as(
        &rest,
        1,
        reqwest::Method::DELETE,
        "/api/v3/order",
        &format!("symbol=BTCUSDT&orderId={id}"),
    )
    .await;
    assert_eq!(foreign.code(), -2011, "{:?}", foreign.body);
    // Weight is the IP's, whichever account sends: both accounts' requests add up in one count.
    let weight = sim
        .stats()
        .pools
        .into_iter()
        .filter(|p| p.kind == PoolKind::RequestWeight)
        .map(|p| p.current)
        .collect::<Vec<_>>();
    assert_eq!(weight.len(), 1, "one per-IP weight pool: {weight:?}");
    assert!(weight[0] > 0);
    let order_pools = sim
        .stats()
        .pools
        .into_iter()
        .filter(|p| p.kind == PoolKind::Orders)
        .count();
    assert_eq!(order_pools, 2, "one order pool per account");

    let unknown = rest
        .send(
            reqwest::Method::GET,
            "/api/v3/account?timestamp=1&signature=00",
            Some(&paper_credentials(2).0),
            None,
        )
        .await;
    assert_eq!(unknown.code(), -2015, "a key beyond the configured accounts is unknown");
}

#[tokio::test]
async fn each_accounts_user_data_stream_carries_its_own_orders_only() {
    let sim = start(two_accounts(100)).await;
    let (far_buy, _) = far_buy(&sim);
    let far_buy = far_buy.as_str();
    let mut streams = Vec::new();
    for account in 0..2u16 {
        let mut ws = ws_connect(&sim.ws_api_url()).await;
        let (key, secret) = paper_credentials(account);
        let timestamp = now_ms();
        let payload = format!("apiKey={key}&timestamp={timestamp}");
        let request = json!({
            "id": 1,
            "method": "userDataStream.subscribe.signature",
            "params": {"apiKey": key, "timestamp": timestamp, "signature": hmac_hex(&secret, &payload)},
        });
        send_json(&mut ws, request).await;
        let answer = next_matching(&mut ws, |v| v["id"] == 1).await;
        assert_eq!(answer["status"], 200, "{answer}");
        streams.push(ws);
    }
    let rest = Rest::new(&sim);
    let placed = signed_as(&rest, 1, reqwest::Method::POST, "/api/v3/order", far_buy).await;
    assert_eq!(placed.status, 200);
    let report = next_matching(&mut streams[1], |v| v["event"]["e"] == "executionReport").await;
    assert_eq!(report["event"]["i"], placed.body["orderId"]);
    let mine = signed_as(&rest, 0, reqwest::Method::POST, "/api/v3/order", far_buy).await;
    assert_eq!(mine.status, 200);
    // Account 0's first report is of its own order, never of account 1's.
    let report = next_matching(&mut streams[0], |v| v["event"]["e"] == "executionReport").await;
    assert_eq!(report["event"]["i"], mine.body["orderId"]);
    let quiet = tokio::time::timeout(
        Duration::from_millis(300),
        next_matching(&mut streams[1], |v| v["event"]["e"] == "executionReport"),
    )
    .await;
    assert!(
        quiet.is_err(),
        "account 1 hears nothing of account 0's order: {quiet:?}"
    );
}
