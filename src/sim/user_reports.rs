//! What the simulated exchange tells its users about their orders: execution reports on the
//! user-data stream, and an order's REST / WebSocket API shape.

use rust_decimal::Decimal;

use super::matching::Exchange;
use super::num::d8;
use super::order_record::{Kind, Order};
use crate::exchange::binance::wire::{ExecutionReport, OrderWire, UserDataEvent};
use crate::exchange::types::TimeInForce;

impl Exchange {
    pub(super) fn report(&mut self, id: u64, exec: Exec, now: i64) {
        self.execution_id += 1;
        if self.users.is_empty() {
            return;
        }
        let Some(o) = self.orders.get(&id) else { return };
        let spec = &self.markets[o.symbol].spec;
        let last = match exec {
            Exec::Trade(last) => Some(last),
            _ => None,
        };
        // A cancel is reported under the cancel request's id, the order's own id in `C`.
        let (c, orig_client_id) = match exec {
            Exec::Canceled { by } => (by.to_string(), o.client_id.clone()),
            _ => (o.client_id.clone(), String::new()),
        };
        // On the book, or about to rest there (a new limit order); never an untriggered stop.
        let working = o.status.is_open()
            && (o.on_book || o.working_time.is_some() && o.kind.active() != Kind::Market && matches!(exec, Exec::New));
        let extra = serde_json::json!({
            "P": d8(o.stop_price),
            "F": d8(o.iceberg_qty),
            "I": self.execution_id,
            "M": false,
            "Q": d8(o.orig_quote_qty),
            "V": o.stp.as_str(),
        });
        let working_time = o.working_time.filter(|_| working || o.on_book);
        let report = ExecutionReport {
            event_time: now,
            s: spec.symbol.clone(),
            c,
            side: o.side.as_str().to_string(),
            o: o.kind.as_str().to_string(),
            f: o.tif.map(TimeInForce::as_str).unwrap_or("GTC").to_string(),
            q: d8(o.orig_qty),
            p: d8(o.price),
            orig_client_id,
            x: exec.as_str().to_string(),
            status: o.status_name().to_string(),
            r: "NONE".to_string(),
            i: o.id,
            l: d8(last.map(|l| l.qty).unwrap_or_default()),
            z: d8(o.executed),
            last_price: d8(last.map(|l| l.price).unwrap_or_default()),
            n: d8(last.map(|l| l.commission).unwrap_or_default()),
            commission_asset: last.map(|l| l.asset.clone()),
            transaction_time: now,
            t: last.map(|l| l.trade_id as i64).unwrap_or(-1),
            w: working,
            m: last.is_some_and(|l| l.is_maker),
            created: o.time,
            cum_quote: d8(o.cum_quote),
            last_quote: d8(last.map(|l| l.price * l.qty).unwrap_or_default()),
            g: o.list.map_or(-1, |l| l as i64),
        };
        // The documented fields the client's type leaves out are added to its JSON.
        let Ok(mut event) = serde_json::to_value(UserDataEvent::ExecutionReport(report)) else {
            return;
        };
        if let (Some(fields), serde_json::Value::Object(more)) = (event.as_object_mut(), extra) {
            fields.extend(more);
            if let Some(w) = working_time {
                fields.insert("W".to_string(), w.into());
            }
            // The latest prevented match, the quantity prevented so far, and what that match took.
            if let Some(p) = o.prevented {
                fields.insert("v".to_string(), p.match_id.into());
                fields.insert("A".to_string(), d8(p.qty).to_string().into());
                fields.insert("B".to_string(), d8(p.last_qty).to_string().into());
            }
        }
        self.users.publish(o.account, &event.to_string());
    }

    // ---- wire shapes ----

    pub fn order_wire(&self, o: &Order, full: bool) -> OrderWire {
        let spec = &self.markets[o.symbol].spec;
        OrderWire {
            symbol: spec.symbol.clone(),
            order_id: o.id,
            order_list_id: o.list.map_or(-1, |l| l as i64),
            client_order_id: o.client_id.clone(),
            orig_client_order_id: None,
            transact_time: None,
            price: d8(o.price),
            orig_qty: d8(o.orig_qty),
            executed_qty: d8(o.executed),
            cummulative_quote_qty: d8(o.cum_quote),
            orig_quote_order_qty: Some(d8(o.orig_quote_qty)),
            status: o.status_name().to_string(),
            time_in_force: o.tif.map(TimeInForce::as_str).unwrap_or("GTC").to_string(),
            order_type: o.kind.as_str().to_string(),
            side: o.side.as_str().to_string(),
            time: full.then_some(o.time),
            update_time: full.then_some(o.update_time),
            is_working: full.then_some(o.status.is_open() && o.on_book),
            working_time: Some(o.time),
            self_trade_prevention_mode: Some(o.stp.as_str().to_string()),
            fills: Vec::new(),
        }
    }
}

/// What an execution report reports (its `x`).
#[derive(Clone, Copy)]
pub(super) enum Exec<'a> {
    New,
    Trade(&'a LastFill),
    Canceled {
        by: &'a str,
    },
    Expired,
    /// Amended in place (`order/amend/keepPriority`).
    Replaced,
    /// Expired by self-trade prevention.
    TradePrevention,
}

impl Exec<'_> {
    fn as_str(self) -> &'static str {
        match self {
            Exec::Replaced => "REPLACED",
            Exec::New => "NEW",
            Exec::Trade(_) => "TRADE",
            Exec::Canceled { .. } => "CANCELED",
            Exec::Expired => "EXPIRED",
            Exec::TradePrevention => "TRADE_PREVENTION",
        }
    }
}

pub(super) struct LastFill {
    pub(super) price: Decimal,
    pub(super) qty: Decimal,
    pub(super) commission: Decimal,
    pub(super) asset: String,
    pub(super) trade_id: u64,
    pub(super) is_maker: bool,
}
