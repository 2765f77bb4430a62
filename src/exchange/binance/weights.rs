//! Request cost of each Binance spot endpoint.
//!
//! One table serves REST and the WebSocket API (the exchange charges both the
//! same). An endpoint missing from it is refused, never sent unthrottled. Where a
//! parameter that decides the weight is malformed, the highest weight of that
//! endpoint is charged: the exchange may still charge a request it rejects.

use std::borrow::Cow;

use crate::ledger::Cost;

use super::rate_limits;

/// A request whose weight is not known; it must not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no known request weight for {0}; refusing to send it unthrottled")]
pub struct UnknownEndpoint(pub String);

/// How the weight of an endpoint is worked out.
#[derive(Debug, Clone, Copy)]
enum Rule {
    Fixed(u32),
    /// `depth` by `limit` (default 100).
    Depth,
    /// `ticker/24hr` by `symbol` / `symbols` count.
    Ticker24h,
    /// `ticker/price`, `ticker/bookTicker`: one symbol 2, otherwise 4.
    TickerLight,
    /// Rolling-window `ticker`: 4 per symbol, at most 200.
    TickerRolling,
    /// `openOrders`: with a symbol 6, without 80.
    OpenOrders,
    /// `myTrades`: 20, or 5 with `orderId`.
    MyTrades,
    /// `order/test`: 1, or 20 with `computeCommissionRates=true`.
    OrderTest,
}

struct Endpoint {
    rest: Option<(&'static str, &'static str)>,
    ws: &'static [&'static str],
    rule: Rule,
    /// Added to the unfilled order count (ORDERS pools).
    orders: u32,
}

const fn rest(method: &'static str, path: &'static str, ws: &'static [&'static str], rule: Rule) -> Endpoint {
    Endpoint {
        rest: Some((method, path)),
        ws,
        rule,
        orders: 0,
    }
}

const fn placing(method: &'static str, path: &'static str, ws: &'static [&'static str], orders: u32) -> Endpoint {
    Endpoint {
        rest: Some((method, path)),
        ws,
        rule: Rule::Fixed(1),
        orders,
    }
}

const fn ws_only(ws: &'static [&'static str], rule: Rule) -> Endpoint {
    Endpoint {
        rest: None,
        ws,
        rule,
        orders: 0,
    }
}

use Rule::*;

/// Binance spot's documented request weights (its REST API and WebSocket API references), one row per endpoint.
const TABLE: &[Endpoint] = &[
    rest("GET", "/api/v3/ping", &["ping"], Fixed(1)),
    rest("GET", "/api/v3/time", &["time"], Fixed(1)),
    rest("GET", "/api/v3/exchangeInfo", &["exchangeInfo"], Fixed(20)),
    rest("GET", "/api/v3/depth", &["depth"], Depth),
    rest("GET", "/api/v3/trades", &["trades.recent"], Fixed(25)),
    rest("GET", "/api/v3/historicalTrades", &["trades.historical"], Fixed(25)),
    rest("GET", "/api/v3/aggTrades", &["trades.aggregate"], Fixed(4)),
    rest("GET", "/api/v3/klines", &["klines"], Fixed(2)),
    rest("GET", "/api/v3/uiKlines", &["uiKlines"], Fixed(2)),
    rest("GET", "/api/v3/avgPrice", &["avgPrice"], Fixed(2)),
    rest("GET", "/api/v3/ticker/24hr", &["ticker.24hr"], Ticker24h),
    rest("GET", "/api/v3/ticker/price", &["ticker.price"], TickerLight),
    rest("GET", "/api/v3/ticker/bookTicker", &["ticker.book"], TickerLight),
    rest("GET", "/api/v3/ticker", &["ticker"], TickerRolling),
    placing("POST", "/api/v3/order", &["order.place"], 1),
    rest("POST", "/api/v3/order/test", &["order.test"], OrderTest),
    rest("DELETE", "/api/v3/order", &["order.cancel"], Fixed(1)),
    rest("DELETE", "/api/v3/openOrders", &["openOrders.cancelAll"], Fixed(1)),
    placing("POST", "/api/v3/order/cancelReplace", &["order.cancelReplace"], 1),
    placing("POST", "/api/v3/orderList/oco", &["orderList.place.oco"], 2),
    rest("GET", "/api/v3/order", &["order.status"], Fixed(4)),
    rest("GET", "/api/v3/openOrders", &["openOrders.status"], OpenOrders),
    rest("GET", "/api/v3/allOrders", &["allOrders"], Fixed(20)),
    rest("GET", "/api/v3/account", &["account.status"], Fixed(20)),
    rest("GET", "/api/v3/myTrades", &["myTrades"], MyTrades),
    rest(
        "GET",
        "/api/v3/rateLimit/order",
        &["account.rateLimits.orders"],
        Fixed(40),
    ),
    ws_only(
        &[
            "session.logon",
            "session.status",
            "session.logout",
            "userDataStream.subscribe",
            "userDataStream.subscribe.signature",
        ],
        Fixed(2),
    ),
];

/// Opening a WebSocket API connection: weight 2, one connection attempt, and
/// (conservatively) one raw request.
pub const WS_API_CONNECT: Cost = rate_limits::cost(2, 0, 1, 1);

/// Opening a market-stream connection: no weight, one connection attempt.
pub const STREAM_CONNECT: Cost = rate_limits::cost(0, 0, 0, 1);

/// The parameters of a request, from a REST query or a WebSocket API `params` object.
enum Params<'a> {
    Query(&'a [(&'a str, &'a str)]),
    Json(&'a serde_json::Value),
}

impl Params<'_> {
    fn get(&self, key: &str) -> Option<Cow<'_, str>> {
        match self {
            Params::Query(pairs) => pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| Cow::Borrowed(*v)),
            Params::Json(value) => match value.get(key)? {
                serde_json::Value::String(s) => Some(Cow::Borrowed(s.as_str())),
                serde_json::Value::Null => None,
                other => Some(Cow::Owned(other.to_string())),
            },
        }
    }

    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// How many symbols `symbols` names (a JSON array, or its text in a query);
    /// `Err` when it is present but unreadable.
    fn symbols(&self) -> Option<Result<usize, ()>> {
        let count = |v: &serde_json::Value| v.as_array().map(Vec::len).ok_or(());
        match self {
            Params::Json(value) => value.get("symbols").filter(|v| !v.is_null()).map(count),
            Params::Query(_) => self.get("symbols").map(|text| {
                serde_json::from_str::<serde_json::Value>(&text)
                    .map_err(|_| ())
                    .and_then(|v| count(&v))
            }),
        }
    }
}

fn depth_weight(limit: Option<&str>) -> u32 {
    match limit.map(|l| l.trim().parse::<u32>()) {
        None => 5,
        Some(Ok(1..=100)) => 5,
        Some(Ok(101..=500)) => 25,
        Some(Ok(501..=1000)) => 50,
        // 1001..=5000, and anything the exchange would reject.
        Some(_) => 250,
    }
}

fn weight_of(rule: Rule, params: &Params<'_>) -> u32 {
    match rule {
        Fixed(w) => w,
        Depth => depth_weight(params.get("limit").as_deref()),
        Ticker24h => match (params.has("symbol"), params.symbols()) {
            (true, _) => 2,
            (false, Some(Ok(1..=20))) => 2,
            (false, Some(Ok(21..=100))) => 40,
            _ => 80,
        },
        TickerLight => match (params.has("symbol"), params.symbols()) {
            (true, None) => 2,
            _ => 4,
        },
        TickerRolling => match (params.has("symbol"), params.symbols()) {
            (true, None) => 4,
            (false, Some(Ok(n))) if n > 0 => (4 * n).min(200) as u32,
            _ => 200,
        },
        OpenOrders => {
            if params.has("symbol") {
                6
            } else {
                80
            }
        }
        MyTrades => {
            if params.has("orderId") {
                5
            } else {
                20
            }
        }
        OrderTest => match params.get("computeCommissionRates") {
            Some(v) if v.eq_ignore_ascii_case("true") => 20,
            _ => 1,
        },
    }
}

fn cost_of(endpoint: &Endpoint, params: &Params<'_>) -> Cost {
    rate_limits::cost(weight_of(endpoint.rule, params), endpoint.orders, 1, 0)
}

/// The cost of a REST request. `path` is the request path without the query.
pub fn rest_cost(method: &str, path: &str, params: &[(&str, &str)]) -> Result<Cost, UnknownEndpoint> {
    let path = path.trim_end_matches('/');
    TABLE
        .iter()
        .find(|e| matches!(e.rest, Some((m, p)) if m.eq_ignore_ascii_case(method) && p == path))
        .map(|e| cost_of(e, &Params::Query(params)))
        .ok_or_else(|| UnknownEndpoint(format!("{} {path}", method.to_ascii_uppercase())))
}

/// The WebSocket API method that does what the REST request `method path` does, if there is one.
pub fn ws_api_method(method: &str, path: &str) -> Option<&'static str> {
    TABLE
        .iter()
        .find(|e| matches!(e.rest, Some((m, p)) if m.eq_ignore_ascii_case(method) && p == path))
        .and_then(|e| e.ws.first().copied())
}

/// The cost of a WebSocket API request; `params` is its `params` object (or null).
pub fn ws_api_cost(method: &str, params: &serde_json::Value) -> Result<Cost, UnknownEndpoint> {
    TABLE
        .iter()
        .find(|e| e.ws.contains(&method))
        .map(|e| cost_of(e, &Params::Json(params)))
        .ok_or_else(|| UnknownEndpoint(format!("WebSocket API method {method}")))
}

#[cfg(test)]
mod tests {
    use crate::ledger::PoolKind::{Connections, Orders, RawRequests, RequestWeight};
    use serde_json::json;

    use super::*;

    fn weight(method: &str, path: &str, params: &[(&str, &str)]) -> u32 {
        rest_cost(method, path, params).unwrap().units_of(RequestWeight) as u32
    }

    #[test]
    fn fixed_weights_match_the_table() {
        let cases: &[(&str, &str, u32)] = &[
            ("GET", "/api/v3/ping", 1),
            ("GET", "/api/v3/time", 1),
            ("GET", "/api/v3/exchangeInfo", 20),
            ("GET", "/api/v3/trades", 25),
            ("GET", "/api/v3/historicalTrades", 25),
            ("GET", "/api/v3/aggTrades", 4),
            ("GET", "/api/v3/klines", 2),
            ("GET", "/api/v3/uiKlines", 2),
            ("GET", "/api/v3/avgPrice", 2),
            ("DELETE", "/api/v3/order", 1),
            ("DELETE", "/api/v3/openOrders", 1),
            ("GET", "/api/v3/order", 4),
            ("GET", "/api/v3/allOrders", 20),
            ("GET", "/api/v3/account", 20),
            ("GET", "/api/v3/rateLimit/order", 40),
        ];
        for &(method, path, w) in cases {
            let cost = rest_cost(method, path, &[]).unwrap();
            assert_eq!(
                (
                    cost.units_of(RequestWeight),
                    cost.units_of(Orders),
                    cost.units_of(RawRequests)
                ),
                (u64::from(w), 0, 1),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn depth_weight_follows_the_limit() {
        let d = |limit: &str| weight("GET", "/api/v3/depth", &[("symbol", "BTCUSDT"), ("limit", limit)]);
        assert_eq!(
            weight("GET", "/api/v3/depth", &[("symbol", "BTCUSDT")]),
            5,
            "default limit 100"
        );
        assert_eq!([d("1"), d("100"), d("101"), d("500"), d("501")], [5, 5, 25, 25, 50]);
        assert_eq!([d("1000"), d("1001"), d("5000")], [50, 250, 250]);
        assert_eq!(
            [d("0"), d("abc"), d("9999")],
            [250, 250, 250],
            "malformed: the highest weight"
        );
    }

    #[test]
    fn ticker_weights_follow_symbols() {
        let t24 = "/api/v3/ticker/24hr";
        assert_eq!(weight("GET", t24, &[("symbol", "BTCUSDT")]), 2);
        assert_eq!(weight("GET", t24, &[]), 80);
        let symbols = |n: usize| format!("[{}]", vec!["\"A\""; n].join(","));
        let (s20, s21, s100, s101) = (symbols(20), symbols(21), symbols(100), symbols(101));
        assert_eq!(weight("GET", t24, &[("symbols", &s20)]), 2);
        assert_eq!(weight("GET", t24, &[("symbols", &s21)]), 40);
        assert_eq!(weight("GET", t24, &[("symbols", &s100)]), 40);
        assert_eq!(weight("GET", t24, &[("symbols", &s101)]), 80);
        assert_eq!(
            weight("GET", t24, &[("symbols", "[\"A\",")]),
            80,
            "unreadable: the highest weight"
        );
        for path in ["/api/v3/ticker/price", "/api/v3/ticker/bookTicker"] {
            assert_eq!(weight("GET", path, &[("symbol", "BTCUSDT")]), 2);
            assert_eq!(weight("GET", path, &[]), 4);
            assert_eq!(weight("GET", path, &[("symbols", "[\"A\",\"B\"]")]), 4);
        }
        let rolling = "/api/v3/ticker";
        assert_eq!(weight("GET", rolling, &[("symbol", "BTCUSDT")]), 4);
        assert_eq!(weight("GET", rolling, &[("symbols", "[\"A\",\"B\",\"C\"]")]), 12);
        assert_eq!(weight("GET", rolling, &[("symbols", &s100)]), 200);
    }

    #[test]
    fn account_weights_follow_their_parameters() {
        assert_eq!(weight("GET", "/api/v3/openOrders", &[("symbol", "BTCUSDT")]), 6);
        assert_eq!(weight("GET", "/api/v3/openOrders", &[]), 80);
        assert_eq!(weight("GET", "/api/v3/myTrades", &[("symbol", "BTCUSDT")]), 20);
        assert_eq!(
            weight("GET", "/api/v3/myTrades", &[("symbol", "X"), ("orderId", "7")]),
            5
        );
        assert_eq!(weight("POST", "/api/v3/order/test", &[]), 1);
        assert_eq!(
            weight("POST", "/api/v3/order/test", &[("computeCommissionRates", "true")]),
            20
        );
    }

    #[test]
    fn order_placement_adds_to_the_unfilled_order_count() {
        let orders = |path: &str| rest_cost("POST", path, &[]).unwrap();
        assert_eq!(orders("/api/v3/order"), rate_limits::cost(1, 1, 1, 0));
        assert_eq!(orders("/api/v3/order/cancelReplace").units_of(Orders), 1);
        assert_eq!(orders("/api/v3/orderList/oco").units_of(Orders), 2);
        assert_eq!(rest_cost("DELETE", "/api/v3/order", &[]).unwrap().units_of(Orders), 0);
    }

    #[test]
    fn unknown_endpoints_are_refused() {
        assert!(rest_cost("GET", "/api/v3/somethingNew", &[]).is_err());
        assert!(rest_cost("POST", "/api/v3/depth", &[]).is_err(), "method matters");
        assert!(rest_cost("GET", "/sapi/v1/capital/config/getall", &[]).is_err());
        assert!(ws_api_cost("order.amend", &json!({})).is_err());
        let err = rest_cost("get", "/api/v3/nope", &[]).unwrap_err();
        assert!(err.to_string().contains("GET /api/v3/nope"));
        assert_eq!(
            weight("get", "/api/v3/ping/", &[]),
            1,
            "case and a trailing slash do not matter"
        );
    }

    #[test]
    fn websocket_api_methods_cost_as_rest() {
        let ws = |m: &str, p: serde_json::Value| ws_api_cost(m, &p).unwrap();
        assert_eq!(ws("ping", json!(null)).units_of(RequestWeight), 1);
        assert_eq!(ws("time", json!({})).units_of(RequestWeight), 1);
        assert_eq!(
            ws("depth", json!({"symbol": "BTCUSDT", "limit": 1000})).units_of(RequestWeight),
            50
        );
        assert_eq!(ws("depth", json!({"symbol": "BTCUSDT"})).units_of(RequestWeight), 5);
        assert_eq!(
            ws("ticker.24hr", json!({"symbols": ["A", "B"]})).units_of(RequestWeight),
            2
        );
        assert_eq!(ws("ticker", json!({"symbols": ["A", "B"]})).units_of(RequestWeight), 8);
        assert_eq!(
            ws("order.place", json!({"symbol": "BTCUSDT"})),
            rate_limits::cost(1, 1, 1, 0)
        );
        assert_eq!(
            ws("order.test", json!({"computeCommissionRates": true})).units_of(RequestWeight),
            20
        );
        assert_eq!(
            ws("myTrades", json!({"symbol": "X", "orderId": 5})).units_of(RequestWeight),
            5
        );
        assert_eq!(ws("orderList.place.oco", json!({})).units_of(Orders), 2);
        for m in [
            "session.logon",
            "session.status",
            "session.logout",
            "userDataStream.subscribe.signature",
        ] {
            assert_eq!(ws(m, json!({})).units_of(RequestWeight), 2, "{m}");
        }
        assert_eq!(
            (
                WS_API_CONNECT.units_of(RequestWeight),
                WS_API_CONNECT.units_of(Connections)
            ),
            (2, 1)
        );
        assert_eq!(
            (
                STREAM_CONNECT.units_of(RequestWeight),
                STREAM_CONNECT.units_of(Connections)
            ),
            (0, 1)
        );
    }
}
