//! The exchange's state and its matching: per-symbol books, users' orders, balances with locked
//! amounts, price-time matching with the configured commission. What a change publishes is built by
//! [`super::feed`] (market streams) and [`super::user_reports`] (execution reports, order shapes).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use rust_decimal::Decimal;

use super::book::{Amount, Book, Cadence, Maker, MakerFill};
use super::candles::Candles;
use super::config::{Fees, SymbolSpec};
use super::error::ApiErr;
use super::feed;
use super::hub::{Hub, UserHub};
use super::limiter::Limiter;
use super::num::{d8, is_multiple};
use super::order_lists::OrderLists;
use super::order_record::Prevented;
use super::order_record::{Kind, NewOrder, Order};
use super::stp::{PreventedMatch, Stp};
use super::symbol_state::{Market, StreamNames, TradeRec};
use super::user_reports::{Exec, LastFill};
use crate::exchange::binance::wire::{AccountPosition, DepthSnapshot, Fill, PositionBalance, UserDataEvent};
use crate::exchange::types::{OrderStatus, Side, TimeInForce};

const RECENT_TRADES: usize = 1_000;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Balance {
    pub free: Decimal,
    pub locked: Decimal,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MyTradeRec {
    pub symbol: usize,
    pub id: u64,
    pub order_id: u64,
    pub price: Decimal,
    pub qty: Decimal,
    pub commission: Decimal,
    pub commission_asset: String,
    pub time: i64,
    pub is_buyer: bool,
    pub is_maker: bool,
}

/// The taker of an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taker {
    Synthetic,
    User(u64),
}

pub struct Exchange {
    pub markets: Vec<Market>,
    index: HashMap<String, usize>,
    pub(super) orders: BTreeMap<u64, Order>,
    by_client: HashMap<String, Vec<u64>>,
    /// Each account's balances, by account number (all start with the configured balances).
    balances: BTreeMap<u16, BTreeMap<String, Balance>>,
    my_trades: Vec<MyTradeRec>,
    next_order_id: u64,
    /// `(account, asset)` whose balance changed since the last account-position event.
    changed_assets: BTreeSet<(u16, String)>,
    dirty_tops: BTreeSet<usize>,
    account_update_time: i64,
    /// Execution reports made so far (each report's `I`).
    pub(super) execution_id: u64,
    /// Symbols that printed a trade since their stop orders were last checked.
    traded: BTreeSet<usize>,
    /// Untriggered stop / take-profit orders.
    pending_stops: BTreeSet<u64>,
    /// Icebergs whose visible part was just consumed, to show again.
    iceberg_refills: Vec<u64>,
    pub(super) lists: OrderLists,
    /// Prevented matches so far (self-trade prevention), numbering the next one.
    prevented_matches: u64,
    /// Every prevented match, oldest first (`myPreventedMatches`).
    pub(super) prevented: Vec<PreventedMatch>,
    hub: Arc<Hub>,
    pub(super) users: Arc<UserHub>,
    pub(super) limiter: Arc<Mutex<Limiter>>,
    /// Commission rates of the user's fills.
    fees: Fees,
}

/// The result of an accepted order: its id and the fills it took at once.
#[derive(Debug)]
pub struct Placed {
    pub order_id: u64,
    pub fills: Vec<Fill>,
}

impl Exchange {
    pub fn new(
        specs: &[SymbolSpec],
        balances: &[(String, Decimal)],
        hub: Arc<Hub>,
        users: Arc<UserHub>,
        limiter: Arc<Mutex<Limiter>>,
    ) -> Self {
        let markets: Vec<Market> = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let lower = spec.symbol.to_ascii_lowercase();
                Market {
                    streams: StreamNames::new(&lower),
                    spec: spec.clone(),
                    book: Book::new(1_000_000 * (i as u64 + 1)),
                    trades: VecDeque::new(),
                    next_trade_id: 1,
                    candles: Candles::default(),
                    last_top: (None, None),
                    open_orders: 0,
                }
            })
            .collect();
        let index = markets
            .iter()
            .enumerate()
            .map(|(i, m)| (m.spec.symbol.clone(), i))
            .collect();
        let balances = balances
            .iter()
            .map(|(a, free)| {
                (
                    a.clone(),
                    Balance {
                        free: *free,
                        locked: Decimal::ZERO,
                    },
                )
            })
            .collect();
        let balances = BTreeMap::from([(0, balances)]);
        Exchange {
            markets,
            index,
            orders: BTreeMap::new(),
            by_client: HashMap::new(),
            balances,
            my_trades: Vec::new(),
            next_order_id: 1,
            changed_assets: BTreeSet::new(),
            dirty_tops: BTreeSet::new(),
            account_update_time: 0,
            execution_id: 0,
            traded: BTreeSet::new(),
            pending_stops: BTreeSet::new(),
            iceberg_refills: Vec::new(),
            lists: OrderLists::default(),
            prevented_matches: 0,
            prevented: Vec::new(),
            hub,
            users,
            limiter,
            fees: Fees::default(),
        }
    }

    /// Commission rates of the fills from now on.
    pub fn set_fees(&mut self, fees: Fees) {
        self.fees = fees;
    }

    /// Opens accounts 1..`accounts`, each with the first account's starting balances (before any
    /// trading).
    pub fn set_accounts(&mut self, accounts: u16) {
        let start = self.balances.get(&0).cloned().unwrap_or_default();
        for account in 1..accounts {
            self.balances.entry(account).or_insert_with(|| start.clone());
        }
    }

    /// `account`'s balance of `asset`, to change (an account never seen starts with nothing).
    fn balance_mut(&mut self, account: u16, asset: &str) -> &mut Balance {
        self.balances
            .entry(account)
            .or_default()
            .entry(asset.to_string())
            .or_default()
    }

    pub fn fees(&self) -> Fees {
        self.fees
    }

    pub fn symbol_index(&self, symbol: &str) -> Option<usize> {
        self.index.get(symbol).copied()
    }

    /// The first account's balances.
    pub fn balances(&self) -> BTreeMap<String, Balance> {
        self.balances_of(0)
    }

    pub fn balances_of(&self, account: u16) -> BTreeMap<String, Balance> {
        self.balances.get(&account).cloned().unwrap_or_default()
    }

    pub fn account_update_time(&self) -> i64 {
        self.account_update_time
    }

    pub fn order(&self, id: u64) -> Option<&Order> {
        self.orders.get(&id)
    }

    /// `account`'s latest order with this client id (client ids are unique per account).
    pub fn order_by_client(&self, account: u16, client_id: &str) -> Option<&Order> {
        self.by_client
            .get(client_id)?
            .iter()
            .rev()
            .filter_map(|id| self.orders.get(id))
            .find(|o| o.account == account)
    }

    pub fn orders_by_client(&self, client_id: &str) -> Vec<&Order> {
        self.by_client
            .get(client_id)
            .map(|ids| ids.iter().filter_map(|id| self.orders.get(id)).collect())
            .unwrap_or_default()
    }

    pub fn orders(&self) -> impl DoubleEndedIterator<Item = &Order> {
        self.orders.values()
    }

    pub fn my_trades(&self) -> &[MyTradeRec] {
        &self.my_trades
    }

    pub fn depth(&self, symbol: usize, limit: usize) -> DepthSnapshot {
        self.markets[symbol].book.snapshot(limit)
    }

    // ---- orders ----

    /// Filter checks with the exchange's messages, without touching any state.
    pub fn validate(&self, req: &NewOrder) -> Result<(), ApiErr> {
        let m = &self.markets[req.symbol];
        let spec = &m.spec;
        if let Some(price) = req.price {
            if price <= Decimal::ZERO {
                return Err(ApiErr::bad(-1013, "Invalid price."));
            }
            if price < spec.tick_size || price > spec.max_price() || !is_multiple(price, spec.tick_size) {
                return Err(ApiErr::filter("PRICE_FILTER"));
            }
        }
        if let Some(qty) = req.qty {
            if qty <= Decimal::ZERO {
                return Err(ApiErr::bad(-1013, "Invalid quantity."));
            }
            let filter = if req.kind.active() == Kind::Market {
                "MARKET_LOT_SIZE"
            } else {
                "LOT_SIZE"
            };
            if qty < spec.min_qty || qty > spec.max_qty || !is_multiple(qty, spec.step_size) {
                return Err(ApiErr::filter(filter));
            }
        }
        if let Some(q) = req.quote_qty {
            if q <= Decimal::ZERO {
                return Err(ApiErr::bad(-1013, "Invalid quantity."));
            }
        }
        if let Some(stop) = req.stop_price {
            if stop <= Decimal::ZERO {
                return Err(ApiErr::bad(-1013, "Invalid stopPrice."));
            }
            if stop < spec.tick_size || stop > spec.max_price() || !is_multiple(stop, spec.tick_size) {
                return Err(ApiErr::filter("PRICE_FILTER"));
            }
        }
        let notional = match (req.kind, req.price, req.qty, req.quote_qty) {
            (Kind::Market, _, _, Some(q)) => Some(q),
            (Kind::Market, _, Some(qty), None) => self.reference_price(req.symbol).map(|p| p * qty),
            (Kind::StopLoss | Kind::TakeProfit, _, Some(qty), _) => req.stop_price.map(|s| s * qty),
            (_, Some(price), Some(qty), _) => Some(price * qty),
            _ => None,
        };
        let market = req.kind.active() == Kind::Market;
        let over_max = !market && notional.is_some_and(|n| n > spec.max_notional());
        if notional.is_some_and(|n| n < spec.min_notional) || over_max {
            return Err(ApiErr::filter("NOTIONAL"));
        }
        if req.kind != Kind::Market && m.open_orders + self.pending_on(req.symbol) >= spec.max_num_orders as usize {
            return Err(ApiErr::filter("MAX_NUM_ORDERS"));
        }
        if let (Some(iceberg), Some(qty)) = (req.iceberg_qty, req.qty) {
            if iceberg <= Decimal::ZERO || iceberg >= qty {
                return Err(ApiErr::bad(-1013, "Invalid icebergQty."));
            }
            if iceberg < spec.min_qty || !is_multiple(iceberg, spec.step_size) {
                return Err(ApiErr::filter("LOT_SIZE"));
            }
            if (qty / iceberg).ceil() > Decimal::from(super::api::ICEBERG_PARTS) {
                return Err(ApiErr::filter("ICEBERG_PARTS"));
            }
        }
        if let (true, Some(stop), Some(last)) = (req.kind.is_conditional(), req.stop_price, m.trades.back()) {
            if req.kind.triggers(req.side, stop, last.price) {
                return Err(ApiErr::rejected("Order would trigger immediately."));
            }
        }
        if let Some(cid) = &req.client_id {
            if self
                .order_by_client(req.account, cid)
                .is_some_and(|o| o.status.is_open())
            {
                return Err(ApiErr::rejected("Duplicate order sent."));
            }
        }
        if req.kind == Kind::LimitMaker {
            if let Some(price) = req.price {
                if m.book.would_cross(req.side, price) {
                    return Err(ApiErr::rejected("Order would immediately match and take."));
                }
            }
        }
        Ok(())
    }

    /// Mid of the book, else the last trade.
    pub fn reference_price(&self, symbol: usize) -> Option<Decimal> {
        super::stats::reference_price(&self.markets[symbol])
    }

    /// Untriggered stop orders and waiting list orders of a symbol (they count against
    /// `MAX_NUM_ORDERS` too).
    pub(super) fn pending_on(&self, symbol: usize) -> usize {
        let stops = self
            .pending_stops
            .iter()
            .filter(|id| self.orders.get(id).is_some_and(|o| o.symbol == symbol))
            .count();
        stops + self.lists.awaiting_on(symbol, &self.orders)
    }

    /// Orders resting on a symbol's book.
    pub(super) fn open_on_book(&self, symbol: usize) -> usize {
        self.markets[symbol].open_orders
    }

    /// What the order needs locked (quote for buys, base for sells); a stop-market buy reserves
    /// its quantity at the stop price until it triggers.
    pub(super) fn required_lock(&self, req: &NewOrder) -> Decimal {
        let m = &self.markets[req.symbol];
        let step = m.spec.step_size;
        match (req.side, req.kind, req.price, req.qty, req.quote_qty) {
            (Side::Buy, Kind::Market, _, _, Some(q)) => q,
            (Side::Buy, Kind::Market, _, Some(qty), None) => m.book.preview(Side::Buy, None, Amount::Base(qty), step).1,
            (Side::Buy, Kind::StopLoss | Kind::TakeProfit, _, Some(qty), _) => req.stop_price.unwrap_or_default() * qty,
            (Side::Buy, _, Some(price), Some(qty), _) => price * qty,
            (Side::Sell, Kind::Market, _, _, Some(q)) => m.book.preview(Side::Sell, None, Amount::Quote(q), step).0,
            (Side::Sell, _, _, Some(qty), _) => qty,
            _ => Decimal::ZERO,
        }
    }

    pub(super) fn spend_asset(&self, symbol: usize, side: Side) -> &str {
        let spec = &self.markets[symbol].spec;
        match side {
            Side::Buy => &spec.quote,
            Side::Sell => &spec.base,
        }
    }

    /// Validates, checks the balance and the unfilled-order limit, then accepts and matches
    /// (a stop / take-profit order waits for its trigger instead).
    pub fn place(&mut self, req: NewOrder, now: i64) -> Result<Placed, ApiErr> {
        self.place_with_stp(req, Stp::None, now)
    }

    /// [`Exchange::place`] with a self-trade prevention mode.
    pub fn place_with_stp(&mut self, req: NewOrder, stp: Stp, now: i64) -> Result<Placed, ApiErr> {
        let id = self.accept(&req, stp, now)?;
        let fills = self.start_working(id, now);
        self.after_change(now);
        Ok(Placed { order_id: id, fills })
    }

    /// A stop / take-profit order starts waiting for its trigger, any other order matches.
    pub(super) fn start_working(&mut self, id: u64, now: i64) -> Vec<Fill> {
        let Some(o) = self.orders.get(&id) else {
            return Vec::new();
        };
        if o.kind.is_conditional() {
            // Checked at the next trade, or at once when its trigger was already passed.
            let symbol = o.symbol;
            self.pending_stops.insert(id);
            self.traded.insert(symbol);
            return Vec::new();
        }
        self.activate(id, now)
    }

    /// Validates, locks the funds, counts the unfilled order and records the order as NEW.
    fn accept(&mut self, req: &NewOrder, stp: Stp, now: i64) -> Result<u64, ApiErr> {
        self.validate(req)?;
        let lock = self.required_lock(req);
        self.check_funds(req.account, req.symbol, req.side, lock)?;
        self.limiter.lock().take_order(now, req.account)?;
        Ok(self.record(req, lock, None, stp, now))
    }

    pub(super) fn next_prevented_match(&mut self) -> u64 {
        self.prevented_matches += 1;
        self.prevented_matches
    }

    /// Refuses an order whose reservation `account`'s free balance cannot cover.
    pub(super) fn check_funds(&self, account: u16, symbol: usize, side: Side, lock: Decimal) -> Result<(), ApiErr> {
        let asset = self.spend_asset(symbol, side);
        let free = self
            .balances
            .get(&account)
            .and_then(|b| b.get(asset))
            .map(|b| b.free)
            .unwrap_or_default();
        if lock > free {
            return Err(ApiErr::insufficient_balance());
        }
        Ok(())
    }

    /// Records an accepted order, locking `lock`, and reports it. `list`: its order list, and
    /// whether it waits there for the working order (`PENDING_NEW`).
    pub(super) fn record(
        &mut self,
        req: &NewOrder,
        lock: Decimal,
        list: Option<(u64, bool)>,
        stp: Stp,
        now: i64,
    ) -> u64 {
        let step = self.markets[req.symbol].spec.step_size;
        // A quote-quantity market order is, at this instant, exactly the base quantity it can fill.
        let base_qty = match (req.qty, req.quote_qty) {
            (Some(q), _) => q,
            (None, Some(q)) => {
                self.markets[req.symbol]
                    .book
                    .preview(req.side, None, Amount::Quote(q), step)
                    .0
            }
            (None, None) => Decimal::ZERO,
        };
        let asset = self.spend_asset(req.symbol, req.side).to_string();
        let awaiting = list.is_some_and(|(_, awaiting)| awaiting);
        let id = self.next_order_id;
        self.next_order_id += 1;
        let client_id = req.client_id.clone().unwrap_or_else(|| format!("sim{id:08}"));
        let bal = self.balance_mut(req.account, &asset);
        bal.free -= lock;
        bal.locked += lock;
        self.changed_assets.insert((req.account, asset));
        let order = Order {
            id,
            account: req.account,
            symbol: req.symbol,
            client_id: client_id.clone(),
            side: req.side,
            kind: req.kind,
            tif: req.tif,
            price: req.price.unwrap_or_default(),
            orig_qty: base_qty,
            orig_quote_qty: req.quote_qty.unwrap_or_default(),
            executed: Decimal::ZERO,
            cum_quote: Decimal::ZERO,
            status: OrderStatus::New,
            time: now,
            update_time: now,
            locked: lock,
            filled_once: false,
            on_book: false,
            stop_price: req.stop_price.unwrap_or_default(),
            iceberg_qty: req.iceberg_qty.unwrap_or_default(),
            visible: Decimal::ZERO,
            working_time: (!req.kind.is_conditional() && !awaiting).then_some(now),
            list: list.map(|(list_id, _)| list_id),
            awaiting,
            stp,
            prevented: None,
        };
        self.orders.insert(id, order);
        self.by_client.entry(client_id).or_default().push(id);
        self.report(id, Exec::New, now);
        id
    }

    /// Matches a working order as what it is now (a triggered stop as market or limit), then
    /// rests what is left (GTC limits) or expires it. Returns its taker fills.
    pub(super) fn activate(&mut self, id: u64, now: i64) -> Vec<Fill> {
        let Some(o) = self.orders.get(&id) else {
            return Vec::new();
        };
        let (symbol, side, kind, tif, price) = (o.symbol, o.side, o.kind.active(), o.tif, o.price);
        let qty = o.remaining();
        let step = self.markets[symbol].spec.step_size;
        let limit = if kind == Kind::Market { None } else { Some(price) };
        let amount = Amount::Base(qty);
        let fillable = self.markets[symbol].book.preview(side, limit, amount, step).0;
        let mut fills = Vec::new();
        let fok_refused = tif == Some(TimeInForce::Fok) && fillable < qty;
        if kind != Kind::LimitMaker && !fok_refused && !qty.is_zero() {
            fills = self.execute(symbol, side, limit, amount, Taker::User(id), now);
        }
        let rests = kind != Kind::Market && matches!(tif, None | Some(TimeInForce::Gtc));
        let open = self.orders.get(&id).is_some_and(|o| o.status.is_open());
        if open && rests {
            self.rest(id, now);
        } else if open {
            self.finish(id, End::Expired, now);
        }
        fills
    }

    /// Triggers the stop orders of the symbols that traded, until none is left to trigger
    /// (a triggered order's own trades may trigger others).
    fn run_triggers(&mut self, now: i64) {
        while let Some(symbol) = self.traded.pop_first() {
            let Some(last) = self.markets[symbol].trades.back().map(|t| t.price) else {
                continue;
            };
            let due: Vec<u64> = self
                .pending_stops
                .iter()
                .filter(|id| {
                    self.orders
                        .get(id)
                        .is_some_and(|o| o.symbol == symbol && o.kind.triggers(o.side, o.stop_price, last))
                })
                .copied()
                .collect();
            for id in due {
                self.trigger(id, now);
            }
        }
    }

    /// A stop order becomes working: its reservation is redone for what it now is (a market buy
    /// costs what the book asks at this instant); without the funds it expires.
    fn trigger(&mut self, id: u64, now: i64) {
        // An order list's other orders may have ended it already.
        if !self.pending_stops.remove(&id) {
            return;
        }
        // One order of an OCO pair starting to work ends the other (and frees the pair's funds).
        self.leg_started(id, now);
        let Some(o) = self.orders.get_mut(&id) else { return };
        let (account, symbol, side, locked) = (o.account, o.symbol, o.side, o.locked);
        o.locked = Decimal::ZERO;
        o.working_time = Some(now);
        let mut req = o.remaining_as(o.kind.active());
        req.stop_price = None;
        self.release(account, symbol, side, locked);
        let need = self.required_lock(&req);
        if self.check_funds(account, symbol, side, need).is_err() {
            self.finish(id, End::Expired, now);
            return;
        }
        self.reserve(id, need);
        self.activate(id, now);
    }

    /// Reduces an open order's quantity in place, keeping its place in the queue
    /// (`order/amend/keepPriority`). `new_client_id` renames it.
    pub fn amend(
        &mut self,
        symbol: usize,
        id: u64,
        new_qty: Decimal,
        new_client_id: String,
        now: i64,
    ) -> Result<(), ApiErr> {
        let rejected = |msg: &str| ApiErr::bad(-2038, msg.to_string());
        let spec = self.markets[symbol].spec.clone();
        let o = match self.orders.get(&id) {
            Some(o) if o.symbol == symbol && o.status.is_open() => o,
            _ => return Err(rejected("Unknown order sent.")),
        };
        if new_qty <= Decimal::ZERO {
            return Err(ApiErr::bad(-1013, "Invalid quantity."));
        }
        if new_qty >= o.orig_qty {
            return Err(rejected("Order amend (quantity increase) is not supported."));
        }
        if new_qty < spec.min_qty || !is_multiple(new_qty, spec.step_size) {
            return Err(ApiErr::filter("LOT_SIZE"));
        }
        let taken = |other: &Order| other.status.is_open() && other.id != id;
        if new_client_id != o.client_id && self.order_by_client(o.account, &new_client_id).is_some_and(taken) {
            return Err(rejected("Duplicate order sent."));
        }
        let o = self.orders.get_mut(&id).expect("checked above");
        let cut = o.orig_qty - new_qty;
        o.orig_qty = new_qty;
        o.update_time = now;
        let old_client = std::mem::replace(&mut o.client_id, new_client_id.clone());
        // What the cut quantity had reserved goes back (a buy reserved it at its limit price).
        let freed = match o.side {
            Side::Buy => (o.price * cut).min(o.locked),
            Side::Sell => cut.min(o.locked),
        };
        o.locked -= freed;
        let done = o.remaining().is_zero();
        if done {
            // Amended down to what already executed: nothing is left to fill.
            o.status = OrderStatus::Filled;
        }
        let (account, side, price, on_book, iceberg, visible, remaining) = (
            o.account,
            o.side,
            o.price,
            o.on_book,
            o.iceberg_qty,
            o.visible,
            o.remaining(),
        );
        if old_client != new_client_id {
            self.by_client.entry(new_client_id).or_default().push(id);
        }
        if on_book {
            let shown = if iceberg.is_zero() {
                remaining
            } else {
                visible.min(remaining)
            };
            self.markets[symbol].book.resize_user(side, price, id, shown);
            if let Some(o) = self.orders.get_mut(&id) {
                o.visible = shown;
            }
            self.dirty_tops.insert(symbol);
        }
        self.release(account, symbol, side, freed);
        self.report(id, Exec::Replaced, now);
        if done {
            self.finish_filled(id);
        }
        self.after_change(now);
        Ok(())
    }

    fn rest(&mut self, id: u64, now: i64) {
        let Some(o) = self.orders.get_mut(&id) else { return };
        let remaining = o.remaining();
        // An iceberg shows only its visible part.
        let shown = if o.iceberg_qty.is_zero() {
            remaining
        } else {
            o.iceberg_qty.min(remaining)
        };
        o.on_book = true;
        o.visible = shown;
        o.update_time = now;
        let (symbol, side, price) = (o.symbol, o.side, o.price);
        let m = &mut self.markets[symbol];
        m.open_orders += 1;
        m.book.add(side, price, Maker::User(id), shown);
        self.dirty_tops.insert(symbol);
    }

    /// Cancels an open order; `cancel_client_id` names the cancel request (its report's `c`).
    pub fn cancel(&mut self, symbol: usize, id: u64, cancel_client_id: &str, now: i64) -> Result<u64, ApiErr> {
        match self.orders.get(&id) {
            Some(o) if o.symbol == symbol && o.status.is_open() => {}
            _ => return Err(ApiErr::unknown_order_cancel()),
        }
        self.finish(id, End::Canceled { by: cancel_client_id }, now);
        self.after_change(now);
        Ok(id)
    }

    /// Ends an order: takes it off the book, releases what it still had locked, reports it.
    pub(super) fn finish(&mut self, id: u64, end: End, now: i64) {
        self.pending_stops.remove(&id);
        let Some(o) = self.orders.get_mut(&id) else { return };
        o.awaiting = false;
        o.status = match end {
            End::Canceled { .. } => OrderStatus::Canceled,
            End::Expired | End::Prevented { .. } => OrderStatus::Expired,
        };
        if let End::Prevented { match_id } = end {
            // What was left is prevented too (nothing, after a DECREMENT took the rest).
            let left = o.remaining();
            let before = o.prevented.map_or(Decimal::ZERO, |p| p.qty);
            let last = o
                .prevented
                .filter(|p| p.match_id == match_id)
                .map_or(left, |p| p.last_qty + left);
            o.prevented = Some(Prevented {
                match_id,
                qty: before + left,
                last_qty: last,
                expired: true,
            });
        }
        o.update_time = now;
        let (account, symbol, side, price, on_book, locked) =
            (o.account, o.symbol, o.side, o.price, o.on_book, o.locked);
        o.on_book = false;
        o.locked = Decimal::ZERO;
        if on_book {
            let m = &mut self.markets[symbol];
            m.book.remove_user(side, price, id);
            m.open_orders = m.open_orders.saturating_sub(1);
            self.dirty_tops.insert(symbol);
        }
        self.release(account, symbol, side, locked);
        let exec = match end {
            End::Canceled { by } => Exec::Canceled { by },
            End::Expired => Exec::Expired,
            End::Prevented { .. } => Exec::TradePrevention,
        };
        self.report(id, exec, now);
        self.leg_ended(id, end, now);
    }

    /// Locks `amount` more of what order `id` spends, for it.
    pub(super) fn reserve(&mut self, id: u64, amount: Decimal) {
        let Some(o) = self.orders.get_mut(&id) else { return };
        o.locked += amount;
        let (account, symbol, side) = (o.account, o.symbol, o.side);
        let asset = self.spend_asset(symbol, side).to_string();
        let bal = self.balance_mut(account, &asset);
        bal.free -= amount;
        bal.locked += amount;
        self.changed_assets.insert((account, asset));
    }

    pub(super) fn orders_mut(&mut self, id: u64) -> Option<&mut Order> {
        self.orders.get_mut(&id)
    }

    /// Sends one user-data event to every subscriber of `account`.
    pub(super) fn publish_user(&self, account: u16, event: &str) {
        if !self.users.is_empty() {
            self.users.publish(account, event);
        }
    }

    /// Unlocks `amount` of what `account` spends on `symbol`'s `side`.
    pub(super) fn release(&mut self, account: u16, symbol: usize, side: Side, amount: Decimal) {
        if amount.is_zero() {
            return;
        }
        let asset = self.spend_asset(symbol, side).to_string();
        let bal = self.balance_mut(account, &asset);
        bal.locked -= amount;
        bal.free += amount;
        self.changed_assets.insert((account, asset));
    }

    /// Runs a taker against the book and settles every fill. Returns the taker's fills.
    /// An iceberg whose visible part was taken shows its next part at the back of its level, and
    /// the taker goes on matching against it.
    pub fn execute(
        &mut self,
        symbol: usize,
        side: Side,
        limit: Option<Decimal>,
        amount: Amount,
        taker: Taker,
        now: i64,
    ) -> Vec<Fill> {
        let step = self.markets[symbol].spec.step_size;
        let mut left = amount;
        let mut taker_fills = Vec::new();
        // A user taker with a prevention mode stops at its own account's resting orders.
        let prevents = match taker {
            Taker::User(id) => self.orders.get(&id).filter(|o| o.stp != Stp::None).map(|o| o.account),
            Taker::Synthetic => None,
        };
        loop {
            let orders = &self.orders;
            let own = |m: Maker| match (prevents, m) {
                (Some(account), Maker::User(maker)) => orders.get(&maker).is_some_and(|o| o.account == account),
                _ => false,
            };
            let (maker_fills, blocked) = self.markets[symbol].book.take_until(side, limit, left, step, own);
            if maker_fills.is_empty() && blocked.is_none() {
                break;
            }
            self.dirty_tops.insert(symbol);
            let (mut base, mut quote) = (Decimal::ZERO, Decimal::ZERO);
            for MakerFill { maker, price, qty } in maker_fills {
                base += qty;
                quote += price * qty;
                let trade_id = self.print_trade(symbol, price, qty, side == Side::Sell, now);
                if let Maker::User(id) = maker {
                    self.fill(id, price, qty, true, trade_id, now);
                }
                if let Taker::User(id) = taker {
                    if let Some(f) = self.fill(id, price, qty, false, trade_id, now) {
                        taker_fills.push(f);
                    }
                }
            }
            let refills = std::mem::take(&mut self.iceberg_refills);
            let go_on = !refills.is_empty() || blocked.is_some();
            for id in refills {
                self.refill_iceberg(id);
            }
            // What prevention took from the taker counts as done, as a fill does.
            let mut prevented = Decimal::ZERO;
            if let (Some((Maker::User(maker), price)), Taker::User(taker)) = (blocked, taker) {
                let taken = |ex: &Exchange| {
                    ex.order(taker)
                        .and_then(|o| o.prevented)
                        .map_or(Decimal::ZERO, |p| p.qty)
                };
                let before = taken(self);
                self.prevent_match(taker, maker, price, now);
                prevented = taken(self) - before;
                quote += prevented * price;
            }
            if !go_on {
                break;
            }
            left = match left {
                Amount::Base(q) => Amount::Base(q - base - prevented),
                Amount::Quote(q) => Amount::Quote(q - quote),
                Amount::All => Amount::All,
            };
            let taker_done = match taker {
                Taker::User(id) => !self.orders.get(&id).is_some_and(|o| o.status.is_open()),
                Taker::Synthetic => false,
            };
            if taker_done || matches!(left, Amount::Base(q) | Amount::Quote(q) if q <= Decimal::ZERO) {
                break;
            }
        }
        taker_fills
    }

    /// Shows an iceberg's next part at the back of its price level.
    pub(super) fn refill_iceberg(&mut self, id: u64) {
        let Some(o) = self.orders.get_mut(&id) else { return };
        let remaining = o.remaining();
        if !o.on_book || remaining <= Decimal::ZERO {
            return;
        }
        let shown = o.iceberg_qty.min(remaining);
        o.visible = shown;
        let (symbol, side, price) = (o.symbol, o.side, o.price);
        self.markets[symbol].book.add(side, price, Maker::User(id), shown);
    }

    fn print_trade(&mut self, symbol: usize, price: Decimal, qty: Decimal, buyer_maker: bool, now: i64) -> u64 {
        self.traded.insert(symbol);
        let m = &mut self.markets[symbol];
        let id = m.next_trade_id;
        m.next_trade_id += 1;
        let trade = TradeRec {
            id,
            price,
            qty,
            time: now,
            buyer_maker,
        };
        let (seconds, minutes) = (m.candles.roll_seconds(now), m.candles.roll(now));
        feed::publish_closed_klines(&self.hub, m, &seconds, &minutes, now);
        m.candles.trade(now, id, price, qty, !buyer_maker);
        feed::publish_trade(&self.hub, m, &trade);
        m.trades.push_back(trade);
        if m.trades.len() > RECENT_TRADES {
            m.trades.pop_front();
        }
        id
    }

    /// Applies one fill to a user order: status, balances, commission, reports.
    fn fill(&mut self, id: u64, price: Decimal, qty: Decimal, is_maker: bool, trade_id: u64, now: i64) -> Option<Fill> {
        let o = self.orders.get_mut(&id)?;
        o.executed += qty;
        o.cum_quote += price * qty;
        if is_maker && !o.iceberg_qty.is_zero() {
            o.visible -= qty;
            if o.visible <= Decimal::ZERO && !o.remaining().is_zero() {
                self.iceberg_refills.push(id);
            }
        }
        o.update_time = now;
        let first_fill = !o.filled_once;
        o.filled_once = true;
        let done = o.remaining().is_zero();
        o.status = if done {
            OrderStatus::Filled
        } else {
            OrderStatus::PartiallyFilled
        };
        let (account, symbol, side) = (o.account, o.symbol, o.side);
        // A limit buy locked `limit × qty`; a better fill price frees the difference at once.
        let (unlocked, spent) = match side {
            Side::Buy if o.price > Decimal::ZERO => (o.price * qty, price * qty),
            Side::Buy => (price * qty, price * qty),
            Side::Sell => (qty, qty),
        };
        o.locked -= unlocked;
        let spec = &self.markets[symbol].spec;
        let (spend_asset, get_asset, received) = match side {
            Side::Buy => (spec.quote.clone(), spec.base.clone(), qty),
            Side::Sell => (spec.base.clone(), spec.quote.clone(), price * qty),
        };
        let commission = (received * self.fees.rate(is_maker)).round_dp(8);
        let spend_balance = self.balance_mut(account, &spend_asset);
        spend_balance.locked -= unlocked;
        spend_balance.free += unlocked - spent;
        self.balance_mut(account, &get_asset).free += received - commission;
        self.changed_assets.insert((account, spend_asset));
        self.changed_assets.insert((account, get_asset.clone()));
        if first_fill {
            self.limiter.lock().order_filled(now, account);
        }
        self.my_trades.push(MyTradeRec {
            symbol,
            id: trade_id,
            order_id: id,
            price,
            qty,
            commission,
            commission_asset: get_asset.clone(),
            time: now,
            is_buyer: side == Side::Buy,
            is_maker,
        });
        let last = LastFill {
            price,
            qty,
            commission,
            asset: get_asset.clone(),
            trade_id,
            is_maker,
        };
        self.report(id, Exec::Trade(&last), now);
        if done {
            self.finish_filled(id);
        }
        self.leg_filled(id, first_fill, done, now);
        Some(Fill {
            price: d8(price),
            qty: d8(qty),
            commission: d8(commission),
            commission_asset: get_asset,
            trade_id,
        })
    }

    /// A filled order leaves the book and gives back what its lock over-reserved.
    fn finish_filled(&mut self, id: u64) {
        let Some(o) = self.orders.get_mut(&id) else { return };
        let (account, symbol, side, locked, on_book) = (o.account, o.symbol, o.side, o.locked, o.on_book);
        o.locked = Decimal::ZERO;
        o.on_book = false;
        if on_book {
            let m = &mut self.markets[symbol];
            m.open_orders = m.open_orders.saturating_sub(1);
        }
        self.release(account, symbol, side, locked);
    }

    /// The id of the latest execution report (amend answers name theirs).
    pub fn last_execution_id(&self) -> u64 {
        self.execution_id
    }

    /// After every change: one account-position event for the changed assets, and
    /// book tickers for the symbols whose best prices moved.
    pub fn after_change(&mut self, now: i64) {
        // Triggers and list activations can each cause the other (a pending order placed after its
        // working order filled may trade and trigger stops, a triggered stop may fill a working order).
        loop {
            self.run_triggers(now);
            if !self.place_ready_lists(now) {
                break;
            }
        }
        if !self.changed_assets.is_empty() {
            self.account_update_time = now;
            let assets = std::mem::take(&mut self.changed_assets);
            if !self.users.is_empty() {
                // One event per account, to that account's streams only.
                let mut by_account: BTreeMap<u16, Vec<PositionBalance>> = BTreeMap::new();
                for (account, asset) in &assets {
                    let b = self
                        .balances
                        .get(account)
                        .and_then(|b| b.get(asset))
                        .copied()
                        .unwrap_or_default();
                    by_account.entry(*account).or_default().push(PositionBalance {
                        a: asset.clone(),
                        f: d8(b.free),
                        l: d8(b.locked),
                    });
                }
                for (account, balances) in by_account {
                    let event = UserDataEvent::AccountPosition(AccountPosition {
                        event_time: now,
                        u: now,
                        balances,
                    });
                    if let Ok(json) = serde_json::to_string(&event) {
                        self.users.publish(account, &json);
                    }
                }
            }
        }
        for symbol in std::mem::take(&mut self.dirty_tops) {
            let m = &mut self.markets[symbol];
            let top = (m.book.best_bid(), m.book.best_ask());
            if top != m.last_top {
                m.last_top = top;
                feed::publish_book_ticker(&self.hub, m);
            }
        }
    }

    /// Marks a symbol's top of book for a book-ticker check (synthetic liquidity changes).
    pub fn touch_top(&mut self, symbol: usize) {
        self.dirty_tops.insert(symbol);
    }

    /// Periodic stream output: depth diffs, partial books, klines.
    pub fn flush_streams(&mut self, cadence: Cadence, depth_gap: u64, now: i64) {
        for m in &mut self.markets {
            if depth_gap > 0 {
                m.book.inject_gap(depth_gap);
            }
            let (seconds, minutes) = (m.candles.roll_seconds(now), m.candles.roll(now));
            feed::publish_closed_klines(&self.hub, m, &seconds, &minutes, now);
            feed::publish_depth(&self.hub, m, cadence, now);
            if cadence == Cadence::Slow {
                feed::publish_klines(&self.hub, m, now);
                feed::publish_tickers(&self.hub, m, now);
            }
        }
        if cadence == Cadence::Slow {
            feed::publish_all_market_tickers(&self.hub, &self.markets, now);
        }
    }
}

/// How an order ends before it fills.
#[derive(Clone, Copy)]
pub(super) enum End<'a> {
    /// `by`: the cancel request's client order id.
    Canceled {
        by: &'a str,
    },
    Expired,
    /// Self-trade prevention expired it (`EXPIRED_IN_MATCH`).
    Prevented {
        match_id: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn exchange() -> Exchange {
        let specs = vec![SymbolSpec::new("BTC", "USDT", "0.01", "0.00001", "5")];
        let balances = vec![("BTC".to_string(), d("1")), ("USDT".to_string(), d("100000"))];
        let limiter = Arc::new(Mutex::new(Limiter::new(
            &crate::exchange::binance::limits::pools::spot_defaults(),
            120_000,
        )));
        let mut ex = Exchange::new(&specs, &balances, Arc::default(), Arc::default(), limiter);
        ex.markets[0]
            .book
            .add(Side::Sell, d("100.00"), Maker::Synthetic, d("1"));
        ex.markets[0]
            .book
            .add(Side::Sell, d("101.00"), Maker::Synthetic, d("1"));
        ex.markets[0].book.add(Side::Buy, d("99.00"), Maker::Synthetic, d("1"));
        ex
    }

    fn limit(side: Side, price: &str, qty: &str, tif: TimeInForce) -> NewOrder {
        NewOrder {
            account: 0,
            symbol: 0,
            side,
            kind: Kind::Limit,
            tif: Some(tif),
            price: Some(d(price)),
            qty: Some(d(qty)),
            quote_qty: None,
            client_id: None,
            stop_price: None,
            iceberg_qty: None,
        }
    }

    #[test]
    fn limit_buy_takes_then_rests_with_locks_and_commission() {
        let mut ex = exchange();
        let placed = ex
            .place(limit(Side::Buy, "100.50", "1.5", TimeInForce::Gtc), 1)
            .unwrap();
        assert_eq!(placed.fills.len(), 1);
        let o = ex.order(placed.order_id).unwrap().clone();
        assert_eq!(
            (o.status, o.executed, o.on_book),
            (OrderStatus::PartiallyFilled, d("1"), true)
        );
        let usdt = ex.balances()["USDT"];
        // 100 spent on the fill, 0.5 × 100.50 still locked.
        assert_eq!(
            (usdt.free, usdt.locked),
            (d("100000") - d("100") - d("50.25"), d("50.25"))
        );
        assert_eq!(ex.balances()["BTC"].free, d("1") + d("1") - d("0.001"));
        ex.cancel(0, placed.order_id, "c1", 2).unwrap();
        assert_eq!(ex.balances()["USDT"].locked, Decimal::ZERO);
        assert_eq!(ex.cancel(0, placed.order_id, "c2", 3).unwrap_err().code, -2011);
    }

    #[test]
    fn fok_ioc_maker_and_filters() {
        let mut ex = exchange();
        let fok = ex.place(limit(Side::Buy, "101.00", "5", TimeInForce::Fok), 1).unwrap();
        assert_eq!(ex.order(fok.order_id).unwrap().status, OrderStatus::Expired);
        assert!(fok.fills.is_empty());
        let ioc = ex.place(limit(Side::Buy, "100.00", "5", TimeInForce::Ioc), 1).unwrap();
        let o = ex.order(ioc.order_id).unwrap();
        assert_eq!((o.status, o.executed), (OrderStatus::Expired, d("1")));
        let mut maker = limit(Side::Sell, "99.00", "0.1", TimeInForce::Gtc);
        maker.kind = Kind::LimitMaker;
        maker.tif = None;
        assert_eq!(
            ex.place(maker, 1).unwrap_err().msg,
            "Order would immediately match and take."
        );
        let filter_failures = [
            ("100.001", "1", "Filter failure: PRICE_FILTER"),
            ("100", "0.000001", "Filter failure: LOT_SIZE"),
            ("1", "0.001", "Filter failure: NOTIONAL"),
            // Over maxNotional (9 000 000), whatever the balance.
            ("1000000", "10", "Filter failure: NOTIONAL"),
        ];
        for (price, qty, msg) in filter_failures {
            let refused = ex.place(limit(Side::Buy, price, qty, TimeInForce::Gtc), 1).unwrap_err();
            assert_eq!(refused.msg, msg, "{price} × {qty}");
        }
        assert_eq!(
            ex.place(limit(Side::Sell, "200", "50", TimeInForce::Gtc), 1)
                .unwrap_err()
                .code,
            -2010
        );
    }

    #[test]
    fn a_huge_quote_quantity_is_refused_not_a_panic() {
        let mut ex = exchange();
        let market = |side| NewOrder {
            account: 0,
            symbol: 0,
            side,
            kind: Kind::Market,
            tif: None,
            price: None,
            qty: None,
            quote_qty: Some(Decimal::MAX),
            client_id: None,
            stop_price: None,
            iceberg_qty: None,
        };
        assert_eq!(ex.place(market(Side::Buy), 1).unwrap_err().code, -2010);
        // Selling for "everything" sells the whole book's bid the account can cover.
        let sold = ex.place(market(Side::Sell), 1).unwrap();
        assert_eq!(ex.order(sold.order_id).unwrap().executed, d("1"));
    }

    #[test]
    fn resting_orders_fill_as_makers_and_duplicates_are_refused() {
        let mut ex = exchange();
        let mut bid = limit(Side::Buy, "99.50", "0.2", TimeInForce::Gtc);
        bid.client_id = Some("abc".to_string());
        let id = ex.place(bid.clone(), 1).unwrap().order_id;
        assert_eq!(ex.place(bid, 1).unwrap_err().msg, "Duplicate order sent.");
        ex.execute(0, Side::Sell, Some(d("99.50")), Amount::All, Taker::Synthetic, 2);
        let o = ex.order(id).unwrap();
        assert_eq!((o.status, o.executed), (OrderStatus::Filled, d("0.2")));
        assert!(ex.my_trades()[0].is_maker);
        assert_eq!(ex.balances()["USDT"].locked, Decimal::ZERO);
    }

    #[test]
    fn an_amended_order_keeps_its_place_in_the_queue() {
        let mut ex = exchange();
        let first = ex
            .place(limit(Side::Buy, "98.00", "1", TimeInForce::Gtc), 1)
            .unwrap()
            .order_id;
        let second = ex
            .place(limit(Side::Buy, "98.00", "1", TimeInForce::Gtc), 1)
            .unwrap()
            .order_id;
        ex.amend(0, first, d("0.4"), "a".into(), 2).unwrap();
        assert_eq!(ex.amend(0, first, d("0.5"), "a".into(), 2).unwrap_err().code, -2038);
        // A seller down to 98 takes every bid on the way (the synthetic ones above 98 too): at 98
        // the amended order, first in the queue, trades before the second one.
        ex.execute(0, Side::Sell, Some(d("98.00")), Amount::All, Taker::Synthetic, 3);
        let at_98: Vec<(u64, Decimal)> = ex
            .my_trades()
            .iter()
            .filter(|t| t.price == d("98.00"))
            .map(|t| (t.order_id, t.qty))
            .collect();
        assert_eq!(at_98, vec![(first, d("0.4")), (second, d("1"))]);
        assert_eq!(ex.order(first).unwrap().status, OrderStatus::Filled);
        assert_eq!(ex.balances()["USDT"].locked, Decimal::ZERO);
    }

    #[test]
    fn a_stop_limit_waits_for_its_trigger_then_works() {
        let mut ex = exchange();
        // A trade at 100 sets the last price.
        ex.execute(0, Side::Buy, None, Amount::Base(d("0.1")), Taker::Synthetic, 1);
        let mut stop = limit(Side::Sell, "98.50", "0.5", TimeInForce::Gtc);
        stop.kind = Kind::StopLossLimit;
        stop.stop_price = Some(d("101.00"));
        assert_eq!(
            ex.place(stop.clone(), 2).unwrap_err().msg,
            "Order would trigger immediately."
        );
        stop.stop_price = Some(d("99.00"));
        let id = ex.place(stop, 2).unwrap().order_id;
        assert_eq!(ex.order(id).unwrap().working_time, None);
        assert_eq!(ex.depth(0, 10).asks.len(), 2, "not on the book yet");
        // The market trades down to 99: the stop triggers and its limit sell at 98.50 takes nothing
        // (the bid at 99 is gone), so it rests.
        ex.execute(0, Side::Sell, None, Amount::Base(d("1")), Taker::Synthetic, 3);
        ex.after_change(3);
        let o = ex.order(id).unwrap();
        assert_eq!((o.working_time, o.on_book, o.status), (Some(3), true, OrderStatus::New));
        assert_eq!(ex.depth(0, 10).asks[0], [d8(d("98.50")), d8(d("0.5"))]);
    }
}
