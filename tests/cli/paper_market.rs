//! `runner --paper --market URL`: paper trading on another exchange's market. The source here is a
//! second simulator on loopback, priced far from the paper exchange's own synthetic market.

use std::fs;

use runner::sim::{self, SimConfig, SimHandle};

use crate::support::{runner, Running};

/// Buys once across the spread (IOC, retried until the paper book has liquidity), then rests a buy
/// 1 % under the bid and reports when it fills.
const STRATEGY: &str = r#"
local taken, resting = false, false
local function cents(x) return math.floor(x * 100 + 0.5) / 100 end
return {
  symbols = { "BTCUSDT" },
  streams = { "book" },
  on_book = function(q)
    if resting or q.ask <= 0 then return end
    if not taken then
      log.info("quote bid=%.2f ask=%.2f", q.bid, q.ask)
      local limit = cents(q.ask * 1.002)
      local o, err = orders.place{ symbol = "BTCUSDT", side = "BUY", type = "LIMIT", tif = "IOC",
                                   price = limit, quantity = 0.001 }
      if not o then log.warn("taker not placed: %s", tostring(err)) return end
      if o.status ~= "FILLED" then return end
      taken = true
      log.info("taker FILLED %.8f avg=%.2f limit=%.2f", o.filled_qty, o.avg_price, limit)
      return
    end
    local price = cents(q.bid * 0.99)
    local o, err = orders.place{ symbol = "BTCUSDT", side = "BUY", type = "LIMIT", price = price,
                                 quantity = 0.001, client_id = "resting-buy" }
    if not o then log.warn("resting not placed: %s", tostring(err)) return end
    resting = true
    log.info("resting %s price=%.2f", o.status, price)
  end,
  on_order = function(o)
    if o.client_id == "resting-buy" and o.status == "FILLED" then
      log.info("resting FILLED %.8f avg=%.2f", o.filled_qty, o.avg_price)
    end
  end,
}
"#;

/// A source simulator and the runner paper-trading on its market with one strategy.
struct OnMarket {
    rt: tokio::runtime::Runtime,
    source: SimHandle,
    run: Running,
    _dir: tempfile::TempDir,
}

/// Starts a source simulator with `config` and `runner --paper --market <source>` running `script`,
/// with `extra` flags.
fn paper_on_market(config: SimConfig, script: &str, extra: &[&str]) -> OnMarket {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let source = rt.block_on(sim::start(config, ([127, 0, 0, 1], 0).into())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("strategy.lua");
    fs::write(&file, script).unwrap();
    let mut cmd = runner(&dir.path().join("state"));
    cmd.arg(&file)
        .args(["--paper", "--market", &source.rest_url()])
        .args(extra)
        .args(["--no-reload", "--duration", "120s"]);
    OnMarket {
        rt,
        source,
        run: Running::spawn(cmd),
        _dir: dir,
    }
}

impl OnMarket {
    /// Stops the runner (it must exit cleanly) and the source.
    fn stop(self) {
        let OnMarket { rt, source, run, _dir } = self;
        run.terminate();
        let (status, lines) = run.finish();
        assert!(status.success(), "{}", lines.join("\n"));
        rt.block_on(source.shutdown());
    }
}

fn number_after(line: &str, key: &str) -> f64 {
    let rest = &line[line.find(key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len()..];
    let text: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    text.parse()
        .unwrap_or_else(|_| panic!("a number after {key} in {line}"))
}

#[test]
fn paper_on_another_market_sees_its_quotes_fills_locally_and_sends_it_no_order() {
    // BTC at 12 345 USDT: the paper exchange's own synthetic market starts at 65 000.
    let mut prices = sim::default_asset_prices();
    for (asset, price) in &mut prices {
        if asset == "BTC" {
            *price = 12_345.0;
        }
    }
    let config = SimConfig {
        seed: 42,
        asset_prices: prices,
        ..SimConfig::default()
    };
    let mut market = paper_on_market(config, STRATEGY, &[]);
    let (source, run) = (&market.source, &mut market.run);

    // The strategy sees the source's quotes.
    let quote = run.wait_for("a quote", |l| l.contains("quote bid="));
    let (bid, ask) = (number_after(&quote, "bid="), number_after(&quote, "ask="));
    let top = source.book("BTCUSDT", 1).unwrap();
    let source_bid: f64 = top.bids[0][0].to_string().parse().unwrap();
    assert!(bid > 0.0 && ask > bid, "{quote}");
    assert!(
        (bid / source_bid - 1.0).abs() < 0.01,
        "the strategy's bid {bid} is the source's ({source_bid}): {quote}"
    );

    // Across the spread: filled against the source's book, at its price or better.
    let taker = run.wait_for("the taker fill", |l| l.contains("taker FILLED"));
    let (avg, limit) = (number_after(&taker, "avg="), number_after(&taker, "limit="));
    assert!((number_after(&taker, "FILLED ") - 0.001).abs() < 1e-12, "{taker}");
    assert!(avg <= limit && avg > limit * 0.99, "{taker}");

    // Resting under the market: it fills, at its own price, once the source's market falls through it.
    let resting = run.wait_for("the resting order", |l| l.contains("resting NEW price="));
    let price = number_after(&resting, "price=");
    assert!(price < source_bid, "{resting}");
    assert!(source.set_price("BTCUSDT", rust_decimal::Decimal::new(11_900, 0)));
    let filled = run.wait_for("the resting fill", |l| l.contains("resting FILLED"));
    assert_eq!(
        number_after(&filled, "avg="),
        price,
        "a resting order fills at its price: {filled}"
    );

    // None of it reached the source: it saw no order request and placed nothing.
    let stats = source.stats();
    assert_eq!(stats.orders_placed, 0);
    let log = source.request_log();
    assert!(
        log.iter()
            .all(|r| !r.path.contains("/order") && !r.method.contains("order")),
        "an order reached the source: {:?}",
        log.iter().filter(|r| r.path.contains("order")).collect::<Vec<_>>()
    );
    assert!(
        log.iter().any(|r| r.path.contains("/api/v3/depth")),
        "the paper exchange read its book from the source"
    );
    market.stop();
}

#[test]
fn a_bad_market_source_is_one_clear_line_and_exit_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("idle.lua");
    fs::write(&file, "return { symbols = { \"BTCUSDT\" } }\n").unwrap();
    for (args, expected) in [
        (vec!["--market", "ftp://127.0.0.1:1"], "unknown scheme \"ftp\""),
        (
            vec!["--market", "http://127.0.0.1:1", "--rest-url", "http://127.0.0.1:2"],
            "drop --rest-url",
        ),
    ] {
        let mut cmd = runner(&dir.path().join("state"));
        cmd.arg(&file).args(&args);
        let (status, output) = crate::support::run_to_end(cmd);
        assert_eq!(status.code(), Some(2), "{args:?}: {output}");
        assert!(output.contains(expected), "{args:?}: {output}");
    }
}

/// Takes once across the spread, timing the call, then rests a buy under the bid; logs the
/// commission of each fill.
const FEES_AND_LATENCY: &str = r#"
local taken, resting = false, false
local function cents(x) return math.floor(x * 100 + 0.5) / 100 end
return {
  symbols = { "BTCUSDT" },
  streams = { "book" },
  on_book = function(q)
    if resting or q.ask <= 0 then return end
    if not taken then
      local sent = clock.now()
      local o = orders.place{ symbol = "BTCUSDT", side = "BUY", type = "LIMIT", tif = "IOC",
                              price = cents(q.ask * 1.002), quantity = 0.01 }
      if not o or o.status ~= "FILLED" then return end
      taken = true
      log.info("taker FILLED took_ms=%d commission=%.8f asset=%s", clock.now() - sent, o.commission,
               o.commission_asset)
      return
    end
    local price = cents(q.bid * 0.99)
    local o = orders.place{ symbol = "BTCUSDT", side = "BUY", type = "LIMIT", price = price,
                            quantity = 0.02, client_id = "resting-buy" }
    if not o then return end
    resting = true
    log.info("resting %s price=%.2f", o.status, price)
  end,
  on_order = function(o)
    if o.client_id == "resting-buy" and o.status == "FILLED" then
      log.info("resting FILLED commission=%.8f asset=%s", o.commission, o.commission_asset)
    end
  end,
}
"#;

#[test]
fn paper_on_a_market_charges_the_configured_fees_and_delays_orders_by_the_latency() {
    let config = SimConfig {
        seed: 7,
        ..SimConfig::default()
    };
    let extra = ["--fees", "maker=0.0002,taker=0.0005", "--latency", "150ms"];
    let mut market = paper_on_market(config, FEES_AND_LATENCY, &extra);
    let (source, run) = (&market.source, &mut market.run);

    // The taker fill pays the taker rate on the 0.01 BTC it received, in BTC, and the call took
    // the order's trip there and its answer's trip back.
    let taker = run.wait_for("the taker fill", |l| l.contains("taker FILLED"));
    // (Each fill's commission is rounded to 8 decimals, so several fills may differ by 1e-8 each.)
    assert!((number_after(&taker, "commission=") - 0.000005).abs() < 3e-8, "{taker}");
    assert!(taker.contains("asset=BTC"), "{taker}");
    assert!(number_after(&taker, "took_ms=") >= 300.0, "{taker}");

    // The resting buy fills as a maker once the source's market falls through it: the maker rate.
    run.wait_for("the resting order", |l| l.contains("resting NEW price="));
    let top = source.book("BTCUSDT", 1).unwrap();
    assert!(source.set_price("BTCUSDT", top.bids[0][0] * rust_decimal::Decimal::new(97, 2)));
    let filled = run.wait_for("the resting fill", |l| l.contains("resting FILLED"));
    assert!(
        (number_after(&filled, "commission=") - 0.000004).abs() < 3e-8,
        "{filled}"
    );
    assert!(filled.contains("asset=BTC"), "{filled}");
    assert_eq!(source.stats().orders_placed, 0, "no order reached the source");
    market.stop();
}

#[test]
fn fees_and_latency_belong_to_the_built_in_paper_exchange_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("idle.lua");
    fs::write(&file, "return { symbols = { \"BTCUSDT\" } }\n").unwrap();
    for (args, expected) in [
        (
            vec!["--rest-url", "http://127.0.0.1:2", "--fees", "maker=0.001"],
            "fees: sets the built-in paper exchange's",
        ),
        (
            vec!["--rest-url", "http://127.0.0.1:2", "--latency", "5ms"],
            "latency: sets the built-in paper exchange's",
        ),
        (vec!["--fees", "maker=1"], "from 0 to 0.1"),
    ] {
        let mut cmd = runner(&dir.path().join("state"));
        cmd.arg(&file).args(&args);
        let (status, output) = crate::support::run_to_end(cmd);
        assert_eq!(status.code(), Some(2), "{args:?}: {output}");
        assert!(output.contains(expected), "{args:?}: {output}");
    }
}

#[test]
fn the_sources_exchange_info_at_paper_start_reconciles_the_ledger_with_its_usage_header() {
    use runner::backtest::live::{self, MarketSource};
    use runner::exchange::binance::limits::pools;
    use runner::ledger::{Lane, Ledger, LedgerConfig, PoolKind, TokioClock};
    use std::sync::Arc;

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let source = sim::start(
            SimConfig {
                market_tick: std::time::Duration::ZERO,
                ..SimConfig::default()
            },
            ([127, 0, 0, 1], 0).into(),
        )
        .await
        .unwrap();
        // Others on the source's IP have spent 3 000 of its request weight this minute.
        source.faults().add_external_weight(3_000);
        let ledger = Ledger::new(
            pools::with_source_pools(pools::spot_defaults()),
            LedgerConfig::default(),
            Arc::new(TokioClock::new()),
        );
        let weight_used = |ledger: &Ledger, scope| {
            ledger
                .status("paper-market")
                .pools
                .iter()
                .find(|p| p.kind == PoolKind::RequestWeight && p.interval.millis() == 60_000 && p.scope == scope)
                .map(|p| p.used)
                .unwrap()
        };
        let cost = pools::at_source(pools::cost(20, 0, 1, 0));
        let permit = ledger.try_reserve("paper-market", Lane::MarketData, cost).unwrap();
        assert_eq!(
            weight_used(&ledger, pools::SOURCE_IP),
            20,
            "the request's own weight, before the answer"
        );
        let source_url = MarketSource::parse(&source.rest_url()).unwrap();
        let specs = live::source_symbols(&source_url, &["BTCUSDT".to_string()], &ledger, &permit)
            .await
            .unwrap();
        assert_eq!(specs.len(), 1);
        assert!(
            weight_used(&ledger, pools::SOURCE_IP) >= 3_020,
            "the source's X-MBX-USED-WEIGHT-1M raised its pool: {}",
            weight_used(&ledger, pools::SOURCE_IP)
        );
        assert_eq!(
            weight_used(&ledger, pools::IP),
            0,
            "the paper exchange's pool is another server's"
        );
        source.shutdown().await;
    });
}

/// Hammers the source with the dearest depth request (weight 250) without waiting until refused,
/// then places three paper orders.
const HAMMER_THEN_ORDER: &str = r#"
return {
  symbols = { "BTCUSDT" },
  on_start = function() timer.after(200, "hammer") end,
  on_timer = function()
    local got, refusal = 0, "none"
    for _ = 1, 50 do
      local d, err = market.depth("BTCUSDT", 5000, { wait_ms = 0 })
      if not d then refusal = err.code break end
      got = got + 1
    end
    log.info("hammer got=%d refusal=%s", got, refusal)
    local placed = 0
    for _ = 1, 3 do
      local o, err = orders.place{ symbol = "BTCUSDT", side = "BUY", type = "LIMIT", price = 30000,
                                   quantity = 0.001 }
      if o and o.status == "NEW" then placed = placed + 1 else log.warn("order: %s", err and err.code or o.status) end
    end
    log.info("paper orders placed=%d", placed)
  end,
}
"#;

#[test]
fn a_strategy_hammering_the_sources_market_data_is_rate_limited_by_its_pools_and_still_trades_on_paper() {
    // The source announces a small daily weight limit: four depth requests of weight 250.
    let mut limits = runner::exchange::binance::limits::pools::spot_defaults();
    limits.push(runner::ledger::RateLimit::new(
        runner::ledger::PoolKind::RequestWeight,
        runner::ledger::IntervalUnit::Day,
        1,
        1_000,
    ));
    let config = SimConfig {
        limits,
        ..SimConfig::default()
    };
    let mut market = paper_on_market(config, HAMMER_THEN_ORDER, &[]);
    let (source, run) = (&market.source, &mut market.run);

    let hammer = run.wait_for("the hammer's end", |l| l.contains("hammer got="));
    assert!(hammer.contains("refusal=rate_limited"), "{hammer}");
    let got = number_after(&hammer, "got=") as u64;
    let placed = run.wait_for("the paper orders", |l| l.contains("paper orders placed="));
    assert_eq!(number_after(&placed, "placed="), 3.0, "{placed}");

    // The source's own counts: the answered depth requests and nothing more, never a 429, no order.
    let depth_5000 = source
        .request_log()
        .iter()
        .filter(|r| r.path == "/api/v3/depth" && r.weight == 250)
        .count() as u64;
    assert_eq!(depth_5000, got, "{hammer}");
    let stats = source.stats();
    assert_eq!(
        stats.count_429 + stats.count_418,
        0,
        "the ledger kept the source's budget"
    );
    assert_eq!(stats.orders_placed, 0, "no order reached the source");
    market.stop();
}
