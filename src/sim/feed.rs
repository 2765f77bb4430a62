//! Market-stream payloads in the exchange's shapes, built only when someone listens.

use rust_decimal::Decimal;

use super::book::Cadence;
use super::candles::{Candle, MINUTE_MS, SECOND_MS};
use super::hub::Hub;
use super::num::d8;
use super::stats;
use super::symbol_state::{Market, TradeRec, TICKER_WINDOWS};
use crate::exchange::binance::wire::{
    BookTickerEvent, DepthSnapshot, DepthUpdateEvent, KlineBody, KlineEvent, TradeEvent,
};

fn s8(v: Decimal) -> String {
    d8(v).to_string()
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

pub fn publish_trade(hub: &Hub, m: &Market, t: &TradeRec) {
    hub.publish(&m.streams.trade, || {
        let (p, q) = (s8(t.price), s8(t.qty));
        json(&TradeEvent {
            e: "trade",
            event_time: t.time,
            s: &m.spec.symbol,
            t: t.id,
            p: &p,
            q: &q,
            trade_time: t.time,
            m: t.buyer_maker,
            best_match: true,
        })
    });
    hub.publish(&m.streams.agg_trade, || {
        serde_json::json!({
            "e": "aggTrade", "E": t.time, "s": m.spec.symbol, "a": t.id, "p": s8(t.price), "q": s8(t.qty),
            "f": t.id, "l": t.id, "T": t.time, "m": t.buyer_maker, "M": true
        })
        .to_string()
    });
}

pub fn publish_book_ticker(hub: &Hub, m: &Market) {
    hub.publish(&m.streams.book_ticker, || {
        let (bp, bq) = m.book.best_bid().unwrap_or_default();
        let (ap, aq) = m.book.best_ask().unwrap_or_default();
        let (b, bq, a, aq) = (s8(bp), s8(bq), s8(ap), s8(aq));
        json(&BookTickerEvent {
            u: m.book.update_id(),
            s: &m.spec.symbol,
            b: &b,
            bid_qty: &bq,
            a: &a,
            ask_qty: &aq,
        })
    });
}

/// Depth diffs and partial books of one cadence (fast = 100 ms streams, slow = 1000 ms streams).
pub fn publish_depth(hub: &Hub, m: &mut Market, cadence: Cadence, now: i64) {
    // The diff is taken even with no listener, so a later subscriber's first event starts
    // right after the ids it could have missed, which a snapshot then covers.
    let diff = m.book.take_diff(cadence);
    let name = match cadence {
        Cadence::Fast => &m.streams.depth_fast,
        Cadence::Slow => &m.streams.depth_slow,
    };
    if let Some(diff) = diff {
        hub.publish(name, || {
            let rows = |levels: &[[Decimal; 2]]| -> Vec<[String; 2]> {
                levels.iter().map(|[p, q]| [p.to_string(), q.to_string()]).collect()
            };
            let (b, a) = (rows(&diff.bids), rows(&diff.asks));
            fn refs(rows: &[[String; 2]]) -> Vec<[&str; 2]> {
                rows.iter().map(|[p, q]| [p.as_str(), q.as_str()]).collect()
            }
            json(&DepthUpdateEvent {
                e: "depthUpdate",
                event_time: now,
                s: &m.spec.symbol,
                first_update_id: diff.first_id,
                u: diff.last_id,
                b: refs(&b),
                a: refs(&a),
            })
        });
    }
    for (levels, slow, fast) in &m.streams.partial {
        let name = match cadence {
            Cadence::Fast => fast,
            Cadence::Slow => slow,
        };
        hub.publish(name, || {
            let snap: DepthSnapshot = m.book.snapshot(*levels);
            json(&snap)
        });
    }
}

fn kline_json(m: &Market, interval: &str, c: &Candle, closed: bool, now: i64) -> String {
    let (o, cl, h, l) = (s8(c.open), s8(c.close), s8(c.high), s8(c.low));
    let (v, q, tb, tq) = (
        s8(c.volume),
        s8(c.quote_volume),
        s8(c.taker_buy_base),
        s8(c.taker_buy_quote),
    );
    json(&KlineEvent {
        e: "kline",
        event_time: now,
        s: &m.spec.symbol,
        k: KlineBody {
            t: c.open_time,
            close_time: c.close_time,
            s: &m.spec.symbol,
            i: interval,
            f: c.first_id,
            last_trade_id: c.last_id,
            o: &o,
            c: &cl,
            h: &h,
            l: &l,
            v: &v,
            n: c.trades,
            x: closed,
            q: &q,
            taker_base: &tb,
            taker_quote: &tq,
            ignore: "0",
        },
    })
}

/// The running candle of every subscribed interval.
pub fn publish_klines(hub: &Hub, m: &Market, now: i64) {
    for (interval, ms, name) in &m.streams.klines {
        if !hub.wants(name) {
            continue;
        }
        if let Some(c) = m.candles.latest(*ms) {
            hub.publish(name, || kline_json(m, interval, &c, false, now));
        }
    }
}

/// Candles just closed, each printed with `x: true`: seconds on the 1s stream, minutes on the 1m
/// stream, and every longer interval's candle that such a minute completes.
pub fn publish_closed_klines(hub: &Hub, m: &Market, seconds: &[Candle], minutes: &[Candle], now: i64) {
    if let Some((interval, _, name)) = m.streams.klines.iter().find(|(_, ms, _)| *ms == SECOND_MS) {
        if hub.wants(name) {
            for second in seconds {
                hub.publish(name, || kline_json(m, interval, second, true, now));
            }
        }
    }
    for minute in minutes {
        for (interval, ms, name) in &m.streams.klines {
            if *ms < MINUTE_MS || !hub.wants(name) {
                continue;
            }
            let candle = if *ms == MINUTE_MS {
                Some(minute.clone())
            } else {
                m.candles.completed_by(minute, *ms)
            };
            if let Some(candle) = candle {
                hub.publish(name, || kline_json(m, interval, &candle, true, now));
            }
        }
    }
}

/// Seconds between two ticker pushes (the streams' documented update speed).
const TICKER_PERIOD_MS: i64 = 1_000;

fn mini_ticker_json(m: &Market, now: i64) -> serde_json::Value {
    let w = stats::window(m, now - 86_400_000, now, true);
    serde_json::json!({
        "e": "24hrMiniTicker", "E": now, "s": w.symbol, "c": w.last_price, "o": w.open_price,
        "h": w.high_price, "l": w.low_price, "v": w.volume, "q": w.quote_volume
    })
}

fn window_ticker_json(m: &Market, label: &str, ms: i64, now: i64) -> serde_json::Value {
    let open_time = (now - ms).div_euclid(MINUTE_MS) * MINUTE_MS;
    let w = stats::window(m, open_time, now, false);
    serde_json::json!({
        "e": format!("{label}Ticker"), "E": now, "s": w.symbol,
        "p": w.price_change.unwrap_or_default(), "P": w.price_change_percent.unwrap_or_default(),
        "o": w.open_price, "h": w.high_price, "l": w.low_price, "c": w.last_price,
        "w": w.weighted_avg_price.unwrap_or_default(), "v": w.volume, "q": w.quote_volume,
        "O": w.open_time, "C": w.close_time, "F": w.first_id, "L": w.last_id, "n": w.count
    })
}

/// Each symbol's 24hr mini and full tickers, rolling-window tickers and average price.
pub fn publish_tickers(hub: &Hub, m: &Market, now: i64) {
    hub.publish(&m.streams.mini_ticker, || mini_ticker_json(m, now).to_string());
    hub.publish(&m.streams.ticker, || {
        let open_time = now - 86_400_000;
        let w = stats::window(m, open_time, now, false);
        let (bp, bq) = m.book.best_bid().unwrap_or_default();
        let (ap, aq) = m.book.best_ask().unwrap_or_default();
        // "First trade(F)-1 price": the last price before the window, the window's open otherwise.
        let before = m.candles.query(MINUTE_MS, None, Some(open_time - 1), 1).pop();
        let x = before.map(|c| c.close).unwrap_or(w.open_price);
        serde_json::json!({
            "e": "24hrTicker", "E": now, "s": w.symbol,
            "p": w.price_change.unwrap_or_default(), "P": w.price_change_percent.unwrap_or_default(),
            "w": w.weighted_avg_price.unwrap_or_default(), "x": s8(x), "c": w.last_price,
            "Q": s8(m.trades.back().map(|t| t.qty).unwrap_or_default()),
            "b": s8(bp), "B": s8(bq), "a": s8(ap), "A": s8(aq),
            "o": w.open_price, "h": w.high_price, "l": w.low_price, "v": w.volume, "q": w.quote_volume,
            "O": w.open_time, "C": w.close_time, "F": w.first_id, "L": w.last_id, "n": w.count
        })
        .to_string()
    });
    for (label, ms, name) in &m.streams.window_tickers {
        hub.publish(name, || window_ticker_json(m, label, *ms, now).to_string());
    }
    hub.publish(&m.streams.avg_price, || {
        serde_json::json!({
            "e": "avgPrice", "E": now, "s": m.spec.symbol, "i": format!("{}m", stats::AVG_PRICE_MINS),
            "w": s8(stats::avg_price(m, now)), "T": m.trades.back().map(|t| t.time).unwrap_or(now)
        })
        .to_string()
    });
}

/// Name of the all-market mini-ticker stream.
pub const ALL_MINI_TICKERS: &str = "!miniTicker@arr";

/// Name of an all-market rolling-window ticker stream.
pub fn all_window_tickers(label: &str) -> String {
    format!("!ticker_{label}@arr")
}

/// The all-market arrays, with only the symbols that traded since the last push (as documented).
pub fn publish_all_market_tickers(hub: &Hub, markets: &[Market], now: i64) {
    let changed = || {
        markets
            .iter()
            .filter(move |m| m.trades.back().is_some_and(|t| t.time > now - TICKER_PERIOD_MS))
    };
    if changed().next().is_none() {
        return;
    }
    hub.publish(ALL_MINI_TICKERS, || {
        serde_json::Value::Array(changed().map(|m| mini_ticker_json(m, now)).collect()).to_string()
    });
    for (label, ms) in TICKER_WINDOWS {
        hub.publish(&all_window_tickers(label), || {
            serde_json::Value::Array(changed().map(|m| window_ticker_json(m, label, ms, now)).collect()).to_string()
        });
    }
}
