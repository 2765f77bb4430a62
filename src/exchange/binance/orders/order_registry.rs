//! The order registry: every order keyed by client order id with its owning strategy, its
//! state merged by [`super::order_state`], and the journal that makes both survive restarts.
//!
//! Finished orders (FILLED, CANCELED, REJECTED, EXPIRED) are kept only in a bounded
//! window of the most recently finished ([`RECENT_FINISHED_ORDERS`]), in memory and in
//! the journal alike, so neither grows with the number of orders ever placed. Within the
//! window `orders.get` still answers from the registry and a custom client id stays
//! refused as in use; an order finished longer ago is forgotten (the exchange allows
//! reusing the client id of an order that is no longer open). Orders not yet final are
//! always kept: a restart must look each of them up.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use crate::exchange::types::{ApiError, ClientOrderId, ErrorCode, ListRef, Order, OrderRef, OrderStatus, StrategyId};

use super::client_ids::ClientIds;
use super::journal::{Journal, JournalRecord};
use super::order_state::{merge, Applied, OrderUpdate};
use super::symbols::ValidOrder;

/// How many finished orders the registry (and so the journal) keeps.
pub const RECENT_FINISHED_ORDERS: usize = 10_000;
/// Open orders the registry's tables are sized for at start (they grow past it if need be).
const OPEN_ORDERS_SIZED_FOR: usize = 1024;
/// The most entries the tables are sized for at start (a window set larger grows them).
const MAX_SIZED_FOR: usize = 1 << 17;

/// An order and what was placed: the view strategies see, and the grid-exact order the journal keeps.
struct Tracked {
    order: Order,
    placed: ValidOrder,
    /// The client id of the order list it was sent in.
    list: Option<String>,
}

struct State {
    /// Boxed, and sized at start for the window (see `State::new`).
    orders: HashMap<String, Box<Tracked>>,
    by_exchange_id: HashMap<u64, String>,
    /// Client ids of finished orders, oldest first.
    finished: VecDeque<String>,
    recent_finished: usize,
}

impl State {
    /// Sized at start for the window of finished orders and as many open ones again as
    /// [`OPEN_ORDERS_SIZED_FOR`]: a map that grows doubles, and copying it (megabytes, into memory
    /// touched for the first time) held up the order being placed by up to a millisecond. The
    /// entries are boxed so that the table itself stays small (32 bytes an entry).
    fn new(recent_finished: usize) -> Self {
        let orders = recent_finished.saturating_add(OPEN_ORDERS_SIZED_FOR).min(MAX_SIZED_FOR);
        State {
            orders: HashMap::with_capacity(orders),
            by_exchange_id: HashMap::with_capacity(orders),
            finished: VecDeque::with_capacity(recent_finished.saturating_add(1).min(MAX_SIZED_FOR)),
            recent_finished,
        }
    }

    /// Applies `update` to a known order; the order, and the journal record of its new state, when
    /// something changed.
    fn merge(&mut self, update: &OrderUpdate) -> Option<(Applied, JournalRecord)> {
        let tracked = self.orders.get_mut(&update.client_id)?;
        let first_fill = merge(&mut tracked.order, update)?;
        let record = update_record(&tracked.order, &tracked.placed);
        let order = tracked.order.clone();
        if let Some(id) = order.id {
            self.by_exchange_id.insert(id, order.client_id.clone());
        }
        if order.status.is_final() {
            self.finished(&order.client_id);
        }
        Some((Applied { order, first_fill }, record))
    }

    /// Keeps the order among the recently finished, forgetting the oldest beyond the window.
    fn finished(&mut self, client_id: &str) {
        self.finished.push_back(client_id.to_string());
        while self.finished.len() > self.recent_finished {
            let Some(oldest) = self.finished.pop_front() else { break };
            // A re-used id may name a newer order that is not final: keep that one.
            if self.orders.get(&oldest).is_some_and(|o| o.order.status.is_final()) {
                if let Some(tracked) = self.orders.remove(&oldest) {
                    if let Some(id) = tracked.order.id {
                        if self.by_exchange_id.get(&id) == Some(&oldest) {
                            self.by_exchange_id.remove(&id);
                        }
                    }
                }
            }
        }
    }

    /// The records a restart needs, and nothing more: finished orders in the order they
    /// finished (so replay keeps the same window), then every order not final.
    fn snapshot(&self) -> Vec<JournalRecord> {
        let finished = self
            .finished
            .iter()
            .filter_map(|id| self.orders.get(id).map(Box::as_ref));
        let mut unresolved: Vec<&Tracked> = self
            .orders
            .values()
            .map(Box::as_ref)
            .filter(|t| !t.order.status.is_final())
            .collect();
        unresolved.sort_by(|a, b| (a.order.time, &a.order.client_id).cmp(&(b.order.time, &b.order.client_id)));
        let mut records = Vec::new();
        for tracked in finished.chain(unresolved) {
            let order = &tracked.order;
            match ClientOrderId::new(order.client_id.as_str()) {
                Ok(client_id) => records.push(new_record(
                    &order.strategy,
                    client_id,
                    &tracked.placed,
                    order.time,
                    tracked.list.clone(),
                )),
                // Registered ids are valid; nothing else gets in.
                Err(e) => tracing::error!("not journaled: {e}"),
            }
            if order.status != OrderStatus::Pending || order.id.is_some() || order.filled_qty > 0.0 {
                records.push(update_record(order, &tracked.placed));
            }
        }
        records
    }
}

/// The record written before an order is sent.
fn new_record(
    strategy: &StrategyId,
    client_id: ClientOrderId,
    placed: &ValidOrder,
    time: i64,
    list_client_id: Option<String>,
) -> JournalRecord {
    JournalRecord::New {
        client_id,
        strategy: strategy.to_string(),
        order: placed.clone(),
        time,
        list_client_id,
    }
}

/// The record of an order's current state.
fn update_record(order: &Order, placed: &ValidOrder) -> JournalRecord {
    JournalRecord::Update {
        client_id: order.client_id.clone(),
        id: order.id,
        status: order.status,
        filled_qty: order.filled_qty,
        filled_quote: order.filled_quote,
        reject_reason: order.reject_reason.clone(),
        time: order.update_time,
        quantity: Some(order.quantity).filter(|q| *q < placed_quantity(placed)),
        list_id: order.list_id,
    }
}

/// The quantity `placed` was sent with (0 for a MARKET order by quote amount).
fn placed_quantity(placed: &ValidOrder) -> f64 {
    decimal(placed.kind().quantity())
}

fn decimal(value: Option<Decimal>) -> f64 {
    value.and_then(|d| d.to_f64()).unwrap_or(0.0)
}

/// `placed` as strategies see it before the exchange has answered.
fn pending(strategy: StrategyId, client_id: &ClientOrderId, placed: &ValidOrder, time: i64) -> Order {
    let fields = placed.kind().fields();
    Order {
        strategy,
        id: None,
        client_id: client_id.to_string(),
        symbol: placed.symbol().to_string(),
        side: placed.side(),
        order_type: placed.kind().order_type(),
        tif: fields.tif,
        status: OrderStatus::Pending,
        price: decimal(fields.price),
        quantity: decimal(fields.quantity),
        filled_qty: 0.0,
        filled_quote: 0.0,
        avg_price: 0.0,
        last_fill_qty: 0.0,
        last_fill_price: 0.0,
        last_commission: 0.0,
        commission_asset: None,
        reject_reason: None,
        time,
        update_time: time,
        stop_price: fields.stop_price.map(|p| decimal(Some(p))),
        list_id: None,
    }
}

/// A newly registered order. Dropped once the order is sent (or is known not to be), which lets
/// its journal record go to the disk: not earlier, so the sync does not compete with the send.
pub struct Registered {
    journal: Option<Arc<Journal>>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(journal) = &self.journal {
            journal.sent();
        }
    }
}

pub struct OrderRegistry {
    state: Mutex<State>,
    journal: Option<Arc<Journal>>,
    /// The background compaction last started.
    compaction: Mutex<Option<JoinHandle<()>>>,
    client_ids: ClientIds,
}

impl OrderRegistry {
    /// `journal` records come from [`Journal::open`]; `start_ms` seeds the id prefix
    /// so ids minted by this process never repeat those of an earlier run.
    pub fn new(journal: Option<(Journal, Vec<JournalRecord>)>, start_ms: i64) -> Self {
        Self::with_recent_finished(journal, start_ms, RECENT_FINISHED_ORDERS)
    }

    /// [`new`](Self::new), keeping `recent_finished` finished orders instead of the default.
    /// The journal is compacted to the replayed state before the registry is used.
    pub fn with_recent_finished(
        journal: Option<(Journal, Vec<JournalRecord>)>,
        start_ms: i64,
        recent_finished: usize,
    ) -> Self {
        let mut state = State::new(recent_finished);
        let journal = journal.map(|(journal, records)| {
            replay(&mut state, records);
            if journal.size_bytes() > 0 && journal.begin_compaction() {
                if let Err(e) = journal.finish_compaction(&state.snapshot()) {
                    tracing::error!("compacting at open: {e}");
                }
            }
            Arc::new(journal)
        });
        OrderRegistry {
            state: Mutex::new(state),
            journal,
            compaction: Mutex::new(None),
            client_ids: ClientIds::new(start_ms),
        }
    }

    /// A fresh client order id, never one of an earlier run's.
    pub fn mint_client_id(&self) -> ClientOrderId {
        self.client_ids.mint()
    }

    /// Records a new order as PENDING and journals it before returning (written, and on the disk if the
    /// journal's policy says so: see `JournalSync`). Hold the result until the order is sent: its
    /// record's disk sync starts when it is dropped.
    /// A client id already known is refused: the exchange would reject or, worse, confuse it.
    pub fn register(
        &self,
        strategy: &StrategyId,
        client_id: &ClientOrderId,
        placed: &ValidOrder,
        time: i64,
    ) -> Result<Registered, ApiError> {
        self.register_all(strategy, None, &[(client_id, placed)], time)
    }

    /// [`register`](Self::register) for every order of a list at once, each journaled with the list's
    /// client id: all of them or, if one id is in use or the journal fails, none.
    pub fn register_list(
        &self,
        strategy: &StrategyId,
        list_client_id: &ClientOrderId,
        orders: &[(&ClientOrderId, &ValidOrder)],
        time: i64,
    ) -> Result<Registered, ApiError> {
        self.register_all(strategy, Some(list_client_id.as_str()), orders, time)
    }

    fn register_all(
        &self,
        strategy: &StrategyId,
        list: Option<&str>,
        orders: &[(&ClientOrderId, &ValidOrder)],
        time: i64,
    ) -> Result<Registered, ApiError> {
        let mut state = self.state.lock();
        let repeated = |i: usize, id: &ClientOrderId| orders[..i].iter().any(|(other, _)| *other == id);
        let taken = orders
            .iter()
            .enumerate()
            .find(|(i, (id, _))| state.orders.contains_key(id.as_str()) || repeated(*i, id));
        if let Some((_, (client_id, _))) = taken {
            return Err(ApiError::new(
                ErrorCode::InvalidOrder,
                format!("client_id {:?} is already in use", client_id.as_str()),
            ));
        }
        let list = list.map(str::to_string);
        for (i, &(client_id, placed)) in orders.iter().enumerate() {
            if let Some(journal) = &self.journal {
                let record = new_record(strategy, client_id.clone(), placed, time, list.clone());
                if let Err(e) = journal.append_for_send(&record) {
                    // The ones already written are spent, never sent.
                    for (written, _) in &orders[..i] {
                        state.orders.remove(written.as_str());
                        self.journal_write(&JournalRecord::Unsent {
                            client_id: written.to_string(),
                            reason: "journal".into(),
                        });
                    }
                    return Err(ApiError::new(ErrorCode::InvalidOrder, format!("not sent: {e}")));
                }
            }
            let tracked = Tracked {
                order: pending(Arc::clone(strategy), client_id, placed, time),
                placed: placed.clone(),
                list: list.clone(),
            };
            state.orders.insert(client_id.to_string(), Box::new(tracked));
        }
        drop(state);
        // Outside the lock: a wait for the disk must not hold up other strategies' orders.
        if let Some(Err(e)) = self.journal.as_deref().map(Journal::before_send) {
            for (client_id, _) in orders {
                self.unsent(client_id.as_str(), "journal");
            }
            return Err(ApiError::new(ErrorCode::InvalidOrder, format!("not sent: {e}")));
        }
        self.compact_if_grown();
        Ok(Registered {
            journal: self.journal.clone(),
        })
    }

    /// The client id of the list `list` names and its orders, when they are `strategy`'s on `symbol`.
    pub fn list_orders(&self, strategy: &str, symbol: &str, list: &ListRef) -> Option<(String, Vec<Order>)> {
        let state = self.state.lock();
        let mine = |t: &&Tracked| &*t.order.strategy == strategy && t.order.symbol == symbol;
        let client_id = match list {
            ListRef::ClientId(id) => id.clone(),
            ListRef::Id(id) => state
                .orders
                .values()
                .map(Box::as_ref)
                .filter(mine)
                .find(|t| t.order.list_id == Some(*id))?
                .list
                .clone()?,
        };
        let mut orders: Vec<Order> = state
            .orders
            .values()
            .map(Box::as_ref)
            .filter(mine)
            .filter(|t| t.list.as_deref() == Some(client_id.as_str()))
            .map(|t| t.order.clone())
            .collect();
        if orders.is_empty() {
            return None;
        }
        orders.sort_by(|a, b| (a.time, &a.client_id).cmp(&(b.time, &b.client_id)));
        Some((client_id, orders))
    }

    /// The order was never sent: forget it (its id stays spent in the journal).
    pub fn unsent(&self, client_id: &str, reason: &str) {
        let mut state = self.state.lock();
        state.orders.remove(client_id);
        // Under the lock: a re-registration of the id must be journaled after this.
        self.journal_write(&JournalRecord::Unsent {
            client_id: client_id.to_string(),
            reason: reason.to_string(),
        });
        drop(state);
        self.compact_if_grown();
    }

    /// Applies an update; returns the new order when something changed.
    pub fn apply(&self, update: &OrderUpdate) -> Option<Applied> {
        let mut state = self.state.lock();
        let (applied, record) = state.merge(update)?;
        // Written under the lock, so the journal's order is the order of the changes
        // (replay then finishes orders in the same order); synced after it.
        self.journal_write(&record);
        drop(state);
        self.compact_if_grown();
        Some(applied)
    }

    fn journal_write(&self, record: &JournalRecord) {
        if let Some(journal) = &self.journal {
            if let Err(e) = journal.append(record) {
                tracing::error!("{e}");
            }
        }
    }

    /// Compacts the journal on a thread of its own once it has grown enough; appends
    /// (and so order placement) wait only for its final rename.
    fn compact_if_grown(&self) {
        let Some(journal) = &self.journal else { return };
        if !journal.wants_compaction() {
            return;
        }
        let snapshot = {
            // The state lock orders every change with the start of the compaction.
            let state = self.state.lock();
            if !journal.begin_compaction() {
                return;
            }
            state.snapshot()
        };
        let worker = Arc::clone(journal);
        let spawned = std::thread::Builder::new()
            .name("journal-compaction".into())
            .spawn(move || {
                if let Err(e) = worker.finish_compaction(&snapshot) {
                    tracing::error!("compacting: {e}");
                }
            });
        match spawned {
            Ok(handle) => *self.compaction.lock() = Some(handle),
            Err(e) => {
                journal.abandon_compaction();
                tracing::error!("cannot start the journal compaction: {e}");
            }
        }
    }

    pub fn get(&self, client_id: &str) -> Option<Order> {
        self.state.lock().orders.get(client_id).map(|t| t.order.clone())
    }

    /// Whether this process placed (or restored) the order, without copying it.
    pub fn owns(&self, client_id: &str) -> bool {
        self.state.lock().orders.contains_key(client_id)
    }

    pub fn find(&self, order: &OrderRef) -> Option<Order> {
        let state = self.state.lock();
        match order {
            OrderRef::ClientId(id) => state.orders.get(id).map(|t| t.order.clone()),
            OrderRef::Id(id) => state
                .by_exchange_id
                .get(id)
                .and_then(|c| state.orders.get(c))
                .map(|t| t.order.clone()),
        }
    }

    /// This strategy's orders that are not final (PENDING included).
    pub fn open_orders(&self, strategy: &str, symbol: Option<&str>) -> Vec<Order> {
        let state = self.state.lock();
        let mut open: Vec<Order> = state
            .orders
            .values()
            .map(|t| &t.order)
            .filter(|o| &*o.strategy == strategy && !o.status.is_final())
            .filter(|o| symbol.is_none_or(|s| o.symbol == s))
            .cloned()
            .collect();
        open.sort_by(|a, b| (a.time, &a.client_id).cmp(&(b.time, &b.client_id)));
        open
    }

    /// Every order whose final state is not known.
    pub fn unresolved(&self) -> Vec<Order> {
        self.state
            .lock()
            .orders
            .values()
            .map(|t| &t.order)
            .filter(|o| !o.status.is_final())
            .cloned()
            .collect()
    }

    /// A clean shutdown: marks the journal so the next start knows no record was lost, then flushes.
    pub fn close(&self, time: i64) {
        self.journal_write(&JournalRecord::Closed { time });
        self.flush();
    }

    /// Waits for a running compaction, then for every record to be on disk.
    pub fn flush(&self) {
        let compaction = self.compaction.lock().take();
        if compaction.is_some_and(|handle| handle.join().is_err()) {
            tracing::error!("the journal compaction panicked");
        }
        if let Some(journal) = &self.journal {
            if let Err(e) = journal.flush() {
                tracing::error!("{e}");
            }
        }
    }
}

fn replay(state: &mut State, records: Vec<JournalRecord>) {
    for record in records {
        match record {
            JournalRecord::New {
                client_id,
                strategy,
                order: placed,
                time,
                list_client_id,
            } => {
                let order = pending(Arc::from(strategy), &client_id, &placed, time);
                let tracked = Tracked {
                    order,
                    placed,
                    list: list_client_id,
                };
                state.orders.insert(client_id.to_string(), Box::new(tracked));
            }
            JournalRecord::Update {
                client_id,
                id,
                status,
                filled_qty,
                filled_quote,
                reject_reason,
                time,
                quantity,
                list_id,
            } => {
                let update = OrderUpdate {
                    client_id,
                    id,
                    status: Some(status),
                    filled_qty,
                    filled_quote,
                    last_fill_qty: 0.0,
                    last_fill_price: 0.0,
                    last_commission: 0.0,
                    commission_asset: None,
                    reject_reason,
                    update_time: time,
                    quantity,
                    list_id,
                };
                state.merge(&update);
            }
            JournalRecord::Unsent { client_id, .. } => {
                state.orders.remove(&client_id);
            }
            JournalRecord::Closed { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::journal::JOURNAL_FILE;
    use super::super::symbols::{grid_only_btcusdt, validate};
    use super::*;
    use crate::exchange::types::{OrderRequest, OrderType, Side};

    /// An order as the venue registers it: owner, client id, grid-exact order.
    struct NewOrder {
        strategy: StrategyId,
        client_id: String,
        order: ValidOrder,
    }

    fn new_order(registry: &OrderRegistry, strategy: &str) -> NewOrder {
        let request = OrderRequest::limit("BTCUSDT", Side::Buy, 2.0, 100.0);
        NewOrder {
            strategy: Arc::from(strategy),
            client_id: registry.mint_client_id().to_string(),
            order: validate(&grid_only_btcusdt(), &request, None).unwrap(),
        }
    }

    fn register(registry: &OrderRegistry, new: &NewOrder) -> Result<Registered, ApiError> {
        let client_id = ClientOrderId::new(new.client_id.as_str()).unwrap();
        registry.register(&new.strategy, &client_id, &new.order, 10)
    }

    fn update(client_id: &str, status: OrderStatus, filled: f64, quote: f64) -> OrderUpdate {
        OrderUpdate {
            client_id: client_id.into(),
            id: Some(42),
            status: Some(status),
            filled_qty: filled,
            filled_quote: quote,
            last_fill_qty: filled,
            last_fill_price: 100.0,
            last_commission: 0.0,
            commission_asset: None,
            reject_reason: None,
            update_time: 20,
            quantity: None,
            list_id: None,
        }
    }

    #[test]
    fn a_list_is_registered_whole_with_its_client_id_and_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let list_id = ClientOrderId::new("list-1").unwrap();
        let (a, b);
        {
            let (journal, records) = Journal::open(dir.path()).unwrap();
            let registry = OrderRegistry::new(Some((journal, records)), 0);
            a = new_order(&registry, "lists");
            b = new_order(&registry, "lists");
            let ids = [
                ClientOrderId::new(a.client_id.as_str()).unwrap(),
                ClientOrderId::new(b.client_id.as_str()).unwrap(),
            ];
            let twice = registry.register_list(&a.strategy, &list_id, &[(&ids[0], &a.order), (&ids[0], &b.order)], 10);
            assert!(twice.is_err(), "one id for two orders of the list");
            let pair = registry.mint_client_id();
            let taken = registry.register_list(&a.strategy, &list_id, &[(&ids[0], &a.order), (&pair, &b.order)], 10);
            assert!(taken.is_ok(), "fresh ids");
            drop(taken);
            // An id already in use refuses the whole list: nothing of it is registered.
            let other = ClientOrderId::new("list-2").unwrap();
            let fresh = registry.mint_client_id();
            assert!(registry
                .register_list(&a.strategy, &other, &[(&fresh, &a.order), (&ids[0], &b.order)], 10)
                .is_err());
            assert!(registry.get(fresh.as_str()).is_none());
            registry.register(&b.strategy, &ids[1], &b.order, 10).unwrap();
            let mut member = update(&a.client_id, OrderStatus::New, 0.0, 0.0);
            member.list_id = Some(7);
            registry.apply(&member);
            registry.close(20);
        }
        let (journal, records) = Journal::open(dir.path()).unwrap();
        let registry = OrderRegistry::new(Some((journal, records)), 30);
        let (client_id, orders) = registry
            .list_orders("lists", "BTCUSDT", &ListRef::Id(7))
            .expect("the list, found by its exchange id");
        assert_eq!(client_id, "list-1");
        assert_eq!(orders.len(), 2, "the list's own orders: {orders:?}");
        assert!(orders.iter().any(|o| o.client_id == a.client_id));
        assert!(
            orders.iter().all(|o| o.client_id != b.client_id),
            "not the order placed alone"
        );
        assert!(
            registry.list_orders("other", "BTCUSDT", &ListRef::Id(7)).is_none(),
            "another strategy's"
        );
    }

    #[test]
    fn state_machine_never_regresses_and_reports_first_fill_once() {
        let registry = OrderRegistry::new(None, 0);
        let new = new_order(&registry, "arb");
        let cid = new.client_id.clone();
        register(&registry, &new).unwrap();
        assert!(register(&registry, &new).is_err(), "duplicate client id");

        let applied = registry.apply(&update(&cid, OrderStatus::New, 0.0, 0.0)).unwrap();
        assert_eq!((applied.order.status, applied.first_fill), (OrderStatus::New, false));
        assert!(
            registry.apply(&update(&cid, OrderStatus::New, 0.0, 0.0)).is_none(),
            "no change, no event"
        );
        let applied = registry
            .apply(&update(&cid, OrderStatus::PartiallyFilled, 1.0, 100.0))
            .unwrap();
        assert!(applied.first_fill);
        assert!(
            registry.apply(&update(&cid, OrderStatus::New, 0.0, 0.0)).is_none(),
            "stale NEW ignored"
        );
        let applied = registry.apply(&update(&cid, OrderStatus::Filled, 2.0, 202.0)).unwrap();
        assert_eq!((applied.order.avg_price, applied.first_fill), (101.0, false));
        assert!(
            registry
                .apply(&update(&cid, OrderStatus::Canceled, 2.0, 202.0))
                .is_none(),
            "final stays final"
        );
        assert_eq!(registry.find(&OrderRef::Id(42)).unwrap().client_id, cid);
    }

    #[test]
    fn open_orders_are_per_strategy() {
        let registry = OrderRegistry::new(None, 0);
        let mine = new_order(&registry, "a");
        let theirs = new_order(&registry, "b");
        register(&registry, &mine).unwrap();
        register(&registry, &theirs).unwrap();
        let open = registry.open_orders("a", Some("BTCUSDT"));
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].client_id, mine.client_id);
        assert!(registry.open_orders("a", Some("ETHUSDT")).is_empty());
    }

    #[test]
    fn journal_replay_restores_orders_and_owners() {
        let dir = tempfile::tempdir().unwrap();
        let (kept, filled, unsent);
        {
            let registry = OrderRegistry::new(Some(Journal::open(dir.path()).unwrap()), 1);
            let a = new_order(&registry, "a");
            let b = new_order(&registry, "b");
            let c = new_order(&registry, "a");
            for o in [&a, &b, &c] {
                register(&registry, o).unwrap();
            }
            registry
                .apply(&update(&a.client_id, OrderStatus::New, 0.0, 0.0))
                .unwrap();
            let mut fill = update(&b.client_id, OrderStatus::Filled, 2.0, 200.0);
            fill.id = Some(43);
            registry.apply(&fill).unwrap();
            registry.unsent(&c.client_id, "rate_limited");
            (kept, filled, unsent) = (a.client_id, b.client_id, c.client_id);
        }
        let registry = OrderRegistry::new(Some(Journal::open(dir.path()).unwrap()), 2);
        let restored = registry.get(&kept).unwrap();
        assert_eq!((&*restored.strategy, restored.status), ("a", OrderStatus::New));
        assert_eq!(registry.get(&filled).unwrap().status, OrderStatus::Filled);
        assert!(registry.get(&unsent).is_none());
        assert!(registry.owns(&kept) && !registry.owns(&unsent));
        let unresolved: Vec<String> = registry.unresolved().into_iter().map(|o| o.client_id).collect();
        assert_eq!(unresolved, vec![kept.clone()]);
        assert_eq!(registry.find(&OrderRef::Id(43)).unwrap().client_id, filled);
    }

    /// What replay restores, in a form two replays can be compared by.
    type Restored = (Vec<Order>, Vec<(u64, String)>, Vec<String>);

    fn restored(records: Vec<JournalRecord>, recent_finished: usize) -> Restored {
        let mut state = State::new(recent_finished);
        replay(&mut state, records);
        let mut orders: Vec<Order> = state.orders.into_values().map(|t| t.order).collect();
        orders.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        let mut by_id: Vec<(u64, String)> = state.by_exchange_id.into_iter().collect();
        by_id.sort();
        (orders, by_id, state.finished.into())
    }

    /// The tables are sized for the window at start, so placing orders never makes them grow (a
    /// doubling copied megabytes on the order's path).
    #[test]
    fn the_tables_hold_the_window_without_growing() {
        let registry = OrderRegistry::with_recent_finished(None, 1, 2000);
        let capacity = |r: &OrderRegistry| {
            let state = r.state.lock();
            (
                state.orders.capacity(),
                state.by_exchange_id.capacity(),
                state.finished.capacity(),
            )
        };
        let at_start = capacity(&registry);
        assert!(at_start.0 >= 2000 + OPEN_ORDERS_SIZED_FOR && at_start.1 >= 2000 + OPEN_ORDERS_SIZED_FOR);
        assert!(at_start.2 > 2000);
        // Past the window: the oldest finished are forgotten, and nothing grew (a map's capacity
        // may read a little lower after removals: those slots are reused, not reallocated).
        trade(&registry, 3000);
        let after = capacity(&registry);
        assert!(
            after.0 <= at_start.0 && after.1 <= at_start.1 && after.2 == at_start.2,
            "{after:?} from {at_start:?}"
        );
    }

    /// A day of trading in miniature: orders resting, partly filled, filled, cancelled,
    /// rejected, never sent, and one whose outcome is unknown. Returns the open ones.
    fn trade(registry: &OrderRegistry, orders: u64) -> Vec<String> {
        let mut open = Vec::new();
        for n in 0..orders {
            let new = new_order(registry, if n % 2 == 0 { "a" } else { "b" });
            let cid = new.client_id.clone();
            register(registry, &new).unwrap();
            let at = |status, filled: f64| {
                let mut u = update(&cid, status, filled, filled * 100.0);
                u.id = Some(1000 + n);
                registry.apply(&u);
            };
            match n % 7 {
                0 => registry.unsent(&cid, "rate_limited"),
                1 => {
                    at(OrderStatus::New, 0.0);
                    at(OrderStatus::Filled, 2.0);
                }
                2 => {
                    at(OrderStatus::New, 0.0);
                    at(OrderStatus::PartiallyFilled, 0.5);
                    open.push(cid);
                }
                3 => {
                    registry.apply(&OrderUpdate::rejected(cid, "-2010".into(), 30));
                }
                4 => open.push(cid),
                5 => {
                    at(OrderStatus::New, 0.0);
                    open.push(cid);
                }
                _ => {
                    at(OrderStatus::PartiallyFilled, 1.0);
                    at(OrderStatus::Canceled, 1.0);
                }
            }
        }
        open.sort();
        open
    }

    fn unresolved_ids(registry: &OrderRegistry) -> Vec<String> {
        let mut ids: Vec<String> = registry.unresolved().into_iter().map(|o| o.client_id).collect();
        ids.sort();
        ids
    }

    #[test]
    fn compaction_at_open_keeps_unresolved_orders_and_recent_finished_ones_only() {
        let dir = tempfile::tempdir().unwrap();
        // The records' size (the file may hold zeros written ahead of them).
        let journal_len = |registry: &OrderRegistry| registry.journal.as_ref().map_or(0, |j| j.size_bytes());
        let (open, grown) = {
            // Unbounded here, so the journal holds every finished order when it is reopened.
            let registry = OrderRegistry::with_recent_finished(Some(Journal::open(dir.path()).unwrap()), 1, usize::MAX);
            (trade(&registry, 70), journal_len(&registry))
        };
        let (journal, before) = Journal::open(dir.path()).unwrap();
        let registry = OrderRegistry::with_recent_finished(Some((journal, before.clone())), 2, 3);
        assert_eq!(unresolved_ids(&registry), open);
        assert!(!open.is_empty());
        let kept = journal_len(&registry);
        assert!(kept < grown / 2, "{kept} bytes of {grown} kept");

        let after = Journal::read(dir.path()).unwrap();
        assert!(after.len() < before.len());
        let finished: Vec<String> = restored(after, 3).2;
        assert_eq!(finished.len(), 3);
        assert_eq!(finished, restored(before, 3).2, "the most recently finished");
        for cid in &finished {
            assert!(registry.get(cid).is_some_and(|o| o.status.is_final()));
        }
    }

    #[test]
    fn replay_after_compaction_restores_what_replay_before_it_did() {
        let dir = tempfile::tempdir().unwrap();
        {
            let registry = OrderRegistry::with_recent_finished(Some(Journal::open(dir.path()).unwrap()), 1, usize::MAX);
            trade(&registry, 100);
        }
        for window in [usize::MAX, 5, 0] {
            let (journal, before) = Journal::open(dir.path()).unwrap();
            let expected = restored(before.clone(), window);
            drop(OrderRegistry::with_recent_finished(Some((journal, before)), 2, window));
            let (_, after) = Journal::open(dir.path()).unwrap();
            assert_eq!(restored(after, window), expected, "window {window}");
        }
    }

    #[test]
    fn the_journal_is_compacted_in_the_background_once_it_grows() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let journal = (journal.0.with_compact_min_bytes(3_000), journal.1);
        let registry = OrderRegistry::with_recent_finished(Some(journal), 1, 10);
        // Several threads at once, as strategies place and the user stream reports.
        let mut open: Vec<String> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let mut open = Vec::new();
                        for n in 0..100 {
                            let new = new_order(&registry, "a");
                            register(&registry, &new).unwrap();
                            registry.apply(&update(&new.client_id, OrderStatus::New, 0.0, 0.0));
                            if n % 50 == 0 {
                                open.push(new.client_id);
                            } else {
                                registry.apply(&update(&new.client_id, OrderStatus::Filled, 2.0, 200.0));
                            }
                        }
                        open
                    })
                })
                .collect();
            workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
        });
        open.sort();
        // Orders placed while a compaction runs are carried into its new file, so a fast burst can
        // leave the file past the threshold; the next change after it compacts again.
        registry.flush();
        let last = new_order(&registry, "a");
        register(&registry, &last).unwrap();
        registry.apply(&update(&last.client_id, OrderStatus::Filled, 2.0, 200.0));
        registry.flush();
        let len = std::fs::metadata(dir.path().join(JOURNAL_FILE)).unwrap().len();
        // Uncompacted, these orders take some 180 kB; compacted, a few kB that may double
        // before the next compaction.
        assert!(len < 30_000, "{len} bytes");

        // Replaying the compacted journal gives the registry as it was.
        let records = Journal::read(dir.path()).unwrap();
        let (orders, _, finished) = restored(records, 10);
        let live = registry.state.lock();
        let summary = |o: &Order| (o.client_id.clone(), o.status, o.filled_qty, o.id, o.strategy.clone());
        let mut expected: Vec<_> = live.orders.values().map(|t| summary(&t.order)).collect();
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(orders.iter().map(summary).collect::<Vec<_>>(), expected);
        assert_eq!(finished, Vec::from(live.finished.clone()));
        let mut unresolved: Vec<String> = orders
            .iter()
            .filter(|o| !o.status.is_final())
            .map(|o| o.client_id.clone())
            .collect();
        unresolved.sort();
        assert_eq!(unresolved, open);
    }

    #[test]
    fn finished_orders_beyond_the_window_are_forgotten() {
        let registry = OrderRegistry::with_recent_finished(None, 0, 2);
        let ids: Vec<String> = (0..3)
            .map(|n| {
                let new = new_order(&registry, "a");
                register(&registry, &new).unwrap();
                let mut fill = update(&new.client_id, OrderStatus::Filled, 2.0, 200.0);
                fill.id = Some(n);
                registry.apply(&fill).unwrap();
                new.client_id
            })
            .collect();
        assert!(registry.get(&ids[0]).is_none() && registry.find(&OrderRef::Id(0)).is_none());
        assert!(registry.get(&ids[1]).is_some() && registry.find(&OrderRef::Id(2)).is_some());
    }

    /// A journal as the version before typed orders wrote it (floats, 0 for "none") restores the
    /// same orders, and is rewritten in the current form by the compaction at open.
    #[test]
    fn a_journal_written_before_typed_orders_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let old = [
            r#"{"t":"new","client_id":"rmk3f1a-0","strategy":"grid","symbol":"BTCUSDT","side":"BUY","order_type":"LIMIT","tif":"GTC","price":100.5,"quantity":0.25,"time":1}"#,
            r#"{"t":"update","client_id":"rmk3f1a-0","id":7,"status":"PARTIALLY_FILLED","filled_qty":0.1,"filled_quote":10.05,"time":2}"#,
            r#"{"t":"new","client_id":"rmk3f1a-1","strategy":"grid","symbol":"BTCUSDT","side":"SELL","order_type":"MARKET","price":0.0,"quantity":0.001,"time":3}"#,
            r#"{"t":"update","client_id":"rmk3f1a-1","id":8,"status":"FILLED","filled_qty":0.001,"filled_quote":0.1,"time":4}"#,
            r#"{"t":"new","client_id":"rmk3f1a-2","strategy":"taker","symbol":"BTCUSDT","side":"BUY","order_type":"LIMIT_MAKER","price":99.0,"quantity":1.0,"time":5}"#,
            r#"{"t":"new","client_id":"rmk3f1a-3","strategy":"taker","symbol":"BTCUSDT","side":"BUY","order_type":"LIMIT","tif":"IOC","price":101.0,"quantity":1.0,"time":6}"#,
            r#"{"t":"unsent","client_id":"rmk3f1a-3","reason":"rate_limited"}"#,
        ];
        std::fs::write(dir.path().join(JOURNAL_FILE), old.join("\n") + "\n").unwrap();
        let check = |registry: &OrderRegistry| {
            let partly = registry.get("rmk3f1a-0").unwrap();
            assert_eq!(
                (
                    &*partly.strategy,
                    partly.status,
                    partly.price,
                    partly.quantity,
                    partly.filled_qty
                ),
                ("grid", OrderStatus::PartiallyFilled, 100.5, 0.25, 0.1)
            );
            assert_eq!(registry.find(&OrderRef::Id(7)).unwrap().client_id, "rmk3f1a-0");
            let market = registry.get("rmk3f1a-1").unwrap();
            assert_eq!(
                (market.status, market.price, market.quantity),
                (OrderStatus::Filled, 0.0, 0.001)
            );
            let pending = registry.get("rmk3f1a-2").unwrap();
            assert_eq!(
                (pending.status, pending.order_type),
                (OrderStatus::Pending, OrderType::LimitMaker)
            );
            assert!(registry.get("rmk3f1a-3").is_none());
        };
        let (journal, records) = Journal::open(dir.path()).unwrap();
        assert_eq!(records.len(), old.len(), "every line read");
        check(&OrderRegistry::new(Some((journal, records)), 1));
        // Compacted at open into the typed form, which reads back the same.
        let text = std::fs::read_to_string(dir.path().join(JOURNAL_FILE)).unwrap();
        assert!(text.contains(r#""price":"100.5""#), "{text}");
        check(&OrderRegistry::new(Some(Journal::open(dir.path()).unwrap()), 2));
    }
}
