//! What the runner writes and refuses, whatever is asked of it: no log level prints the API key,
//! the secret or a signature; market-data limits out of the exchange's range are refused locally.

use runner::sim::{SimConfig, PAPER_API_KEY, PAPER_API_SECRET};
use rust_decimal::Decimal;

use crate::harness::{count_requests, seen_or_wait, stop, strategy, Exchange};
use crate::support::Running;

/// The longest run of hex digits in `text` (an HMAC-SHA256 signature is 64 of them).
fn longest_hex_run(text: &str) -> usize {
    let (mut longest, mut run) = (0, 0);
    for c in text.chars() {
        run = if c.is_ascii_hexdigit() { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    longest
}

#[test]
fn no_log_level_prints_a_key_a_secret_or_a_signature() {
    for transport in ["rest", "ws-api"] {
        let exchange = Exchange::start(SimConfig::default());
        let dir = tempfile::tempdir().unwrap();
        let mut command = exchange.runner(&dir.path().join("state"), &[strategy("one_order")]);
        command.args(["--order-transport", transport]).env("RUST_LOG", "trace");
        let mut run = Running::spawn(command);
        run.wait_for("the strategy to start", |l| l.contains("one_order ready"));
        assert!(exchange.sim().set_price("BTCUSDT", Decimal::from(120_000)));
        seen_or_wait(&mut run, "the order placed", |l| l.contains("place faults-1 -> NEW"));
        let text = stop(run);
        assert!(text.contains("TRACE"), "{transport}: a trace-level log:\n{text}");
        for (what, secret) in [("API key", PAPER_API_KEY), ("secret", PAPER_API_SECRET)] {
            assert!(!text.contains(secret), "{transport}: the {what} is in the log");
        }
        assert!(
            longest_hex_run(&text) < 64,
            "{transport}: a signature-like hex string is in the log"
        );
    }
}

#[test]
fn market_data_limits_out_of_range_are_refused_before_sending() {
    let exchange = Exchange::start(SimConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("limits.lua");
    std::fs::write(
        &file,
        r#"
return {
  name = "limits",
  symbols = { "BTCUSDT" },
  on_start = function()
    local ok, err = pcall(market.depth, "BTCUSDT", 100000)
    log.info("depth: %s %s", tostring(ok), tostring(err))
    ok, err = pcall(market.klines, "BTCUSDT", "1m", 1000000)
    log.info("klines: %s %s", tostring(ok), tostring(err))
    ok, err = pcall(market.trades, "BTCUSDT", 5000)
    log.info("trades: %s %s", tostring(ok), tostring(err))
    log.info("limits done")
  end,
}
"#,
    )
    .unwrap();
    let mut run = Running::spawn(exchange.runner(&dir.path().join("state"), &[file]));
    run.wait_for("the calls made", |l| l.contains("limits done"));
    let text = stop(run);
    for (call, range) in [("depth", "1 to 5000"), ("klines", "1 to 1000"), ("trades", "1 to 1000")] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("{call}: false")))
            .unwrap_or_else(|| panic!("{call} refused:\n{text}"));
        assert!(line.contains(range), "{call}: the allowed range is named: {line}");
    }
    let log = exchange.log();
    for path in ["/api/v3/depth", "/api/v3/klines", "/api/v3/trades"] {
        assert_eq!(count_requests(&log, "GET", path), 0, "{path}: nothing sent");
    }
}
