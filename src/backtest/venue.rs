//! The replayed exchange: the simulator's matching engine fed by recorded market items, behind
//! the [`Venue`] trait, with every call charged to a real [`Ledger`] running on replayed time.
//!
//! Calls complete without real waiting: an order or cancel travels `latency` to the exchange
//! (the market replays meanwhile), is matched there, and its answer travels `latency` back; a
//! wait for budget advances replayed time. Strategy-facing events the replay produces queue in
//! order for the driver (`mod.rs`) to deliver.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use rust_decimal::Decimal;

use super::data::{Level, MarketItem, Timed};
use crate::exchange::binance::limits::endpoints::Endpoint;
use crate::exchange::binance::orders::symbols::{self, ValidOrder};
use crate::exchange::grid::to_f64 as f;
use crate::exchange::risk::Approved;
use crate::exchange::types::{ClientOrderId, OrderStatus, SelfTradePrevention};
use crate::exchange::{
    ApiError, Balance, CallCtx, Depth, ErrorCode, EventSink, Kline, Order, OrderRef, OrderRequest, Quote, StrategyId,
    StreamKey, StreamKind, SymbolInfo, Ticker, Trade, Venue,
};
use crate::host::inbox::Event;
use crate::ledger::{Clock, Lane, Ledger, LedgerConfig, LedgerError, LedgerStatus, Observation, RateLimit, Verdict};
use crate::sim::hub::{Hub, UserHub};
use crate::sim::limiter::Limiter;
use crate::sim::matching::Exchange;
use crate::sim::order_record::NewOrder;
use crate::sim::replay::{Applied, MarketMirror};
use crate::sim::stp::Stp;
use crate::sim::SymbolSpec;

/// Replayed time for the ledger.
pub struct ReplayClock(pub Arc<AtomicI64>);

impl Clock for ReplayClock {
    fn instant(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }
    fn local_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counts the report shows besides the engine's own order states.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CallCounts {
    pub placed: u64,
    pub rejected: u64,
    pub invalid: u64,
    pub rate_limited: u64,
    pub cancels: u64,
    pub cancel_rejected: u64,
}

/// The replay's state: the engine, the items still to apply, and what the strategy has yet to see.
pub struct World {
    pub ex: Exchange,
    /// The items still to replay, the next one last (taken by `pop`, never copied).
    items: Vec<Timed>,
    now: Arc<AtomicI64>,
    pub pending: VecDeque<Event>,
    subs: BTreeSet<StreamKey>,
    /// Open user orders as last reported: executed quantity and status.
    tracked: BTreeMap<u64, (Decimal, OrderStatus)>,
    owner: HashMap<u64, StrategyId>,
    quotes: HashMap<Arc<str>, Quote>,
    klines: HashMap<(Arc<str>, Arc<str>), VecDeque<Kline>>,
    pub mirror: MarketMirror,
    pub counts: CallCounts,
    /// `(time ms, equity)` samples, one per replayed second with activity.
    pub equity: Vec<(i64, f64)>,
    next_sample: i64,
    /// Quote asset the equity is valued in, and the symbols pricing each other asset in it.
    pub valuation: Valuation,
    pub events: u64,
}

/// Why an engine order cannot be shown to a strategy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderViewError {
    #[error("order {0} is not in the engine")]
    Missing(u64),
    #[error("engine order {id} is a {kind} order, a type the strategy API does not have")]
    UnsupportedKind { id: u64, kind: &'static str },
}

impl From<OrderViewError> for ApiError {
    fn from(e: OrderViewError) -> Self {
        match e {
            OrderViewError::Missing(_) => {
                ApiError::new(ErrorCode::Rejected, "Order does not exist.").with_exchange_code(-2013)
            }
            OrderViewError::UnsupportedKind { .. } => ApiError::new(ErrorCode::Rejected, e.to_string()),
        }
    }
}

/// How to value each asset in the report's quote asset.
#[derive(Debug, Clone, Default)]
pub struct Valuation {
    pub quote: String,
    /// asset → symbol index of ASSET/quote.
    pub pricing: BTreeMap<String, usize>,
}

impl World {
    pub fn now_ms(&self) -> i64 {
        self.now.load(Ordering::Relaxed)
    }

    fn set_now(&mut self, t: i64) {
        if t > self.now_ms() {
            self.now.store(t, Ordering::Relaxed);
        }
    }

    /// Time of the next item to replay.
    pub fn next_time(&self) -> Option<i64> {
        self.items.last().map(|t| t.time_ms)
    }

    /// Replays every item up to `t`, then stands at `t`.
    pub fn advance_to(&mut self, t: i64) {
        while self.next_time().is_some_and(|next| next <= t) {
            self.step();
        }
        self.set_now(t);
    }

    /// Replays one item; false when none is left.
    pub fn step(&mut self) -> bool {
        let Some(timed) = self.items.pop() else {
            return false;
        };
        self.set_now(timed.time_ms);
        self.events += 1;
        self.apply(timed.item);
        self.report_order_changes();
        let now = self.now_ms();
        self.ex.after_change(now);
        if now >= self.next_sample {
            self.sample_equity();
            self.next_sample = (now.div_euclid(1000) + 1) * 1000;
        }
        true
    }

    fn wants(&self, symbol: &str, kind: StreamKind) -> bool {
        // Cheap for the usual handful of subscriptions.
        self.subs.iter().any(|k| k.kind == kind && &*k.symbol == symbol)
    }

    fn apply(&mut self, item: MarketItem) {
        let now = self.now_ms();
        // The engine first, so what the strategy hears of comes after the fills it caused.
        let applied = self.mirror.apply(&mut self.ex, &item, now);
        if applied == Applied::Nothing && !matches!(item, MarketItem::Kline { .. }) {
            return;
        }
        match item {
            MarketItem::Snapshot { symbol, .. } | MarketItem::Depth { symbol, .. } => {
                if self.wants(&symbol, StreamKind::Depth) {
                    self.pending.push_back(Event::Depth(symbol));
                }
            }
            MarketItem::Book {
                symbol,
                update_id,
                bid,
                ask,
            } => self.quoted(symbol, update_id, bid, ask),
            MarketItem::Trade {
                symbol,
                id,
                price,
                qty,
                buyer_maker,
            } => {
                if self.wants(&symbol, StreamKind::Trade) {
                    self.pending.push_back(Event::Trade(Trade {
                        symbol: symbol.clone(),
                        id,
                        price: f(price),
                        qty: f(qty),
                        time: now,
                        buyer_maker,
                    }));
                }
                if self.mirror.synthetic_book {
                    // Trades-only data: the book is one level each side at the trade (docs/backtesting.md).
                    let Some(i) = self.ex.symbol_index(&symbol) else { return };
                    let tick = self.ex.markets[i].spec.tick_size;
                    let (bid, ask) = if buyer_maker {
                        (price, price + tick)
                    } else {
                        ((price - tick).max(tick), price)
                    };
                    self.quoted(symbol, id, (bid, qty), (ask, qty));
                }
            }
            MarketItem::Kline {
                symbol,
                interval,
                kline,
                closed,
            } => {
                if closed {
                    let history = self.klines.entry((symbol.clone(), interval.clone())).or_default();
                    history.push_back(kline);
                    if history.len() > 1000 {
                        history.pop_front();
                    }
                }
                if self.wants(&symbol, StreamKind::Kline(interval.to_string())) {
                    self.pending.push_back(Event::Kline {
                        symbol,
                        interval,
                        kline,
                        closed,
                    });
                }
            }
        }
    }

    /// The best bid and ask the engine now holds from the market, as the strategy hears of them.
    fn quoted(&mut self, symbol: Arc<str>, update_id: u64, bid: Level, ask: Level) {
        let quote = Quote {
            symbol: symbol.clone(),
            bid: f(bid.0),
            bid_qty: f(bid.1),
            ask: f(ask.0),
            ask_qty: f(ask.1),
            update_id,
            time: self.now_ms(),
        };
        if self.wants(&symbol, StreamKind::Book) {
            self.pending.push_back(Event::Book(quote.clone()));
        }
        self.quotes.insert(symbol, quote);
    }

    /// Queues an order event for every user order whose fill or status changed.
    pub fn report_order_changes(&mut self) {
        if self.tracked.is_empty() {
            return;
        }
        let mut changed = Vec::new();
        for (&id, &(executed, status)) in &self.tracked {
            if let Some(o) = self.ex.order(id) {
                if o.executed != executed || o.status != status {
                    changed.push(id);
                }
            }
        }
        for id in changed {
            self.remember(id);
            match self.order(id) {
                Ok(order) => self.pending.push_back(Event::Order(Box::new(order))),
                Err(e) => tracing::error!("cannot tell the strategy of an order change: {e}"),
            }
        }
    }

    fn remember(&mut self, id: u64) {
        match self.ex.order(id) {
            Some(o) if !o.status.is_final() => {
                self.tracked.insert(id, (o.executed, o.status));
            }
            _ => {
                self.tracked.remove(&id);
            }
        }
    }

    /// The host's view of engine order `id`.
    pub fn order(&self, id: u64) -> Result<Order, OrderViewError> {
        let o = self.ex.order(id).ok_or(OrderViewError::Missing(id))?;
        // The backtest places only the strategy API's own types; anything else is a bug to report.
        let order_type = o.kind.order_type().ok_or(OrderViewError::UnsupportedKind {
            id,
            kind: o.kind.as_str(),
        })?;
        let last = self.ex.my_trades().iter().rev().find(|t| t.order_id == id);
        let strategy = self.owner.get(&id).cloned().unwrap_or_else(|| Arc::from(""));
        let executed = f(o.executed);
        Ok(Order {
            strategy,
            id: Some(o.id),
            client_id: o.client_id.clone(),
            symbol: self.ex.markets[o.symbol].spec.symbol.clone(),
            side: o.side,
            order_type,
            tif: o.tif,
            status: o.status,
            price: f(o.price),
            quantity: f(o.orig_qty),
            filled_qty: executed,
            filled_quote: f(o.cum_quote),
            avg_price: if executed > 0.0 { f(o.cum_quote) / executed } else { 0.0 },
            last_fill_qty: last.map_or(0.0, |t| f(t.qty)),
            last_fill_price: last.map_or(0.0, |t| f(t.price)),
            last_commission: last.map_or(0.0, |t| f(t.commission)),
            commission_asset: last.map(|t| t.commission_asset.clone()),
            reject_reason: None,
            time: o.time,
            update_time: o.update_time,
            stop_price: (!o.stop_price.is_zero()).then(|| f(o.stop_price)),
            list_id: o.list,
        })
    }

    /// The account's value in the valuation's quote asset at the book's mids.
    pub fn equity_now(&self) -> f64 {
        let v = &self.valuation;
        self.ex
            .balances()
            .iter()
            .filter_map(|(asset, b)| {
                let total = f(b.free + b.locked);
                if *asset == v.quote {
                    return Some(total);
                }
                let i = *v.pricing.get(asset)?;
                Some(total * f(self.ex.reference_price(i)?))
            })
            .sum()
    }

    fn sample_equity(&mut self) {
        let (now, value) = (self.now_ms(), self.equity_now());
        self.equity.push((now, value));
    }
}

/// The replayed exchange behind the `Venue` trait.
pub struct ReplayVenue {
    pub world: Mutex<World>,
    clock: Arc<AtomicI64>,
    ledger: Ledger,
    infos: BTreeMap<String, SymbolInfo>,
    latency_ms: i64,
}

pub struct ReplaySetup {
    pub items: Vec<Timed>,
    pub symbols: Vec<SymbolInfo>,
    pub synthetic_book: bool,
    pub balances: Vec<(String, Decimal)>,
    pub limits: Vec<RateLimit>,
    pub latency: Duration,
    pub fees: crate::sim::Fees,
}

impl ReplayVenue {
    pub fn new(setup: ReplaySetup) -> Arc<ReplayVenue> {
        let specs: Vec<SymbolSpec> = setup.symbols.iter().map(super::live::spec_of).collect();
        let start = setup.items.first().map_or(0, |t| t.time_ms);
        let clock = Arc::new(AtomicI64::new(start));
        let limiter = Arc::new(Mutex::new(Limiter::new(&setup.limits, 120_000)));
        let mut ex = Exchange::new(
            &specs,
            &setup.balances,
            Arc::new(Hub::default()),
            Arc::new(UserHub::default()),
            limiter,
        );
        ex.set_fees(setup.fees);
        // Nothing streams depth out of a backtest.
        for m in &mut ex.markets {
            m.book.stop_tracking_diffs();
        }
        let quote = setup.symbols.first().map(|s| s.quote.clone()).unwrap_or_default();
        let pricing = setup
            .symbols
            .iter()
            .enumerate()
            .filter(|(_, s)| s.quote == quote)
            .map(|(i, s)| (s.base.clone(), i))
            .collect();
        let world = World {
            ex,
            items: setup.items.into_iter().rev().collect(),
            now: clock.clone(),
            pending: VecDeque::new(),
            subs: BTreeSet::new(),
            tracked: BTreeMap::new(),
            owner: HashMap::new(),
            quotes: HashMap::new(),
            klines: HashMap::new(),
            mirror: MarketMirror::new(setup.synthetic_book),
            counts: CallCounts::default(),
            equity: Vec::new(),
            next_sample: i64::MIN,
            valuation: Valuation { quote, pricing },
            events: 0,
        };
        let ledger = Ledger::new(
            setup.limits,
            LedgerConfig::default(),
            Arc::new(ReplayClock(clock.clone())),
        );
        Arc::new(ReplayVenue {
            world: Mutex::new(world),
            clock,
            ledger,
            infos: setup.symbols.into_iter().map(|s| (s.symbol.clone(), s)).collect(),
            latency_ms: setup.latency.as_millis() as i64,
        })
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Takes the call's budget in replayed time; waiting for room advances the replay.
    fn charge(&self, ctx: &CallCtx, lane: Lane, endpoint: Endpoint, params: &[(&str, &str)]) -> Result<(), ApiError> {
        let cost = endpoint.cost(params);
        let wait_ms = ctx.wait.as_millis() as i64;
        let deadline = self.now_ms() + wait_ms;
        loop {
            match self.ledger.try_reserve(&ctx.strategy, lane, cost) {
                Ok(permit) => {
                    let ok = Observation {
                        usage: Vec::new(),
                        verdict: Verdict::Ok,
                        scope: crate::exchange::binance::limits::pools::IP,
                    };
                    self.ledger.observe(&permit, &ok);
                    return Ok(());
                }
                Err(LedgerError::RateLimited { until_ms }) if until_ms <= deadline && until_ms > self.now_ms() => {
                    self.world.lock().advance_to(until_ms);
                }
                Err(e) => {
                    self.world.lock().counts.rate_limited += u64::from(matches!(e, LedgerError::RateLimited { .. }));
                    return Err(ApiError::from_ledger(&e, self.now_ms()));
                }
            }
        }
    }

    fn info(&self, symbol: &str) -> Result<&SymbolInfo, ApiError> {
        self.infos
            .get(symbol)
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidOrder, format!("unknown symbol {symbol}")))
    }

    fn index(world: &World, symbol: &str) -> Result<usize, ApiError> {
        world
            .ex
            .symbol_index(symbol)
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidOrder, format!("unknown symbol {symbol}")))
    }

    fn find(world: &World, order: &OrderRef) -> Option<u64> {
        match order {
            OrderRef::Id(id) => world.ex.order(*id).map(|o| o.id),
            OrderRef::ClientId(cid) => world.ex.order_by_client(0, cid).map(|o| o.id),
        }
    }

    fn cancel_in(&self, world: &mut World, strategy: &StrategyId, i: usize, id: u64) -> Result<Order, ApiError> {
        let now = world.now_ms();
        world.counts.cancels += 1;
        let owned = world.owner.get(&id).is_some_and(|s| s == strategy);
        let result = if owned {
            world.ex.cancel(i, id, "cancel", now).map_err(|e| (e.code, e.msg))
        } else {
            Err((-2011, "Unknown order sent.".to_string()))
        };
        match result {
            Ok(_) => {
                world.remember(id);
                world.order(id).map_err(ApiError::from)
            }
            Err((code, msg)) => {
                world.counts.cancel_rejected += 1;
                Err(ApiError::new(ErrorCode::Rejected, msg).with_exchange_code(code))
            }
        }
    }
}

#[async_trait]
impl Venue for ReplayVenue {
    fn name(&self) -> &str {
        "backtest"
    }

    fn now_ms(&self) -> i64 {
        self.clock.load(Ordering::Relaxed)
    }

    fn symbol(&self, symbol: &str) -> Option<SymbolInfo> {
        self.infos.get(symbol).cloned()
    }

    fn symbols(&self) -> Vec<String> {
        self.infos.keys().cloned().collect()
    }

    async fn ticker(&self, ctx: &CallCtx, symbol: &str) -> Result<Ticker, ApiError> {
        self.charge(ctx, Lane::MarketData, Endpoint::TickerPrice, &[("symbol", symbol)])?;
        let world = self.world.lock();
        let i = Self::index(&world, symbol)?;
        let m = &world.ex.markets[i];
        let price = m.trades.back().map(|t| t.price).or_else(|| world.ex.reference_price(i));
        Ok(Ticker {
            symbol: symbol.to_string(),
            price: price.map_or(0.0, f),
        })
    }

    async fn book_ticker(&self, ctx: &CallCtx, symbol: &str) -> Result<Quote, ApiError> {
        self.charge(ctx, Lane::MarketData, Endpoint::TickerBook, &[("symbol", symbol)])?;
        let world = self.world.lock();
        let i = Self::index(&world, symbol)?;
        let book = &world.ex.markets[i].book;
        let (b, bq) = book.best_bid().unwrap_or_default();
        let (a, aq) = book.best_ask().unwrap_or_default();
        Ok(Quote {
            symbol: Arc::from(symbol),
            bid: f(b),
            bid_qty: f(bq),
            ask: f(a),
            ask_qty: f(aq),
            update_id: book.update_id(),
            time: world.now_ms(),
        })
    }

    async fn depth(&self, ctx: &CallCtx, symbol: &str, limit: u32) -> Result<Depth, ApiError> {
        let limit_text = limit.to_string();
        self.charge(
            ctx,
            Lane::MarketData,
            Endpoint::Depth,
            &[("symbol", symbol), ("limit", &limit_text)],
        )?;
        self.book(symbol, limit as usize)
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidOrder, format!("unknown symbol {symbol}")))
    }

    async fn klines(&self, ctx: &CallCtx, symbol: &str, interval: &str, limit: u32) -> Result<Vec<Kline>, ApiError> {
        self.charge(ctx, Lane::MarketData, Endpoint::Klines, &[("symbol", symbol)])?;
        let world = self.world.lock();
        let key = (Arc::from(symbol), Arc::from(interval));
        let history = world
            .klines
            .get(&key)
            .map(|h| h.iter().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        let skip = history.len().saturating_sub(limit as usize);
        Ok(history.into_iter().skip(skip).collect())
    }

    async fn trades(&self, ctx: &CallCtx, symbol: &str, limit: u32) -> Result<Vec<Trade>, ApiError> {
        self.charge(ctx, Lane::MarketData, Endpoint::RecentTrades, &[("symbol", symbol)])?;
        let world = self.world.lock();
        let i = Self::index(&world, symbol)?;
        let trades = &world.ex.markets[i].trades;
        let skip = trades.len().saturating_sub(limit as usize);
        let symbol: Arc<str> = Arc::from(symbol);
        Ok(trades
            .iter()
            .skip(skip)
            .map(|t| Trade {
                symbol: symbol.clone(),
                id: t.id,
                price: f(t.price),
                qty: f(t.qty),
                time: t.time,
                buyer_maker: t.buyer_maker,
            })
            .collect())
    }

    fn validate(&self, request: &OrderRequest) -> Result<ValidOrder, ApiError> {
        let info = self.info(&request.symbol)?;
        let reference = {
            let world = self.world.lock();
            let i = Self::index(&world, &request.symbol)?;
            world.ex.reference_price(i)
        };
        symbols::validate(info, request, reference).inspect_err(|_| {
            self.world.lock().counts.invalid += 1;
        })
    }

    async fn send(
        &self,
        ctx: &CallCtx,
        client_id: Option<ClientOrderId>,
        order: Approved<ValidOrder>,
    ) -> Result<Order, ApiError> {
        let valid = order.into_inner();
        let fields = valid.kind().fields();
        // What the simulated exchange does not do is refused, never silently dropped.
        if fields.trailing_delta.is_some() {
            return Err(ApiError::new(
                ErrorCode::InvalidOrder,
                "trailing stops are not simulated",
            ));
        }
        let stp = match valid.stp() {
            None | Some(SelfTradePrevention::None) => Stp::None,
            Some(SelfTradePrevention::ExpireTaker) => Stp::ExpireTaker,
            Some(SelfTradePrevention::ExpireMaker) => Stp::ExpireMaker,
            Some(SelfTradePrevention::ExpireBoth) => Stp::ExpireBoth,
            Some(SelfTradePrevention::Decrement) => Stp::Decrement,
        };
        self.charge(ctx, Lane::Order, Endpoint::PlaceOrder, &[])?;
        let mut world = self.world.lock();
        let sent = world.now_ms();
        world.advance_to(sent + self.latency_ms);
        let i = Self::index(&world, valid.symbol())?;
        let order = NewOrder {
            account: 0,
            symbol: i,
            side: valid.side(),
            kind: valid.kind().order_type().into(),
            tif: fields.tif,
            price: fields.price,
            qty: fields.quantity,
            quote_qty: fields.quote_quantity,
            client_id: client_id.map(String::from),
            stop_price: fields.stop_price,
            iceberg_qty: None,
        };
        let now = world.now_ms();
        let result = match world.ex.place_with_stp(order, stp, now) {
            Ok(placed) => {
                world.counts.placed += 1;
                world.owner.insert(placed.order_id, ctx.strategy.clone());
                world.remember(placed.order_id);
                world.order(placed.order_id).map_err(ApiError::from)
            }
            Err(e) => {
                world.counts.rejected += 1;
                Err(ApiError::new(ErrorCode::Rejected, e.msg).with_exchange_code(e.code))
            }
        };
        world.advance_to(sent + 2 * self.latency_ms);
        result
    }

    async fn cancel(&self, ctx: &CallCtx, symbol: &str, order: &OrderRef) -> Result<Order, ApiError> {
        self.charge(ctx, Lane::Cancel, Endpoint::CancelOrder, &[])?;
        let mut world = self.world.lock();
        let sent = world.now_ms();
        world.advance_to(sent + self.latency_ms);
        let i = Self::index(&world, symbol)?;
        let result = match Self::find(&world, order) {
            Some(id) => self.cancel_in(&mut world, &ctx.strategy, i, id),
            None => {
                world.counts.cancels += 1;
                world.counts.cancel_rejected += 1;
                Err(ApiError::new(ErrorCode::Rejected, "Unknown order sent.").with_exchange_code(-2011))
            }
        };
        world.advance_to(sent + 2 * self.latency_ms);
        result
    }

    async fn amend(&self, ctx: &CallCtx, symbol: &str, order: &OrderRef, quantity: f64) -> Result<Order, ApiError> {
        let info = self.info(symbol)?;
        // Checked before anything is charged, as the live venue refuses locally.
        let (id, quantity) = {
            let world = self.world.lock();
            let i = Self::index(&world, symbol)?;
            let mine = Self::find(&world, order)
                .filter(|id| world.owner.get(id).is_some_and(|s| *s == ctx.strategy))
                .and_then(|id| world.ex.order(id))
                .filter(|o| o.symbol == i && o.status.is_open());
            let Some(o) = mine else {
                return Err(ApiError::new(
                    ErrorCode::InvalidOrder,
                    format!("no open order {order:?} of this strategy on {symbol} to amend"),
                ));
            };
            let order_type = world.order(o.id).map_err(ApiError::from)?.order_type;
            (
                o.id,
                symbols::validate_amend(info, order_type, f(o.orig_qty), quantity)?,
            )
        };
        self.charge(ctx, Lane::Order, Endpoint::AmendKeepPriority, &[])?;
        let mut world = self.world.lock();
        let sent = world.now_ms();
        world.advance_to(sent + self.latency_ms);
        let i = Self::index(&world, symbol)?;
        let now = world.now_ms();
        let client_id = world.ex.order(id).map(|o| o.client_id.clone()).unwrap_or_default();
        let result = match world.ex.amend(i, id, quantity, client_id, now) {
            Ok(()) => {
                world.remember(id);
                world.order(id).map_err(ApiError::from)
            }
            Err(e) => Err(ApiError::new(ErrorCode::Rejected, e.msg).with_exchange_code(e.code)),
        };
        world.advance_to(sent + 2 * self.latency_ms);
        result
    }

    async fn cancel_all(&self, ctx: &CallCtx, symbol: &str) -> Result<Vec<Order>, ApiError> {
        self.charge(ctx, Lane::Cancel, Endpoint::CancelOpenOrders, &[])?;
        let mut world = self.world.lock();
        let sent = world.now_ms();
        world.advance_to(sent + self.latency_ms);
        let i = Self::index(&world, symbol)?;
        let ids: Vec<u64> = world
            .ex
            .orders()
            .filter(|o| o.symbol == i && o.status.is_open())
            .filter(|o| world.owner.get(&o.id).is_some_and(|s| *s == ctx.strategy))
            .map(|o| o.id)
            .collect();
        let mut cancelled = Vec::new();
        for id in ids {
            if let Ok(order) = self.cancel_in(&mut world, &ctx.strategy, i, id) {
                cancelled.push(order);
            }
        }
        world.advance_to(sent + 2 * self.latency_ms);
        Ok(cancelled)
    }

    async fn get_order(&self, _ctx: &CallCtx, _symbol: &str, order: &OrderRef) -> Result<Order, ApiError> {
        let world = self.world.lock();
        let id = Self::find(&world, order)
            .ok_or_else(|| ApiError::new(ErrorCode::Rejected, "Order does not exist.").with_exchange_code(-2013))?;
        world.order(id).map_err(ApiError::from)
    }

    fn open_orders(&self, strategy: &str, symbol: Option<&str>) -> Vec<Order> {
        let world = self.world.lock();
        world
            .ex
            .orders()
            .filter(|o| o.status.is_open())
            .filter(|o| world.owner.get(&o.id).is_some_and(|s| &**s == strategy))
            .filter(|o| symbol.is_none_or(|s| world.ex.markets[o.symbol].spec.symbol == s))
            .filter_map(|o| {
                world
                    .order(o.id)
                    .inspect_err(|e| tracing::error!("cannot list an open order: {e}"))
                    .ok()
            })
            .collect()
    }

    fn balances(&self) -> BTreeMap<String, Balance> {
        let world = self.world.lock();
        world
            .ex
            .balances()
            .iter()
            .map(|(a, b)| {
                (
                    a.clone(),
                    Balance {
                        free: f(b.free),
                        locked: f(b.locked),
                    },
                )
            })
            .collect()
    }

    fn quote(&self, symbol: &str) -> Option<Quote> {
        self.world.lock().quotes.get(symbol).cloned()
    }

    fn book(&self, symbol: &str, levels: usize) -> Option<Depth> {
        let world = self.world.lock();
        let i = world.ex.symbol_index(symbol)?;
        let snap = world.ex.depth(i, levels);
        let rows = |l: &[[Decimal; 2]]| l.iter().map(|[p, q]| (f(*p), f(*q))).collect();
        Some(Depth {
            symbol: symbol.to_string(),
            update_id: snap.last_update_id,
            bids: rows(&snap.bids),
            asks: rows(&snap.asks),
        })
    }

    async fn set_subscriptions(&self, _strategy: &StrategyId, streams: Vec<StreamKey>) -> Result<(), ApiError> {
        self.world.lock().subs = streams.into_iter().collect();
        Ok(())
    }

    fn ledger_status(&self, strategy: &str) -> LedgerStatus {
        self.ledger.status(strategy)
    }

    async fn start(&self, _sink: Arc<dyn EventSink>) -> Result<(), ApiError> {
        Ok(())
    }

    async fn shutdown(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_order_kind_without_an_api_type_is_an_error_not_a_limit_order() {
        let e = OrderViewError::UnsupportedKind {
            id: 7,
            kind: crate::sim::order_record::Kind::StopLoss.as_str(),
        };
        assert_eq!(
            e.to_string(),
            "engine order 7 is a STOP_LOSS order, a type the strategy API does not have"
        );
        let api = ApiError::from(e);
        assert_eq!(api.code, ErrorCode::Rejected);
        assert!(api.message.contains("STOP_LOSS"), "{}", api.message);
        assert_eq!(ApiError::from(OrderViewError::Missing(3)).exchange_code, Some(-2013));
    }
}
