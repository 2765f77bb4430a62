//! Request cost of each Binance spot endpoint.
//!
//! PLACEHOLDER so the client compiles before the full table lands from the ledger
//! branch (which owns this file): only the endpoints the client calls.

use crate::ledger::Cost;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no known weight for {0}; refusing to send it")]
pub struct UnknownEndpoint(pub String);

fn cost(weight: u32, orders: u32) -> Cost {
    Cost {
        weight,
        orders,
        raw: 1,
        connections: 0,
    }
}

pub fn rest_cost(method: &str, path: &str, params: &[(&str, &str)]) -> Result<Cost, UnknownEndpoint> {
    let param = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let c = match (method, path) {
        ("GET", "/api/v3/ping" | "/api/v3/time") => cost(1, 0),
        ("GET", "/api/v3/exchangeInfo") => cost(20, 0),
        ("GET", "/api/v3/depth") => {
            let limit: u32 = param("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
            cost(
                match limit {
                    0..=100 => 5,
                    101..=500 => 25,
                    501..=1000 => 50,
                    _ => 250,
                },
                0,
            )
        }
        ("GET", "/api/v3/trades") => cost(25, 0),
        ("GET", "/api/v3/klines") => cost(2, 0),
        ("GET", "/api/v3/ticker/price" | "/api/v3/ticker/bookTicker") => {
            cost(if param("symbol").is_some() { 2 } else { 4 }, 0)
        }
        ("POST", "/api/v3/order") => cost(1, 1),
        ("DELETE", "/api/v3/order") => cost(1, 0),
        ("GET", "/api/v3/order") => cost(4, 0),
        ("GET", "/api/v3/openOrders") => cost(if param("symbol").is_some() { 6 } else { 80 }, 0),
        ("GET", "/api/v3/account") => cost(20, 0),
        _ => return Err(UnknownEndpoint(format!("{method} {path}"))),
    };
    Ok(c)
}

pub fn ws_api_cost(method: &str, _params: &serde_json::Value) -> Result<Cost, UnknownEndpoint> {
    match method {
        "ping" | "time" => Ok(cost(1, 0)),
        m if m.starts_with("session.") || m.starts_with("userDataStream.subscribe") => Ok(cost(2, 0)),
        _ => Err(UnknownEndpoint(method.to_string())),
    }
}

/// Opening a WebSocket API connection: weight 2 and one connection attempt.
pub const WS_API_CONNECT: Cost = Cost {
    weight: 2,
    orders: 0,
    raw: 1,
    connections: 1,
};

/// Opening a market-stream connection: no weight, one connection attempt.
pub const STREAM_CONNECT: Cost = Cost {
    weight: 0,
    orders: 0,
    raw: 0,
    connections: 1,
};
