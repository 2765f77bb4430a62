//! The synthetic market: asset values follow a seeded random walk, every symbol quotes a
//! ladder around its cross rate (so ETHBTC ≈ ETHUSDT / BTCUSDT), one symbol now and then
//! jumps away from its fair rate for 1–3 s (what a triangular arbitrage looks for), and
//! random takers print trades. Users' resting orders fill when the market moves through them.
//!
//! The market opens lively: its first dislocation comes at a seeded moment 1–3 s after the
//! start, and they come every few seconds during the opening, so a short first run already
//! shows arbitrage; after it, they come every `dislocation_every` on average.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::prelude::FromPrimitive;
use rust_decimal::Decimal;

use super::book::{Amount, Cadence};
use super::candles::Candle;
use super::config::SimConfig;
use super::matching::{Exchange, Taker};
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
/// How long the lively opening lasts, and the mean time between its dislocations.
const OPENING_MS: f64 = 20_000.0;
const OPENING_EVERY_MS: f64 = 2_500.0;
/// When the opening's first dislocation comes (a seeded moment in this range).
const FIRST_DISLOCATION_MS: std::ops::Range<f64> = 1_000.0..3_000.0;

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
    /// The chance per step during the opening, and the step the opening ends at.
    opening_chance: f64,
    opening_steps: u64,
    /// The step of the first, certain dislocation (none when dislocations are off).
    first_dislocation_step: Option<u64>,
    slow_every: u64,
}

impl Synthetic {
    pub fn new(config: &SimConfig) -> Self {
        // Manually stepped markets (tick zero) model each step as a default 100 ms step.
        let step_ms = match config.market_tick.as_millis() {
            0 => 100.0,
            ms => ms as f64,
        };
        let every_ms = config.dislocation_every.as_millis() as f64;
        let mut rng = StdRng::seed_from_u64(config.seed);
        let dislocating = every_ms > 0.0;
        let first_ms = rng.random_range(FIRST_DISLOCATION_MS);
        Synthetic {
            rng,
            usd: config.asset_prices.iter().cloned().collect(),
            dislocations: vec![None; config.symbols.len()],
            step: 0,
            levels: config.synthetic_levels.max(1),
            step_ms,
            dislocation_chance: if dislocating { step_ms / every_ms } else { 0.0 },
            // Never calmer than the configured pace.
            opening_chance: if dislocating {
                step_ms / every_ms.min(OPENING_EVERY_MS)
            } else {
                0.0
            },
            opening_steps: (OPENING_MS / step_ms).ceil() as u64,
            first_dislocation_step: dislocating.then(|| ((first_ms / step_ms).round() as u64).max(1)),
            slow_every: (1000.0 / step_ms).round().max(1.0) as u64,
        }
    }

    /// One-minute candles for the `minutes` before `now`, ending at today's prices: each asset
    /// walks backwards from its starting value (its own seeded stream, so the live market's
    /// random sequence is unchanged).
    pub fn seed_history(&self, ex: &mut Exchange, seed: u64, minutes: usize, now: i64) {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x004b_11e5);
        let sigma = VOLATILITY * (60_000.0f64 / 100.0).sqrt();
        let mut assets: Vec<&String> = self.usd.keys().collect();
        assets.sort();
        // paths[asset][k] = value k minutes before now (k = 0 is the current value).
        let mut paths: HashMap<String, Vec<f64>> = HashMap::new();
        for asset in assets {
            let mut v = self.usd[asset];
            let mut path = Vec::with_capacity(minutes + 1);
            path.push(v);
            for _ in 0..minutes {
                if asset != "USDT" {
                    v /= (sigma * normal(&mut rng)).exp();
                }
                path.push(v);
            }
            paths.insert(asset.clone(), path);
        }
        let this_minute = now.div_euclid(60_000) * 60_000;
        for m in &mut ex.markets {
            let (Some(base), Some(quote)) = (paths.get(&m.spec.base), paths.get(&m.spec.quote)) else {
                continue;
            };
            let tick = m.spec.tick_size;
            let price = |k: usize| floor_to(Decimal::from_f64(base[k] / quote[k]).unwrap_or_default(), tick).max(tick);
            let candles = (1..=minutes)
                .rev()
                .map(|k| {
                    let (open, close) = (price(k), price(k - 1));
                    let wiggle = Decimal::from_f64(1.0 + rng.random_range(0.0..0.0008)).unwrap_or(Decimal::ONE);
                    let volume = floor_to(
                        Decimal::from_f64(rng.random_range(20.0..200.0) * LEVEL_USD / base[k]).unwrap_or_default(),
                        m.spec.step_size,
                    );
                    let mid = (open + close) / Decimal::TWO;
                    Candle {
                        open_time: this_minute - k as i64 * 60_000,
                        close_time: this_minute - (k as i64 - 1) * 60_000 - 1,
                        open,
                        high: floor_to(open.max(close) * wiggle, tick),
                        low: ceil_to(open.min(close) / wiggle, tick),
                        close,
                        volume,
                        quote_volume: volume * mid,
                        trades: rng.random_range(50..500),
                        taker_buy_base: volume / Decimal::TWO,
                        taker_buy_quote: volume * mid / Decimal::TWO,
                        first_id: -1,
                        last_id: -1,
                    }
                })
                .collect();
            m.candles.seed_history(candles);
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
        if self.step.is_multiple_of(self.slow_every) {
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
        let chance = if self.step <= self.opening_steps {
            self.opening_chance
        } else {
            self.dislocation_chance
        };
        let certain = self.first_dislocation_step == Some(self.step);
        if symbols == 0 || (roll >= chance && !certain) {
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
