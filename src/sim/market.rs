//! The synthetic market: asset values follow a seeded random walk, every symbol quotes a
//! ladder around its cross rate (so ETHBTC ≈ ETHUSDT / BTCUSDT), one symbol now and then
//! jumps away from its fair rate for 1–3 s (what a triangular arbitrage looks for), and
//! random takers print trades. Users' resting orders fill when the market moves through them.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::prelude::FromPrimitive;
use rust_decimal::Decimal;

use super::book::{Amount, Cadence};
use super::config::SimConfig;
use super::engine::{Exchange, Taker};
use super::num::{ceil_to, floor_to};
use crate::exchange::types::Side;

/// Half the quoted spread, relative to the mid.
const HALF_SPREAD: f64 = 0.0001;
/// Distance between ladder levels, relative to the mid.
const LEVEL_GAP: f64 = 0.0001;
/// Per-step volatility of each asset at a 100 ms step.
const VOLATILITY: f64 = 0.00012;
/// USD value resting at the best level (deeper levels hold more).
const LEVEL_USD: f64 = 4_000.0;
/// Chance per symbol per step that a random taker prints a trade.
const TRADE_CHANCE: f64 = 0.25;

#[derive(Debug, Clone, Copy)]
struct Dislocation {
    factor: f64,
    until_step: u64,
}

pub struct Synthetic {
    rng: StdRng,
    usd: HashMap<String, f64>,
    dislocations: Vec<Option<Dislocation>>,
    step: u64,
    levels: usize,
    step_ms: f64,
    dislocation_chance: f64,
    slow_every: u64,
}

impl Synthetic {
    pub fn new(config: &SimConfig) -> Self {
        let step_ms = (config.market_tick.as_millis() as f64).max(1.0);
        let every_ms = config.dislocation_every.as_millis() as f64;
        Synthetic {
            rng: StdRng::seed_from_u64(config.seed),
            usd: config.asset_prices.iter().cloned().collect(),
            dislocations: vec![None; config.symbols.len()],
            step: 0,
            levels: config.synthetic_levels.max(1),
            step_ms,
            dislocation_chance: if every_ms > 0.0 { step_ms / every_ms } else { 0.0 },
            slow_every: (1000.0 / step_ms).round().max(1.0) as u64,
        }
    }

    /// The fair rate of a symbol before any dislocation.
    fn fair(&self, ex: &Exchange, symbol: usize) -> f64 {
        let spec = &ex.markets[symbol].spec;
        let base = self.usd.get(&spec.base).copied().unwrap_or(1.0);
        let quote = self.usd.get(&spec.quote).copied().unwrap_or(1.0);
        base / quote
    }

    /// Moves a symbol's fair rate to `price` by revaluing its base asset (tests steer the market with it).
    pub fn set_price(&mut self, ex: &Exchange, symbol: usize, price: f64) {
        let spec = &ex.markets[symbol].spec;
        let quote = self.usd.get(&spec.quote).copied().unwrap_or(1.0);
        self.usd.insert(spec.base.clone(), price * quote);
        self.dislocations[symbol] = None;
    }

    /// One market step: walk, dislocate, re-quote every book, print trades, flush streams.
    pub fn step(&mut self, ex: &mut Exchange, depth_gap: u64, now: i64) {
        self.step += 1;
        self.walk();
        self.dislocate(ex.markets.len());
        for symbol in 0..ex.markets.len() {
            self.requote(ex, symbol, now);
            self.random_trade(ex, symbol, now);
        }
        ex.after_change(now);
        ex.flush_streams(Cadence::Fast, depth_gap, now);
        if self.step % self.slow_every == 0 {
            ex.flush_streams(Cadence::Slow, 0, now);
        }
    }

    fn walk(&mut self) {
        let sigma = VOLATILITY * (self.step_ms / 100.0).sqrt();
        let mut assets: Vec<&String> = self.usd.keys().filter(|a| a.as_str() != "USDT").collect();
        assets.sort(); // HashMap order is random; the walk must not be
        let assets: Vec<String> = assets.into_iter().cloned().collect();
        for asset in assets {
            let z = normal(&mut self.rng);
            if let Some(v) = self.usd.get_mut(&asset) {
                *v *= (sigma * z - 0.5 * sigma * sigma).exp();
            }
        }
    }

    fn dislocate(&mut self, symbols: usize) {
        for d in &mut self.dislocations {
            if d.is_some_and(|d| d.until_step <= self.step) {
                *d = None;
            }
        }
        let roll: f64 = self.rng.random();
        if symbols == 0 || roll >= self.dislocation_chance {
            return;
        }
        let symbol = self.rng.random_range(0..symbols);
        let size = self.rng.random_range(0.004..0.009);
        let sign = if self.rng.random_bool(0.5) { 1.0 } else { -1.0 };
        let lasts_ms = self.rng.random_range(1_000.0..3_000.0);
        let steps = (lasts_ms / self.step_ms).ceil() as u64;
        self.dislocations[symbol] = Some(Dislocation {
            factor: sign * size,
            until_step: self.step + steps.max(1),
        });
    }

    fn requote(&mut self, ex: &mut Exchange, symbol: usize, now: i64) {
        let mut mid = self.fair(ex, symbol);
        if let Some(d) = self.dislocations[symbol] {
            mid *= 1.0 + d.factor;
        }
        let spec = ex.markets[symbol].spec.clone();
        let tick = spec.tick_size;
        let to_dec = |v: f64| Decimal::from_f64(v).unwrap_or_default();
        let best_bid = floor_to(to_dec(mid * (1.0 - HALF_SPREAD)), tick).max(tick);
        let mut best_ask = ceil_to(to_dec(mid * (1.0 + HALF_SPREAD)), tick);
        if best_ask <= best_bid {
            best_ask = best_bid + tick;
        }
        let gap = ceil_to(to_dec(mid * LEVEL_GAP), tick).max(tick);
        let n = self.levels;
        let bid_at = |i: usize| best_bid - gap * Decimal::from(i);
        let ask_at = |i: usize| best_ask + gap * Decimal::from(i);
        let lowest_bid = bid_at(n - 1);
        let highest_ask = ask_at(n - 1);
        let on_ladder = |p: Decimal, best: Decimal, far: Decimal| {
            p <= best.max(far) && p >= best.min(far) && ((p - best) % gap).is_zero()
        };

        let book = &mut ex.markets[symbol].book;
        book.retain_synthetic(Side::Buy, |p| on_ladder(p, best_bid, lowest_bid));
        book.retain_synthetic(Side::Sell, |p| on_ladder(p, best_ask, highest_ask));
        // The market moved through users' resting orders: they fill, as makers, at their price.
        ex.execute(symbol, Side::Sell, Some(best_ask), Amount::All, Taker::Synthetic, now);
        ex.execute(symbol, Side::Buy, Some(best_bid), Amount::All, Taker::Synthetic, now);

        let base_usd = self.usd.get(&spec.base).copied().unwrap_or(1.0);
        let book = &mut ex.markets[symbol].book;
        for i in 0..n {
            for (side, price) in [(Side::Buy, bid_at(i)), (Side::Sell, ask_at(i))] {
                // Always draw both numbers so the random sequence never depends on users' actions.
                let refresh: f64 = self.rng.random();
                let scale: f64 = self.rng.random_range(0.5..1.5);
                if price <= Decimal::ZERO {
                    continue;
                }
                let current = book.synthetic_at(side, price);
                if !current.is_zero() && refresh > 0.15 {
                    continue;
                }
                let usd = LEVEL_USD * (1.0 + 0.25 * i as f64) * scale;
                let qty = floor_to(to_dec(usd / base_usd), spec.step_size).max(spec.step_size);
                book.set_synthetic(side, price, qty);
            }
        }
        ex.touch_top(symbol);
    }

    fn random_trade(&mut self, ex: &mut Exchange, symbol: usize, now: i64) {
        let roll: f64 = self.rng.random();
        let buy = self.rng.random_bool(0.5);
        let fraction: f64 = self.rng.random_range(0.05..0.6);
        if roll >= TRADE_CHANCE {
            return;
        }
        let m = &ex.markets[symbol];
        let (side, top) = if buy {
            (Side::Buy, m.book.best_ask())
        } else {
            (Side::Sell, m.book.best_bid())
        };
        let Some((price, qty)) = top else { return };
        let step = m.spec.step_size;
        let size = floor_to(qty * Decimal::from_f64(fraction).unwrap_or_default(), step).max(step);
        ex.execute(symbol, side, Some(price), Amount::Base(size), Taker::Synthetic, now);
    }
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
