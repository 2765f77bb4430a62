//! `--metrics`: the Prometheus exposition and `/status`, scraped during a run against the
//! simulator, agree with the run's own counts (the simulator's and the ledger's).

use std::collections::HashMap;

use crate::support::{runner, Running};
use prometheus_parse::{Sample, Scrape, Value};

/// Places five resting buys far below the market from book callbacks, then one weighted read.
const STRATEGY: &str = r#"
state.placed = state.placed or 0
return {
  name = "metered",
  symbols = { "BTCUSDT" },
  streams = { "book" },
  on_book = function(q)
    if state.placed >= 5 then return end
    local o, err = orders.place{ symbol = "BTCUSDT", side = "BUY", type = "LIMIT", tif = "GTC",
                                 price = math.floor(q.bid / 2), quantity = 0.001 }
    if not o then log.warn("not placed: %s", tostring(err)) return end
    state.placed = state.placed + 1
    if state.placed == 5 then
      local t = market.ticker("BTCUSDT")
      log.info("metered done at %s", tostring(t and t.price))
    end
  end,
}
"#;

/// The URL after `key=` in a log line, e.g. `rest=http://127.0.0.1:4242`.
pub(crate) fn url_after(line: &str, key: &str) -> String {
    let at = line.find(key).unwrap_or_else(|| panic!("{key} in {line:?}")) + key.len();
    line[at..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"')
        .collect()
}

fn scrape(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("a valid Prometheus exposition")
}

fn labelled<'a>(scrape: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .collect()
}

fn number(sample: &Sample) -> f64 {
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{} is not a number: {other:?}", sample.metric),
    }
}

fn one(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found = labelled(scrape, metric, labels);
    assert_eq!(found.len(), 1, "{metric} {labels:?}: {found:?}");
    number(found[0])
}

fn sum(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    labelled(scrape, metric, labels).into_iter().map(number).sum()
}

/// Observations in a histogram (its +Inf bucket).
fn observations(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    labelled(scrape, metric, labels)
        .into_iter()
        .map(|s| match &s.value {
            Value::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than == f64::INFINITY)
                .map_or(0.0, |b| b.count),
            other => panic!("{metric} is not a histogram: {other:?}"),
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_agree_with_the_simulator_and_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim_cmd = runner(&dir.path().join("sim-state"));
    sim_cmd.args(["sim", "--port", "0"]);
    let (sim, sim_line) = tokio::task::spawn_blocking(move || {
        let mut sim = Running::spawn(sim_cmd);
        let line = sim.wait_for("the simulator's listening line", |l| {
            l.contains("simulated exchange listening")
        });
        (sim, line)
    })
    .await
    .unwrap();
    let rest = url_after(&sim_line, "rest=");

    let strategy = dir.path().join("metered.lua");
    std::fs::write(&strategy, STRATEGY).unwrap();
    let mut cmd = runner(&dir.path().join("state"));
    cmd.arg(&strategy)
        .args(["--rest-url", &rest, "--metrics", "127.0.0.1:0", "--no-reload"]);
    let (run, metrics_line) = tokio::task::spawn_blocking(move || {
        let mut run = Running::spawn(cmd);
        let line = run.wait_for("the metrics address", |l| l.contains("metrics listening"));
        run.wait_for("the strategy's last order and read", |l| l.contains("metered done"));
        (run, line)
    })
    .await
    .unwrap();
    let metrics_url = url_after(&metrics_line, "metrics=");
    assert!(
        metrics_url.starts_with("http://127.0.0.1:") && !metrics_url.contains(":0/"),
        "{metrics_url}"
    );
    let base = metrics_url.trim_end_matches("/metrics");

    let response = reqwest::get(&metrics_url).await.unwrap();
    assert!(response.status().is_success());
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = response.text().await.unwrap();
    let scrape = scrape(&text);
    let status: serde_json::Value = reqwest::get(format!("{base}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sim_stats: serde_json::Value = reqwest::get(format!("{rest}/sim/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // Orders: the runner's count is the simulator's.
    let placed = one(
        &scrape,
        "runner_orders_total",
        &[("strategy", "metered"), ("status", "placed")],
    );
    assert_eq!(placed, 5.0, "{text}");
    assert_eq!(sim_stats["orders_placed"].as_u64(), Some(5), "{sim_stats}");
    assert_eq!(
        sum(
            &scrape,
            "runner_requests_total",
            &[("strategy", "metered"), ("endpoint", "POST /api/v3/order")]
        ),
        5.0
    );
    assert_eq!(one(&scrape, "runner_open_orders", &[("strategy", "metered")]), 5.0);
    assert_eq!(
        observations(&scrape, "runner_tick_to_order_seconds", &[("strategy", "metered")]),
        5.0
    );

    // Weight: what the requests were charged, less what successful orders were given back, is the ledger's.
    let charged = sum(&scrape, "runner_request_weight_total", &[("strategy", "metered")]);
    let credited = sum(
        &scrape,
        "runner_request_weight_credited_total",
        &[("strategy", "metered")],
    );
    let ledger_weight = one(&scrape, "runner_ledger_weight_total", &[("strategy", "metered")]);
    assert!(ledger_weight > 0.0, "the ticker read costs weight: {text}");
    assert_eq!(charged - credited, ledger_weight, "{text}");
    assert_eq!(status["strategies"][0]["weight_total"].as_f64(), Some(ledger_weight));
    assert!(observations(&scrape, "runner_ledger_wait_seconds", &[("strategy", "metered")]) >= 6.0);
    assert!(observations(&scrape, "runner_request_duration_seconds", &[("strategy", "metered")]) >= 6.0);

    // Pools, state, the exchange's throttles: as the ledger and the simulator report them.
    let weight_pool = [("pool", "REQUEST_WEIGHT"), ("interval", "1m"), ("scope", "ip")];
    assert_eq!(one(&scrape, "runner_ledger_pool_limit", &weight_pool), 6000.0);
    // Labelled by scope (IP group), so several groups' pools are several series.
    let first_group = [("pool", "REQUEST_WEIGHT"), ("scope_id", "ip0")];
    assert_eq!(one(&scrape, "runner_ledger_pool_limit", &first_group), 6000.0);
    assert_eq!(
        one(
            &scrape,
            "runner_ledger_pool_backoff_until_timestamp_seconds",
            &first_group
        ),
        0.0,
        "no back-off in force"
    );
    let used = one(&scrape, "runner_ledger_pool_used", &weight_pool);
    assert!(used >= ledger_weight, "{text}");
    assert!(one(&scrape, "runner_ledger_pool_reset_timestamp_seconds", &weight_pool) > 1.0e9);
    let orders_pool = [("pool", "ORDERS"), ("interval", "10s"), ("scope", "account")];
    assert_eq!(one(&scrape, "runner_ledger_pool_limit", &orders_pool), 100.0);
    assert_eq!(one(&scrape, "runner_ledger_state", &[("state", "normal")]), 1.0);
    assert_eq!(one(&scrape, "runner_ledger_state", &[("state", "banned")]), 0.0);
    assert_eq!(sum(&scrape, "runner_exchange_throttled_total", &[]), 0.0);
    assert_eq!(sum(&scrape, "runner_exchange_banned_total", &[]), 0.0);
    assert_eq!(sim_stats["count_429"].as_u64(), Some(0));
    assert!(
        one(&scrape, "runner_journal_size_bytes", &[]) > 0.0,
        "five orders are journaled"
    );
    assert!(one(&scrape, "runner_events_delivered_total", &[("strategy", "metered")]) >= 5.0);
    assert_eq!(
        one(&scrape, "runner_sandbox_trips_total", &[("strategy", "metered")]),
        0.0
    );

    // /status says the same as the status line would.
    assert_eq!(status["state"], "normal");
    let strategy = &status["strategies"][0];
    assert_eq!(strategy["name"], "metered");
    assert_eq!(strategy["orders_placed"].as_u64(), Some(5));
    assert_eq!(strategy["open_orders"].as_u64(), Some(5));
    let pools: HashMap<String, u64> = status["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                format!("{} {}", p["kind"].as_str().unwrap(), p["interval"].as_str().unwrap()),
                p["limit"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(pools.get("REQUEST_WEIGHT 1m"), Some(&6000), "{status}");

    run.terminate();
    sim.terminate();
    let (status, lines) = tokio::task::spawn_blocking(move || run.finish()).await.unwrap();
    assert!(status.success(), "{}", lines.join("\n"));
    let _ = tokio::task::spawn_blocking(move || sim.finish()).await;
}
