//! Fees from the options in backtests (commission per fill, deducted from balances, in the
//! report) and the equity curve's picture.

use runner::backtest::{self, Fees};

use crate::replay::{fill, fills, options, snapshot, trade, write_recording, write_strategy};

/// A resting buy (maker when a trade crosses it) and a market buy (taker) on one recording.
const MAKER_AND_TAKER: &str = r#"
local taken = false
return {
  symbols = { "BTCUSDT" },
  streams = { "trade" },
  on_start = function()
    assert(orders.place{ symbol = "BTCUSDT", side = "BUY", type = "LIMIT", price = 99.90, quantity = 0.1 })
  end,
  on_trade = function(t)
    if taken then return end
    taken = true
    local o, err = orders.place{ symbol = "BTCUSDT", side = "BUY", type = "MARKET", quantity = 0.2 }
    assert(o and o.status == "FILLED", tostring(err))
    log.info("taker commission %.8f %s", o.commission, o.commission_asset)
  end,
}
"#;

fn maker_and_taker_run(fees: Option<&str>) -> backtest::report::Report {
    let dir = tempfile::tempdir().unwrap();
    let data = write_recording(
        &dir.path().join("data"),
        &[
            snapshot(1_000, &[("100.00", "1")], &[("100.10", "1")]),
            trade(2_000, 1, "100.10", "0.01", false), // the market buy goes out on this one
            trade(3_000, 2, "99.80", "1", true),      // through the resting buy: it fills in full
        ],
    );
    let strategy = write_strategy(dir.path(), "fees", MAKER_AND_TAKER);
    let mut options = options(strategy, data);
    if let Some(text) = fees {
        options.fees = Fees::parse(text).unwrap();
    }
    backtest::run(&options).unwrap()
}

#[test]
fn configured_fees_are_charged_per_fill_by_maker_or_taker_and_reported() {
    let report = maker_and_taker_run(Some("maker=0.0002,taker=0.0005"));
    assert_eq!(
        fills(&report),
        vec![
            fill(2_005, "BUY", 100.10, 0.2, false),
            fill(3_000, "BUY", 99.90, 0.1, true)
        ]
    );
    let commissions: Vec<(f64, &str)> = report
        .fill_list
        .iter()
        .map(|f| (f.commission, f.commission_asset.as_str()))
        .collect();
    // Paid in the asset received (BTC on a buy): rate × quantity.
    assert_eq!(commissions, vec![(0.0001, "BTC"), (0.00002, "BTC")]);
    assert!((report.fees["BTC"] - 0.00012).abs() < 1e-15, "{:?}", report.fees);
    assert_eq!((report.fee_rates.maker, report.fee_rates.taker), (0.0002, 0.0005));
    // Deducted from what the account received: 0.3 BTC bought, 0.00012 paid.
    assert!((report.pnl["BTC"] - 0.29988).abs() < 1e-12, "{:?}", report.pnl);
    assert!(
        (report.pnl["USDT"] + (0.2 * 100.10 + 0.1 * 99.90)).abs() < 1e-9,
        "{:?}",
        report.pnl
    );
    assert_eq!(report.strategy_errors, 0);
}

#[test]
fn the_default_fee_is_binances_base_rate_and_zero_fees_charge_nothing() {
    let report = maker_and_taker_run(None);
    assert_eq!((report.fee_rates.maker, report.fee_rates.taker), (0.001, 0.001));
    assert!((report.fees["BTC"] - 0.0003).abs() < 1e-15, "{:?}", report.fees);

    let free = maker_and_taker_run(Some("maker=0,taker=0"));
    assert!(
        free.fill_list.iter().all(|f| f.commission == 0.0),
        "{:?}",
        free.fill_list
    );
    assert!((free.pnl["BTC"] - 0.3).abs() < 1e-12, "{:?}", free.pnl);
}

#[test]
fn bad_fee_options_are_refused_with_the_reason() {
    for (text, reason) in [
        ("maker=0.2", "from 0 to 0.1"),
        ("taker=-0.001", "from 0 to 0.1"),
        ("maker=abc", "not a number"),
        ("rebate=0.001", "unknown fee"),
        ("maker", "expected maker=RATE"),
        ("maker=0.000000001", "at most 8 decimals"),
    ] {
        let e = Fees::parse(text).unwrap_err();
        assert!(e.contains(reason), "{text}: {e}");
    }
    assert_eq!(
        Fees::parse("taker=0.00075").unwrap(),
        Fees {
            maker: Fees::default().maker,
            taker: "0.00075".parse().unwrap()
        }
    );
}

/// The `points` of every `<polyline>` in `svg`, as (x, y) pairs.
fn polyline_points(svg: &str) -> Vec<Vec<(f64, f64)>> {
    svg.split("<polyline")
        .skip(1)
        .map(|element| {
            let start = element.find("points=\"").expect("a points attribute") + "points=\"".len();
            let end = start + element[start..].find('"').expect("the attribute's end");
            element[start..end]
                .split_whitespace()
                .map(|pair| {
                    let (x, y) = pair.split_once(',').expect("x,y");
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect()
        })
        .collect()
}

#[test]
fn the_report_writes_its_json_and_an_svg_of_the_equity_curve() {
    let dir = tempfile::tempdir().unwrap();
    // Trades over three minutes: the resting buy fills, then the price rises and falls.
    let mut records = vec![snapshot(1_000, &[("100.00", "1")], &[("100.10", "1")])];
    for (i, price) in ["99.80", "100.50", "101.00", "100.20", "99.50", "100.80"]
        .iter()
        .enumerate()
    {
        records.push(trade(2_000 + i as i64 * 30_000, i as u64 + 1, price, "1", i == 0));
    }
    let data = write_recording(&dir.path().join("data"), &records);
    let strategy = write_strategy(
        dir.path(),
        "rest",
        r#"return { symbols = { "BTCUSDT" }, on_start = function()
             assert(orders.place{ symbol = "BTCUSDT", side = "BUY", type = "LIMIT", price = 99.90, quantity = 5 })
           end }"#,
    );
    let out = dir.path().join("report");
    let mut options = options(strategy, data);
    options.report_dir = Some(out.clone());
    let report = backtest::run(&options).unwrap();

    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["fee_rates"]["maker"], 0.001);
    assert_eq!(
        json["equity_curve"].as_array().unwrap().len(),
        report.equity_curve.len()
    );

    let svg = std::fs::read_to_string(out.join("equity.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
    assert!(svg.contains("xmlns=\"http://www.w3.org/2000/svg\""), "{svg}");
    assert_eq!(svg.matches('<').count(), svg.matches('>').count(), "unbalanced markup");
    assert!(
        svg.contains("rest equity in USDT"),
        "the caption names the strategy and the asset"
    );
    // One polyline is the curve: a point per equity sample, left to right, higher equity higher up.
    let curve = polyline_points(&svg)
        .into_iter()
        .find(|line| line.len() == report.equity_curve.len())
        .unwrap_or_else(|| panic!("no polyline of {} points in {svg}", report.equity_curve.len()));
    assert!(report.equity_curve.len() >= 4, "{:?}", report.equity_curve);
    let values: Vec<f64> = report.equity_curve.iter().map(|p| p.1).collect();
    let range = values.iter().cloned().fold(f64::MIN, f64::max) - values.iter().cloned().fold(f64::MAX, f64::min);
    assert!(range > 0.0, "the equity moved: {values:?}");
    for (drawn, equity) in curve.windows(2).zip(values.windows(2)) {
        assert!(drawn[1].0 >= drawn[0].0, "x grows with time: {curve:?}");
        let (rise, drawn_rise) = (equity[1] - equity[0], drawn[0].1 - drawn[1].1);
        // A move of a few pixels or more is drawn the same way up (SVG's y grows downwards).
        if rise.abs() > range * 0.02 {
            assert!(
                rise * drawn_rise > 0.0,
                "equity {equity:?} is drawn {drawn:?}: {curve:?}"
            );
        }
    }
}
