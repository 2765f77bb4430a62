//! Order lists in the matching engine: OCO (one order working or trading ends the other), OTO
//! (a pending order placed once the working order has filled) and OTOCO (an OCO pair pending on a
//! working order), with their `listStatus` events.
//!
//! Reservations: an OCO pair can only ever trade one of its orders, so it reserves once, the larger
//! of its two orders' needs, held by the limit-maker order when it has one (that order can trade
//! as a maker at any time) and otherwise by its first order. A pending order reserves nothing
//! until it is placed: the working order's proceeds usually pay for it.

use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;
use serde_json::json;

use super::error::ApiErr;
use super::matching::{End, Exchange};
use super::order_record::{Kind, NewOrder, Order};
use super::stp::Stp;
use super::user_reports::Exec;
use crate::exchange::binance::orders::list_rules::{self, PairOrder};
use crate::exchange::binance::wire::Fill;
use crate::exchange::types::Side;

/// The three list kinds the simulator places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contingency {
    Oco,
    Oto,
    Otoco,
}

impl Contingency {
    /// `contingencyType` as the exchange shows it (an OTOCO is an `OTO` list).
    pub fn wire_name(self) -> &'static str {
        match self {
            Contingency::Oco => "OCO",
            Contingency::Oto | Contingency::Otoco => "OTO",
        }
    }

    /// Orders the list adds to the unfilled-order count and the `MAX_NUM_ORDERS` filter.
    fn order_count(self) -> usize {
        match self {
            Contingency::Oco | Contingency::Oto => 2,
            Contingency::Otoco => 3,
        }
    }
}

/// An OCO pair: the order above the last price and the one below it.
#[derive(Debug, Clone)]
pub struct Pair {
    pub above: NewOrder,
    pub below: NewOrder,
}

/// What a list places besides its working order.
#[derive(Debug, Clone)]
pub enum Legs {
    /// OTO: one pending order.
    Single(NewOrder),
    /// OCO (placed at once) or OTOCO (pending).
    Pair(Pair),
}

/// A validated-for-shape new order list.
#[derive(Debug, Clone)]
pub struct NewList {
    pub symbol: usize,
    pub client_id: Option<String>,
    /// OTO and OTOCO: the order placed at once.
    pub working: Option<NewOrder>,
    pub legs: Legs,
    /// Every order's self-trade prevention mode.
    pub stp: Stp,
}

impl NewList {
    pub fn contingency(&self) -> Contingency {
        match (&self.working, &self.legs) {
            (None, _) => Contingency::Oco,
            (Some(_), Legs::Single(_)) => Contingency::Oto,
            (Some(_), Legs::Pair(_)) => Contingency::Otoco,
        }
    }
}

#[derive(Debug, Clone)]
pub struct OrderList {
    pub id: u64,
    pub symbol: usize,
    pub contingency: Contingency,
    pub client_id: String,
    /// Its orders as the exchange lists them: the working order first, then a pair's stop-loss order.
    pub orders: Vec<u64>,
    pub working: Option<u64>,
    pub time: i64,
    /// Every order has ended (`ALL_DONE`).
    pub done: bool,
}

/// The result of an accepted list: its id and the fills the working order (or an OCO order) took at once.
#[derive(Debug)]
pub struct PlacedList {
    pub list_id: u64,
    pub fills: HashMap<u64, Vec<Fill>>,
}

#[derive(Debug, Default)]
pub struct OrderLists {
    lists: BTreeMap<u64, OrderList>,
    by_client: HashMap<String, Vec<u64>>,
    next_id: u64,
    /// Lists whose working order has filled: their pending orders are placed at the next settle.
    ready: Vec<u64>,
}

impl OrderLists {
    /// Pending orders of a symbol still waiting for their working order.
    pub fn awaiting_on(&self, symbol: usize, orders: &BTreeMap<u64, Order>) -> usize {
        self.lists
            .values()
            .filter(|l| l.symbol == symbol && !l.done)
            .flat_map(|l| &l.orders)
            .filter(|id| orders.get(id).is_some_and(|o| o.awaiting))
            .count()
    }
}

/// An order of a pair as the exchange's list rules see it.
fn pair_order(req: &NewOrder) -> PairOrder {
    PairOrder {
        order_type: req.kind.into(),
        side: req.side,
        quantity: req.qty,
        price: req.price,
        stop_price: req.stop_price,
    }
}

/// The documented OCO rules ([`list_rules::check_pair`]): which kind may stand above and below
/// for the side (each with its own code), then `above > last traded price > below`.
fn check_pair(pair: &Pair, last: Option<Decimal>) -> Result<(), ApiErr> {
    list_rules::check_pair(&pair_order(&pair.above), &pair_order(&pair.below), last).map_err(|breach| {
        match breach.exchange_error() {
            Some((code, message)) => ApiErr::bad(code, message),
            // Both orders are read from one side and one quantity parameter: never reached.
            None => ApiErr::rejected(breach.to_string()),
        }
    })
}

impl Exchange {
    pub fn order_list(&self, id: u64) -> Option<&OrderList> {
        self.lists.lists.get(&id)
    }

    /// The account that placed `list` (its orders').
    pub fn list_account(&self, list: &OrderList) -> u16 {
        list.orders
            .first()
            .and_then(|id| self.order(*id))
            .map_or(0, |o| o.account)
    }

    /// The latest list with this `listClientOrderId`.
    pub fn order_list_by_client(&self, client_id: &str) -> Option<&OrderList> {
        self.lists
            .by_client
            .get(client_id)
            .and_then(|ids| ids.last())
            .and_then(|id| self.lists.lists.get(id))
    }

    pub fn order_lists(&self) -> impl DoubleEndedIterator<Item = &OrderList> {
        self.lists.lists.values()
    }

    /// Checks the whole list (every order's filters, the OCO rules, the open-order count, the funds
    /// and the unfilled-order count) before anything happens, then places it: nothing half-done.
    pub fn place_list(&mut self, new: NewList, now: i64) -> Result<PlacedList, ApiErr> {
        let contingency = new.contingency();
        let last = self.markets[new.symbol].trades.back().map(|t| t.price);
        if let Some(cid) = &new.client_id {
            if self.order_list_by_client(cid).is_some_and(|l| !l.done) {
                return Err(ApiErr::rejected("Duplicate order sent."));
            }
        }
        let (pending, pair_side): (Vec<&NewOrder>, Option<Side>) = match &new.legs {
            Legs::Single(leg) => (vec![leg], None),
            Legs::Pair(pair) => {
                check_pair(pair, last)?;
                // Listed stop-loss first, as the exchange lists a pair.
                let (first, second) = if list_rules::is_stop_loss(pair.above.kind.into()) {
                    (&pair.above, &pair.below)
                } else {
                    (&pair.below, &pair.above)
                };
                (vec![first, second], Some(pair.above.side))
            }
        };
        let all: Vec<&NewOrder> = new.working.iter().chain(pending.iter().copied()).collect();
        let mut client_ids: Vec<&str> = all.iter().filter_map(|r| r.client_id.as_deref()).collect();
        client_ids.sort_unstable();
        if client_ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(ApiErr::rejected("Duplicate order sent."));
        }
        for req in &all {
            self.validate(req)?;
        }
        let max = self.markets[new.symbol].spec.max_num_orders as usize;
        if self.open_on_book(new.symbol) + self.pending_on(new.symbol) + contingency.order_count() > max {
            return Err(ApiErr::filter("MAX_NUM_ORDERS"));
        }
        // What is reserved now: the working order's need, or the OCO pair's larger one.
        let reserve = match &new.working {
            Some(working) => self.required_lock(working),
            None => pending.iter().map(|r| self.required_lock(r)).max().unwrap_or_default(),
        };
        let spender = new.working.as_ref().map_or(pair_side.unwrap_or(Side::Sell), |w| w.side);
        let account = all.first().map_or(0, |r| r.account);
        self.check_funds(account, new.symbol, spender, reserve)?;
        self.limiter
            .lock()
            .take_orders(now, account, contingency.order_count() as u64)?;

        self.lists.next_id += 1;
        let list_id = self.lists.next_id;
        let client_id = new.client_id.clone().unwrap_or_else(|| format!("simlist{list_id:08}"));
        self.lists.lists.insert(
            list_id,
            OrderList {
                id: list_id,
                symbol: new.symbol,
                contingency,
                client_id: client_id.clone(),
                orders: Vec::new(),
                working: None,
                time: now,
                done: false,
            },
        );
        self.lists.by_client.entry(client_id).or_default().push(list_id);
        let mut ids = Vec::new();
        let working = new
            .working
            .as_ref()
            .map(|w| self.record(w, reserve, Some((list_id, false)), new.stp, now));
        ids.extend(working);
        let awaiting = working.is_some();
        let holder = holder_index(&pending);
        for (i, req) in pending.iter().enumerate() {
            let lock = if !awaiting && i == holder {
                reserve
            } else {
                Decimal::ZERO
            };
            ids.push(self.record(req, lock, Some((list_id, awaiting)), new.stp, now));
        }
        if let Some(list) = self.lists.lists.get_mut(&list_id) {
            list.orders = ids.clone();
            list.working = working;
        }
        self.publish_list_status(list_id, "EXEC_STARTED", now);
        let mut fills = HashMap::new();
        let started = if awaiting { &ids[..1] } else { &ids[..] };
        for &id in started {
            fills.insert(id, self.start_working(id, now));
        }
        self.after_change(now);
        Ok(PlacedList { list_id, fills })
    }

    /// Cancels every open order of a list; `cancel_client_id` names the cancel.
    pub fn cancel_list(&mut self, list_id: u64, cancel_client_id: &str, now: i64) -> Result<(), ApiErr> {
        let first_open = self
            .order_list(list_id)
            .filter(|l| !l.done)
            .and_then(|l| l.orders.iter().copied().find(|id| self.is_open_order(*id)));
        let Some(id) = first_open else {
            return Err(ApiErr::unknown_order_cancel());
        };
        // Ending one order of a list ends the others.
        self.finish(id, End::Canceled { by: cancel_client_id }, now);
        self.after_change(now);
        Ok(())
    }

    fn is_open_order(&self, id: u64) -> bool {
        self.order(id).is_some_and(|o| o.status.is_open())
    }

    fn list_of(&self, id: u64) -> Option<&OrderList> {
        self.order(id)?.list.and_then(|l| self.lists.lists.get(&l))
    }

    /// The other open orders of `id`'s OCO pair (every order of a list but its working order).
    fn open_pair_siblings(&self, id: u64) -> Vec<u64> {
        let Some(list) = self.list_of(id) else {
            return Vec::new();
        };
        if list.working == Some(id) || list.contingency == Contingency::Oto {
            return Vec::new();
        }
        list.orders
            .iter()
            .copied()
            .filter(|&o| o != id && Some(o) != list.working && self.is_open_order(o))
            .collect()
    }

    /// An order of an OCO pair started working (triggered, or traded): the other one expires.
    pub(super) fn leg_started(&mut self, id: u64, now: i64) {
        for sibling in self.open_pair_siblings(id) {
            self.finish(sibling, End::Expired, now);
        }
    }

    /// After a fill of a list's order: its pair's other order expires at the first fill, and a
    /// filled working order makes the pending orders ready.
    pub(super) fn leg_filled(&mut self, id: u64, first_fill: bool, done: bool, now: i64) {
        let Some(list) = self.list_of(id) else { return };
        let (list_id, is_working) = (list.id, list.working == Some(id));
        if first_fill {
            self.leg_started(id, now);
        }
        if done && is_working {
            self.lists.ready.push(list_id);
        }
        self.check_list_done(list_id, now);
    }

    /// After a list's order ended unfilled: a cancel cancels the whole list, an expired working
    /// order expires the pending ones, an OCO order expired by self-trade prevention expires its
    /// pair (whose reservation may have been its own).
    pub(super) fn leg_ended(&mut self, id: u64, end: End, now: i64) {
        let Some(list) = self.list_of(id) else { return };
        let (list_id, is_working) = (list.id, list.working == Some(id));
        let all_others: Vec<u64> = list.orders.iter().copied().filter(|&o| o != id).collect();
        let (others, follow) = match end {
            End::Canceled { .. } => (all_others, end),
            _ if is_working => (all_others, End::Expired),
            End::Prevented { .. } => (self.open_pair_siblings(id), End::Expired),
            // An OCO order expiring because its pair started working ends nothing more.
            End::Expired => (Vec::new(), End::Expired),
        };
        for other in others {
            // Re-checked each time: ending one may have ended others.
            if self.is_open_order(other) {
                self.finish(other, follow, now);
            }
        }
        self.check_list_done(list_id, now);
    }

    /// `ALL_DONE` once every order of the list has ended.
    fn check_list_done(&mut self, list_id: u64, now: i64) {
        let Some(list) = self.lists.lists.get(&list_id) else {
            return;
        };
        if list.done || list.orders.iter().any(|&id| self.is_open_order(id)) {
            return;
        }
        if let Some(list) = self.lists.lists.get_mut(&list_id) {
            list.done = true;
        }
        self.publish_list_status(list_id, "ALL_DONE", now);
    }

    /// Places the pending orders of lists whose working order filled. Returns whether there were any.
    pub(super) fn place_ready_lists(&mut self, now: i64) -> bool {
        let ready = std::mem::take(&mut self.lists.ready);
        for &list_id in &ready {
            self.place_pending(list_id, now);
        }
        !ready.is_empty()
    }

    /// The pending order (or OCO pair) goes on the book, reserving what it needs now; without the
    /// funds, or as a limit-maker that would take, it expires (the exchange rejects it).
    fn place_pending(&mut self, list_id: u64, now: i64) {
        let Some(list) = self.lists.lists.get(&list_id) else {
            return;
        };
        let pending: Vec<u64> = list
            .orders
            .iter()
            .copied()
            .filter(|id| self.order(*id).is_some_and(|o| o.awaiting && o.status.is_open()))
            .collect();
        let Some(&first) = pending.first() else { return };
        let reqs: Vec<NewOrder> = pending
            .iter()
            .filter_map(|id| self.order(*id).map(|o| o.remaining_as(o.kind)))
            .collect();
        let need = reqs.iter().map(|r| self.required_lock(r)).max().unwrap_or_default();
        let refs: Vec<&NewOrder> = reqs.iter().collect();
        let holder = pending.get(holder_index(&refs)).copied().unwrap_or(first);
        let would_take = reqs.iter().any(|r| {
            r.kind == Kind::LimitMaker
                && r.price
                    .is_some_and(|p| self.markets[r.symbol].book.would_cross(r.side, p))
        });
        let (account, symbol, side) = (reqs[0].account, reqs[0].symbol, reqs[0].side);
        if would_take || self.check_funds(account, symbol, side, need).is_err() {
            for id in pending {
                self.finish(id, End::Expired, now);
            }
            self.check_list_done(list_id, now);
            return;
        }
        self.reserve(holder, need);
        for &id in &pending {
            if let Some(o) = self.orders_mut(id) {
                o.awaiting = false;
                o.update_time = now;
                o.working_time = (!o.kind.is_conditional()).then_some(now);
            }
            self.report(id, Exec::New, now);
        }
        for id in pending {
            if self.is_open_order(id) {
                self.start_working(id, now);
            }
        }
    }

    /// A `listStatus` user-data event (`EXEC_STARTED` / `EXECUTING`, or `ALL_DONE`).
    fn publish_list_status(&self, list_id: u64, status_type: &str, now: i64) {
        let Some(list) = self.lists.lists.get(&list_id) else {
            return;
        };
        let symbol = &self.markets[list.symbol].spec.symbol;
        let order_status = if status_type == "ALL_DONE" {
            "ALL_DONE"
        } else {
            "EXECUTING"
        };
        let orders: Vec<serde_json::Value> = list
            .orders
            .iter()
            .filter_map(|id| self.order(*id))
            .map(|o| json!({"s": symbol, "i": o.id, "c": o.client_id}))
            .collect();
        let account = self.list_account(list);
        let event = json!({
            "e": "listStatus",
            "E": now,
            "s": symbol,
            "g": list.id,
            "c": list.contingency.wire_name(),
            "l": status_type,
            "L": order_status,
            "r": "NONE",
            "C": list.client_id,
            "T": now,
            "O": orders,
        });
        self.publish_user(account, &event.to_string());
    }
}

/// Which order of an OCO pair holds the pair's reservation: the limit-maker (it can trade as a
/// maker any time), else the first.
fn holder_index(pair: &[&NewOrder]) -> usize {
    pair.iter().position(|r| r.kind == Kind::LimitMaker).unwrap_or(0)
}
