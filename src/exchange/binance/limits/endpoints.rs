//! The endpoint table: one row per Binance spot endpoint, naming its REST method and path, its
//! WebSocket API method and how its request weight is worked out.
//!
//! A request names its endpoint by [`Endpoint`], so the row is found by the key, never by matching
//! strings, and an endpoint without a row cannot be sent. REST and the WebSocket API are charged
//! the same (the exchange does). Where a parameter that decides the weight is malformed, the
//! highest weight of that endpoint is charged: the exchange may still charge a request it rejects.

use crate::ledger::Cost;

use super::pools;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Delete,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Delete => "DELETE",
        }
    }
}

/// Every endpoint the runner sends to (the key of the endpoint table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Ping,
    Time,
    ExchangeInfo,
    Depth,
    RecentTrades,
    HistoricalTrades,
    AggTrades,
    Klines,
    UiKlines,
    AvgPrice,
    Ticker24h,
    TickerPrice,
    TickerBook,
    TickerRolling,
    PlaceOrder,
    TestOrder,
    CancelOrder,
    CancelOpenOrders,
    CancelReplace,
    AmendKeepPriority,
    PlaceOco,
    PlaceOto,
    PlaceOtoco,
    CancelOrderList,
    OrderListStatus,
    OpenOrderLists,
    OrderStatus,
    OpenOrders,
    AllOrders,
    Account,
    MyTrades,
    OrderRateLimits,
    SessionLogon,
    SessionStatus,
    SessionLogout,
    UserDataSubscribe,
    UserDataSubscribeSignature,
}

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

/// One row of the endpoint table.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// The REST method and path, when the endpoint has a REST form.
    pub rest: Option<(HttpMethod, &'static str)>,
    /// The WebSocket API method, when the endpoint has one.
    pub ws_api: Option<&'static str>,
    rule: Rule,
    /// Added to the unfilled order count (ORDERS pools).
    orders: u32,
}

impl Row {
    /// True for endpoints that place orders (they count against the account's order limits).
    pub fn adds_orders(&self) -> bool {
        self.orders > 0
    }
}

const fn both(method: HttpMethod, path: &'static str, ws_api: &'static str, rule: Rule) -> Row {
    Row {
        rest: Some((method, path)),
        ws_api: Some(ws_api),
        rule,
        orders: 0,
    }
}

const fn placing(path: &'static str, ws_api: &'static str, orders: u32) -> Row {
    Row {
        rest: Some((HttpMethod::Post, path)),
        ws_api: Some(ws_api),
        rule: Rule::Fixed(1),
        orders,
    }
}

const fn ws_only(ws_api: &'static str, rule: Rule) -> Row {
    Row {
        rest: None,
        ws_api: Some(ws_api),
        rule,
        orders: 0,
    }
}

impl Endpoint {
    /// The endpoint's row: Binance spot's documented request weights (its REST API and WebSocket
    /// API references).
    pub const fn row(self) -> Row {
        use Endpoint as E;
        use HttpMethod::{Delete, Get, Post, Put};
        use Rule::*;
        match self {
            E::Ping => both(Get, "/api/v3/ping", "ping", Fixed(1)),
            E::Time => both(Get, "/api/v3/time", "time", Fixed(1)),
            E::ExchangeInfo => both(Get, "/api/v3/exchangeInfo", "exchangeInfo", Fixed(20)),
            E::Depth => both(Get, "/api/v3/depth", "depth", Depth),
            E::RecentTrades => both(Get, "/api/v3/trades", "trades.recent", Fixed(25)),
            E::HistoricalTrades => both(Get, "/api/v3/historicalTrades", "trades.historical", Fixed(25)),
            E::AggTrades => both(Get, "/api/v3/aggTrades", "trades.aggregate", Fixed(4)),
            E::Klines => both(Get, "/api/v3/klines", "klines", Fixed(2)),
            E::UiKlines => both(Get, "/api/v3/uiKlines", "uiKlines", Fixed(2)),
            E::AvgPrice => both(Get, "/api/v3/avgPrice", "avgPrice", Fixed(2)),
            E::Ticker24h => both(Get, "/api/v3/ticker/24hr", "ticker.24hr", Ticker24h),
            E::TickerPrice => both(Get, "/api/v3/ticker/price", "ticker.price", TickerLight),
            E::TickerBook => both(Get, "/api/v3/ticker/bookTicker", "ticker.book", TickerLight),
            E::TickerRolling => both(Get, "/api/v3/ticker", "ticker", TickerRolling),
            E::PlaceOrder => placing("/api/v3/order", "order.place", 1),
            E::TestOrder => both(Post, "/api/v3/order/test", "order.test", OrderTest),
            E::CancelOrder => both(Delete, "/api/v3/order", "order.cancel", Fixed(1)),
            E::CancelOpenOrders => both(Delete, "/api/v3/openOrders", "openOrders.cancelAll", Fixed(1)),
            E::CancelReplace => placing("/api/v3/order/cancelReplace", "order.cancelReplace", 1),
            // Amending lowers a quantity: it adds no unfilled order.
            E::AmendKeepPriority => both(
                Put,
                "/api/v3/order/amend/keepPriority",
                "order.amend.keepPriority",
                Fixed(4),
            ),
            E::PlaceOco => placing("/api/v3/orderList/oco", "orderList.place.oco", 2),
            E::PlaceOto => placing("/api/v3/orderList/oto", "orderList.place.oto", 2),
            E::PlaceOtoco => placing("/api/v3/orderList/otoco", "orderList.place.otoco", 3),
            E::CancelOrderList => both(Delete, "/api/v3/orderList", "orderList.cancel", Fixed(1)),
            E::OrderListStatus => both(Get, "/api/v3/orderList", "orderList.status", Fixed(4)),
            E::OpenOrderLists => both(Get, "/api/v3/openOrderList", "openOrderLists.status", Fixed(6)),
            E::OrderStatus => both(Get, "/api/v3/order", "order.status", Fixed(4)),
            E::OpenOrders => both(Get, "/api/v3/openOrders", "openOrders.status", OpenOrders),
            E::AllOrders => both(Get, "/api/v3/allOrders", "allOrders", Fixed(20)),
            E::Account => both(Get, "/api/v3/account", "account.status", Fixed(20)),
            E::MyTrades => both(Get, "/api/v3/myTrades", "myTrades", MyTrades),
            E::OrderRateLimits => both(Get, "/api/v3/rateLimit/order", "account.rateLimits.orders", Fixed(40)),
            E::SessionLogon => ws_only("session.logon", Fixed(2)),
            E::SessionStatus => ws_only("session.status", Fixed(2)),
            E::SessionLogout => ws_only("session.logout", Fixed(2)),
            E::UserDataSubscribe => ws_only("userDataStream.subscribe", Fixed(2)),
            E::UserDataSubscribeSignature => ws_only("userDataStream.subscribe.signature", Fixed(2)),
        }
    }

    /// What a request to this endpoint with `params` costs.
    pub fn cost(self, params: &[(&str, &str)]) -> Cost {
        let row = self.row();
        pools::cost(weight_of(row.rule, &Params(params)), row.orders, 1, 0)
    }

    /// How the endpoint is named in messages and metrics: its REST method and path, or its
    /// WebSocket API method.
    pub fn name(self) -> String {
        match self.row() {
            Row {
                rest: Some((method, path)),
                ..
            } => format!("{} {path}", method.as_str()),
            Row {
                ws_api: Some(method), ..
            } => method.to_string(),
            Row { .. } => format!("{self:?}"),
        }
    }
}

/// Opening a WebSocket API connection: weight 2, one connection attempt, and
/// (conservatively) one raw request.
pub const WS_API_CONNECT: Cost = pools::cost(2, 0, 1, 1);

/// Opening a market-stream connection: no weight, one connection attempt.
pub const STREAM_CONNECT: Cost = pools::cost(0, 0, 0, 1);

/// The parameters of a request, as name/value texts.
struct Params<'a>(&'a [(&'a str, &'a str)]);

impl Params<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// How many symbols `symbols` names (its JSON array text); `Err` when it is present but unreadable.
    fn symbols(&self) -> Option<Result<usize, ()>> {
        self.get("symbols").map(|text| {
            serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| v.as_array().map(Vec::len))
                .ok_or(())
        })
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
    use Rule::*;
    match rule {
        Fixed(w) => w,
        Depth => depth_weight(params.get("limit")),
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

#[cfg(test)]
mod tests {
    use crate::ledger::PoolKind::{Connections, Orders, RawRequests, RequestWeight};

    use super::Endpoint as E;
    use super::*;

    fn weight(endpoint: Endpoint, params: &[(&str, &str)]) -> u32 {
        endpoint.cost(params).units_of(RequestWeight) as u32
    }

    #[test]
    fn fixed_weights_match_the_table() {
        let cases: &[(Endpoint, u32)] = &[
            (E::Ping, 1),
            (E::Time, 1),
            (E::ExchangeInfo, 20),
            (E::RecentTrades, 25),
            (E::HistoricalTrades, 25),
            (E::AggTrades, 4),
            (E::Klines, 2),
            (E::UiKlines, 2),
            (E::AvgPrice, 2),
            (E::CancelOrder, 1),
            (E::CancelOpenOrders, 1),
            (E::OrderStatus, 4),
            (E::AllOrders, 20),
            (E::Account, 20),
            (E::OrderRateLimits, 40),
            (E::SessionLogon, 2),
            (E::SessionStatus, 2),
            (E::SessionLogout, 2),
            (E::UserDataSubscribe, 2),
            (E::UserDataSubscribeSignature, 2),
        ];
        for &(endpoint, w) in cases {
            let cost = endpoint.cost(&[]);
            assert_eq!(
                (
                    cost.units_of(RequestWeight),
                    cost.units_of(Orders),
                    cost.units_of(RawRequests)
                ),
                (u64::from(w), 0, 1),
                "{endpoint:?}"
            );
        }
    }

    #[test]
    fn rows_name_the_rest_path_and_the_websocket_api_method_together() {
        assert_eq!(E::PlaceOrder.row().rest, Some((HttpMethod::Post, "/api/v3/order")));
        assert_eq!(E::PlaceOrder.row().ws_api, Some("order.place"));
        assert_eq!(E::CancelOrder.row().rest, Some((HttpMethod::Delete, "/api/v3/order")));
        assert_eq!(E::CancelOrder.row().ws_api, Some("order.cancel"));
        assert_eq!(E::OrderStatus.row().ws_api, Some("order.status"));
        assert_eq!(E::UserDataSubscribeSignature.row().rest, None);
        assert_eq!(E::PlaceOrder.name(), "POST /api/v3/order");
        assert_eq!(
            E::UserDataSubscribeSignature.name(),
            "userDataStream.subscribe.signature"
        );
    }

    #[test]
    fn depth_weight_follows_the_limit() {
        let d = |limit: &str| weight(E::Depth, &[("symbol", "BTCUSDT"), ("limit", limit)]);
        assert_eq!(weight(E::Depth, &[("symbol", "BTCUSDT")]), 5, "default limit 100");
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
        assert_eq!(weight(E::Ticker24h, &[("symbol", "BTCUSDT")]), 2);
        assert_eq!(weight(E::Ticker24h, &[]), 80);
        let symbols = |n: usize| format!("[{}]", vec!["\"A\""; n].join(","));
        let (s20, s21, s100, s101) = (symbols(20), symbols(21), symbols(100), symbols(101));
        assert_eq!(weight(E::Ticker24h, &[("symbols", &s20)]), 2);
        assert_eq!(weight(E::Ticker24h, &[("symbols", &s21)]), 40);
        assert_eq!(weight(E::Ticker24h, &[("symbols", &s100)]), 40);
        assert_eq!(weight(E::Ticker24h, &[("symbols", &s101)]), 80);
        assert_eq!(
            weight(E::Ticker24h, &[("symbols", "[\"A\",")]),
            80,
            "unreadable: the highest weight"
        );
        for endpoint in [E::TickerPrice, E::TickerBook] {
            assert_eq!(weight(endpoint, &[("symbol", "BTCUSDT")]), 2);
            assert_eq!(weight(endpoint, &[]), 4);
            assert_eq!(weight(endpoint, &[("symbols", "[\"A\",\"B\"]")]), 4);
        }
        assert_eq!(weight(E::TickerRolling, &[("symbol", "BTCUSDT")]), 4);
        assert_eq!(weight(E::TickerRolling, &[("symbols", "[\"A\",\"B\",\"C\"]")]), 12);
        assert_eq!(weight(E::TickerRolling, &[("symbols", &s100)]), 200);
    }

    #[test]
    fn account_weights_follow_their_parameters() {
        assert_eq!(weight(E::OpenOrders, &[("symbol", "BTCUSDT")]), 6);
        assert_eq!(weight(E::OpenOrders, &[]), 80);
        assert_eq!(weight(E::MyTrades, &[("symbol", "BTCUSDT")]), 20);
        assert_eq!(weight(E::MyTrades, &[("symbol", "X"), ("orderId", "7")]), 5);
        assert_eq!(weight(E::TestOrder, &[]), 1);
        assert_eq!(weight(E::TestOrder, &[("computeCommissionRates", "true")]), 20);
    }

    #[test]
    fn order_placement_adds_to_the_unfilled_order_count() {
        assert_eq!(E::PlaceOrder.cost(&[]), pools::cost(1, 1, 1, 0));
        assert_eq!(E::CancelReplace.cost(&[]).units_of(Orders), 1);
        assert_eq!(E::PlaceOco.cost(&[]).units_of(Orders), 2);
        assert_eq!(E::PlaceOto.cost(&[]).units_of(Orders), 2);
        assert_eq!(E::PlaceOtoco.cost(&[]).units_of(Orders), 3);
        assert_eq!(E::AmendKeepPriority.cost(&[]), pools::cost(4, 0, 1, 0));
        assert_eq!(E::CancelOrderList.cost(&[]).units_of(Orders), 0);
        assert_eq!(weight(E::OrderListStatus, &[]), 4);
        assert_eq!(weight(E::OpenOrderLists, &[]), 6);
        assert_eq!(
            E::AmendKeepPriority.row().rest,
            Some((HttpMethod::Put, "/api/v3/order/amend/keepPriority"))
        );
        assert_eq!(E::CancelOrder.cost(&[]).units_of(Orders), 0);
    }

    #[test]
    fn connections_are_charged_as_connection_attempts() {
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
