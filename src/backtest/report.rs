//! The backtest's figures (JSON) and its equity curve (SVG).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::venue::{CallCounts, ReplayVenue};
use crate::exchange::grid::to_f64 as f;
use crate::exchange::{Balance, Venue};
use crate::ledger::PoolKind;

/// How the Sharpe-style ratio is computed (also written into the report).
pub const SHARPE_DEFINITION: &str = "mean / standard deviation of the one-minute returns of the equity \
(valued in the quote asset at the book's mid; risk-free rate 0), times sqrt(525600) to annualise; \
null with fewer than two minutes or no variation";

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub strategy: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub events_replayed: u64,
    pub quote_asset: String,
    /// End minus start balance (free + locked) of every asset that changed.
    pub pnl: BTreeMap<String, f64>,
    /// The PnL valued in the quote asset at the end's mid prices.
    pub pnl_in_quote: f64,
    pub start_equity: f64,
    pub end_equity: f64,
    pub fills: u64,
    pub maker_fills: u64,
    pub taker_fills: u64,
    pub fees: BTreeMap<String, f64>,
    /// Traded value per quote asset (price × quantity over the fills).
    pub turnover: BTreeMap<String, f64>,
    pub max_drawdown: f64,
    pub max_drawdown_pct: f64,
    pub sharpe: Option<f64>,
    pub sharpe_definition: &'static str,
    /// Orders by outcome: the engine's final states, plus refusals before the engine.
    pub orders: BTreeMap<String, u64>,
    pub calls: CallCounts,
    pub budget: Budget,
    pub strategy_errors: u64,
    pub limit_trips: u64,
    pub depth_gaps: u64,
    /// Every fill, in order.
    pub fill_list: Vec<FillRow>,
    /// `(time ms, equity)`, one point per replayed second with market activity.
    pub equity_curve: Vec<(i64, f64)>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FillRow {
    pub time_ms: i64,
    pub symbol: String,
    pub side: &'static str,
    pub price: f64,
    pub qty: f64,
    pub commission: f64,
    pub commission_asset: String,
    pub maker: bool,
    pub order_id: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Budget {
    pub weight_used: u64,
    pub orders_sent: u64,
    /// Highest share of any request-weight window used, percent.
    pub peak_weight_pct: f64,
    /// Highest share of any order-count window used, percent.
    pub peak_orders_pct: f64,
}

pub fn build(
    venue: &ReplayVenue,
    strategy: &str,
    from_ms: i64,
    start: &BTreeMap<String, Balance>,
    strategy_errors: u64,
    limit_trips: u64,
) -> Report {
    let end_balances = venue.balances();
    let ledger = venue.ledger_status(strategy);
    let mut world = venue.world.lock();
    let end_equity = world.equity_now();
    let to_ms = world.now_ms();
    // A last point at the end, so the curve and drawdown include the final state.
    if world.equity.last().is_none_or(|(t, _)| *t != to_ms) {
        world.equity.push((to_ms, end_equity));
    }
    let ex = &world.ex;
    let mut pnl = BTreeMap::new();
    for (asset, end) in &end_balances {
        let before = start.get(asset).map_or(0.0, |b| b.free + b.locked);
        let change = end.free + end.locked - before;
        if change != 0.0 {
            pnl.insert(asset.clone(), change);
        }
    }
    let (mut fees, mut turnover) = (BTreeMap::new(), BTreeMap::new());
    let (mut maker, mut taker) = (0, 0);
    let mut fill_list = Vec::new();
    for t in ex.my_trades() {
        fill_list.push(FillRow {
            time_ms: t.time,
            symbol: ex.markets[t.symbol].spec.symbol.clone(),
            side: if t.is_buyer { "BUY" } else { "SELL" },
            price: f(t.price),
            qty: f(t.qty),
            commission: f(t.commission),
            commission_asset: t.commission_asset.clone(),
            maker: t.is_maker,
            order_id: t.order_id,
        });
        *fees.entry(t.commission_asset.clone()).or_insert(0.0) += f(t.commission);
        let quote = ex.markets[t.symbol].spec.quote.clone();
        *turnover.entry(quote).or_insert(0.0) += f(t.price * t.qty);
        if t.is_maker {
            maker += 1;
        } else {
            taker += 1;
        }
    }
    let mut orders: BTreeMap<String, u64> = BTreeMap::new();
    for o in ex.orders() {
        let key = if o.status.is_open() {
            format!("open_{}", o.status.as_str().to_ascii_lowercase())
        } else {
            o.status.as_str().to_ascii_lowercase()
        };
        *orders.entry(key).or_insert(0) += 1;
    }
    let counts = world.counts.clone();
    for (key, n) in [
        ("rejected_by_exchange", counts.rejected),
        ("invalid", counts.invalid),
        ("rate_limited", counts.rate_limited),
    ] {
        if n > 0 {
            orders.insert(key.into(), n);
        }
    }
    let peak = |kind: PoolKind| {
        ledger
            .pools
            .iter()
            .filter(|p| p.kind == kind && p.limit > 0)
            .map(|p| p.peak as f64 * 100.0 / p.limit as f64)
            .fold(0.0, f64::max)
    };
    let curve = world.equity.clone();
    let start_equity = curve.first().map_or(end_equity, |(_, e)| *e);
    let (max_drawdown, max_drawdown_pct) = drawdown(&curve);
    let quote = world.valuation.quote.clone();
    let pnl_in_quote = end_equity - start_equity;
    Report {
        strategy: strategy.to_string(),
        from_ms,
        to_ms,
        events_replayed: world.events,
        quote_asset: quote,
        pnl,
        pnl_in_quote,
        start_equity,
        end_equity,
        fills: maker + taker,
        maker_fills: maker,
        taker_fills: taker,
        fees,
        turnover,
        max_drawdown,
        max_drawdown_pct,
        sharpe: sharpe(&curve),
        sharpe_definition: SHARPE_DEFINITION,
        orders,
        calls: counts,
        budget: Budget {
            weight_used: ledger.mine.total_weight,
            orders_sent: ledger.mine.total_orders,
            peak_weight_pct: peak(PoolKind::RequestWeight),
            peak_orders_pct: peak(PoolKind::Orders),
        },
        strategy_errors,
        limit_trips,
        depth_gaps: world.mirror.depth_gaps,
        fill_list,
        equity_curve: curve,
    }
}

/// Largest fall from a running peak: absolute and in percent of that peak.
fn drawdown(curve: &[(i64, f64)]) -> (f64, f64) {
    let (mut peak, mut worst, mut worst_pct) = (f64::MIN, 0.0f64, 0.0f64);
    for &(_, e) in curve {
        peak = peak.max(e);
        worst = worst.max(peak - e);
        if peak > 0.0 {
            worst_pct = worst_pct.max((peak - e) / peak * 100.0);
        }
    }
    (worst, worst_pct)
}

/// See [`SHARPE_DEFINITION`].
fn sharpe(curve: &[(i64, f64)]) -> Option<f64> {
    let mut minutes: BTreeMap<i64, f64> = BTreeMap::new();
    for &(t, e) in curve {
        minutes.insert(t.div_euclid(60_000), e);
    }
    let values: Vec<f64> = minutes.into_values().collect();
    let returns: Vec<f64> = values
        .windows(2)
        .filter(|w| w[0] > 0.0)
        .map(|w| w[1] / w[0] - 1.0)
        .collect();
    if returns.len() < 2 {
        return None;
    }
    let n = returns.len() as f64;
    let mean = returns.iter().sum::<f64>() / n;
    let var = returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let sd = var.sqrt();
    (sd > 0.0).then(|| mean / sd * 525_600f64.sqrt())
}

/// Writes `report.json` and `equity.svg` into `dir`.
pub fn write(report: &Report, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("report.json"), json + "\n")?;
    std::fs::write(dir.join("equity.svg"), equity_svg(report))
}

/// The equity curve as an SVG line chart (no fonts or plotting library needed to view it).
pub fn equity_svg(report: &Report) -> String {
    let (w, h, pad) = (800.0, 360.0, 50.0);
    let curve = &report.equity_curve;
    let (t0, t1) = (
        curve.first().map_or(0, |p| p.0) as f64,
        curve.last().map_or(1, |p| p.0) as f64,
    );
    let lo = curve.iter().map(|p| p.1).fold(f64::MAX, f64::min);
    let hi = curve.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    let span_t = (t1 - t0).max(1.0);
    let span_e = if hi > lo { hi - lo } else { 1.0 };
    let mut points = String::new();
    for &(t, e) in curve {
        let x = pad + (t as f64 - t0) / span_t * (w - 2.0 * pad);
        let y = h - pad - (e - lo) / span_e * (h - 2.0 * pad);
        let _ = write!(points, "{x:.1},{y:.1} ");
    }
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\n\
<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
<text x=\"{pad}\" y=\"24\" font-family=\"sans-serif\" font-size=\"14\">{} equity in {} (max drawdown {:.2}, {:.2} %)</text>\n\
<line x1=\"{pad}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"#888\"/>\n\
<line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{y0}\" stroke=\"#888\"/>\n\
<text x=\"4\" y=\"{pad}\" font-family=\"sans-serif\" font-size=\"10\">{hi:.2}</text>\n\
<text x=\"4\" y=\"{y0}\" font-family=\"sans-serif\" font-size=\"10\">{lo:.2}</text>\n\
<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"{}\"/>\n</svg>\n",
        xml(&report.strategy),
        xml(&report.quote_asset),
        report.max_drawdown,
        report.max_drawdown_pct,
        points.trim_end(),
        y0 = h - pad,
        x1 = w - pad,
        hi = if curve.is_empty() { 0.0 } else { hi },
        lo = if curve.is_empty() { 0.0 } else { lo },
    );
    svg
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
