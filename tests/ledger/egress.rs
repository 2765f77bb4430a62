//! Two egress IP groups in one `runner` process: each group's requests leave from its own
//! loopback address (127.0.0.1 and 127.0.0.2), and the simulator, counting weight per client IP
//! as Binance does, sees two pools, each kept within its limit and mostly used; a 429 on one
//! address stops that address only.

use std::path::PathBuf;

use runner::ledger::PoolKind;
use runner::sim::{PoolStats, SimStats};

use crate::harness::{config_with_weight, field, poll_until, stop, summary_throttles, Exchange};
use crate::support::{repo_root, run_to_end, Running};

const WINDOW_MS: i64 = 1000;
const WEIGHT: u64 = 1000;

/// The hammer strategy as `name`, asking for `depth_limit` levels (two strategies ask for
/// different depths, so no request of one is shared with the other's).
fn hammer(dir: &tempfile::TempDir, name: &str, depth_limit: u32) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("tests/ledger/lua/hammer.lua")).expect("hammer.lua");
    let text = text
        .replace("local DEPTH_LIMIT = 500", &format!("local DEPTH_LIMIT = {depth_limit}"))
        .replace("name = \"hammer\"", &format!("name = \"{name}\""));
    assert!(text.contains(&format!("name = \"{name}\"")));
    let path = dir.path().join(format!("{name}.lua"));
    std::fs::write(&path, text).expect("write the strategy");
    path
}

/// The weight pool the simulator keeps for `ip`.
fn weight_of<'a>(stats: &'a SimStats, ip: &str) -> &'a PoolStats {
    stats
        .pools
        .iter()
        .find(|p| p.kind == PoolKind::RequestWeight && p.ip.is_some_and(|a| a.to_string() == ip))
        .unwrap_or_else(|| panic!("no weight pool for {ip}: {stats:?}"))
}

/// Counts of the whole windows within `[from_ms, to_ms)` (0 for a window with no traffic).
fn full_windows(pool: &PoolStats, from_ms: i64, to_ms: i64) -> Vec<u64> {
    let first = from_ms.div_euclid(WINDOW_MS) * WINDOW_MS + WINDOW_MS;
    (0..)
        .map(|i| first + i * WINDOW_MS)
        .take_while(|start| start + WINDOW_MS <= to_ms)
        .map(|start| pool.windows.iter().find(|w| w.start == start).map_or(0, |w| w.count))
        .collect()
}

const GROUPS: &str = "[[ip_groups]]\nname = \"main\"\nsource = \"127.0.0.1\"\n\n\
                      [[ip_groups]]\nname = \"spare\"\nsource = \"127.0.0.2\"\n";

#[test]
fn two_egress_groups_get_two_weight_pools_each_within_its_limit_and_mostly_used() {
    let exchange = Exchange::start(config_with_weight(1, WEIGHT));
    let dir = tempfile::tempdir().unwrap();
    let strategies = [hammer(&dir, "hammer", 500), hammer(&dir, "hammer_b", 499)];
    let config = dir.path().join("runner.toml");
    std::fs::write(&config, format!("{GROUPS}\n[routes.hammer_b]\nip_group = \"spare\"\n")).unwrap();
    let mut cmd = exchange.runner(&dir.path().join("state"), &strategies);
    cmd.arg("--config")
        .arg(&config)
        .arg("--limit")
        .arg(format!("REQUEST_WEIGHT={WEIGHT}/1s"));
    let mut run = Running::spawn(cmd);
    for _ in 0..2 {
        run.wait_for("each hammer's first answer", |l| l.contains("hammer got="));
    }
    let running = exchange.now_ms();
    poll_until("five windows", || {
        (exchange.now_ms() >= running + 6 * WINDOW_MS).then_some(())
    });
    let before_stop = exchange.now_ms();
    let text = stop(run);
    assert_eq!(summary_throttles(&text), (0, 0), "{text}");

    let stats = exchange.stats();
    assert_eq!((stats.count_429, stats.count_418), (0, 0), "{stats:?}");
    let mut figures = Vec::new();
    for ip in ["127.0.0.1", "127.0.0.2"] {
        let pool = weight_of(&stats, ip);
        for w in &pool.windows {
            assert!(
                w.count <= WEIGHT,
                "{ip}: window {} counted {} > {WEIGHT}",
                w.start,
                w.count
            );
        }
        // From the second window on: the first holds the start.
        let windows = full_windows(pool, running + WINDOW_MS, before_stop);
        assert!(windows.len() >= 3, "{ip}: only {windows:?}");
        for count in &windows {
            assert!(
                count * 10 >= WEIGHT * 9,
                "{ip}: a window used {count} of {WEIGHT} while demand exceeded it: {windows:?}"
            );
        }
        figures.push((ip, windows));
    }
    println!("figure: weight per window per source address (limit {WEIGHT} each): {figures:?}");
}

#[test]
fn a_429_on_one_group_stops_that_address_until_retry_after_while_the_other_keeps_sending() {
    const RETRY_AFTER_SECS: i64 = 2;
    let (main_ip, spare_ip) = ("127.0.0.1", "127.0.0.2");
    let exchange = Exchange::start(config_with_weight(1, WEIGHT));
    let dir = tempfile::tempdir().unwrap();
    let strategies = [hammer(&dir, "hammer", 500), hammer(&dir, "hammer_b", 499)];
    let config = dir.path().join("runner.toml");
    std::fs::write(&config, format!("{GROUPS}\n[routes.hammer_b]\nip_group = \"spare\"\n")).unwrap();
    let mut cmd = exchange.runner(&dir.path().join("state"), &strategies);
    cmd.arg("--config")
        .arg(&config)
        .arg("--limit")
        .arg(format!("REQUEST_WEIGHT={WEIGHT}/1s"));
    let mut run = Running::spawn(cmd);
    for _ in 0..2 {
        run.wait_for("each hammer's first answer", |l| l.contains("hammer got="));
    }

    exchange
        .sim()
        .faults()
        .force_429_from(main_ip.parse().unwrap(), RETRY_AFTER_SECS as u64);
    let from = |ip: &str| {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        move |r: &runner::sim::RequestRecord| r.ip == ip
    };
    let throttled = poll_until("the 429 in the request log", || {
        exchange.log().into_iter().find(|r| r.status == 429 && from(main_ip)(r))
    });
    let wait_ends = throttled.at_ms + RETRY_AFTER_SECS * 1000;
    run.wait_for("the main group's hammer to be told to back off", |l| {
        l.contains("hammer err backoff") && field(l, "retry_after").is_some_and(|ms| ms > 0)
    });
    // Traffic from the main address again once its wait is over.
    let resumed = poll_until("a request from the main address after the wait", || {
        exchange
            .log()
            .into_iter()
            .find(|r| r.status == 200 && r.at_ms >= wait_ends && from(main_ip)(r))
    });
    let text = stop(run);

    let log = exchange.log();
    let during = |ip: &str| -> Vec<_> {
        log.iter()
            .filter(|r| r.at_ms > throttled.at_ms && r.at_ms < wait_ends && from(ip)(r))
            .cloned()
            .collect()
    };
    assert!(
        during(main_ip).is_empty(),
        "requests left the main address during its Retry-After wait: {:?}",
        during(main_ip)
    );
    let spare_during = during(spare_ip);
    let spare_ok = spare_during.iter().filter(|r| r.status == 200).count();
    // The spare hammer sends 25 weight a request, up to 1000 a second: ~80 in the wait. Half of
    // that at least, even on a loaded machine.
    assert!(
        spare_ok >= 40,
        "the spare address sent only {spare_ok} successful requests during the main one's wait"
    );
    println!(
        "figure: main address silent for {} ms after its 429 (Retry-After {RETRY_AFTER_SECS} s), \
         first request {} ms after the wait; spare address sent {spare_ok} requests meanwhile",
        resumed.at_ms - throttled.at_ms,
        resumed.at_ms - wait_ends
    );
    let stats = exchange.stats();
    assert_eq!(
        (stats.count_429, stats.count_418),
        (1, 0),
        "only the injected 429, never a ban: {stats:?}"
    );
    assert_eq!(summary_throttles(&text), (1, 0), "{text}");
}

#[test]
fn a_strategy_naming_an_unknown_group_or_an_address_not_on_this_machine_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let strategy = hammer(&dir, "hammer", 500);
    for (lines, expected) in [
        (
            format!("{GROUPS}[routes.hammer]\nip_group = \"third\"\n"),
            "strategy hammer names the IP group \"third\", which is not configured (known: main, spare)",
        ),
        (
            "[[ip_groups]]\nname = \"far\"\nsource = \"192.0.2.77\"\n".to_string(),
            "ip_groups: far's source 192.0.2.77 cannot be bound on this machine",
        ),
        (
            "[[ip_groups]]\nname = \"a\"\nsource = \"127.0.0.2\"\n[[ip_groups]]\nname = \"b\"\nsource = \"127.0.0.2\"\n"
                .to_string(),
            "ip_groups: a and b both leave from 127.0.0.2: each group needs its own address",
        ),
    ] {
        let config = dir.path().join("bad.toml");
        std::fs::write(&config, &lines).unwrap();
        let mut cmd = crate::support::runner(&dir.path().join("state"));
        cmd.arg("--config").arg(&config).arg(&strategy);
        let (status, text) = run_to_end(cmd);
        assert_eq!(status.code(), Some(2), "{lines}: {text}");
        let line = text
            .lines()
            .find(|l| l.contains(expected))
            .unwrap_or_else(|| panic!("{lines}: no {expected:?} in:\n{text}"));
        assert!(line.len() < 200, "one short line: {line}");
    }
}

/// The `metrics=` URL of the `metrics listening` line, without its `/metrics` path.
pub(crate) fn status_base(line: &str) -> String {
    let at = line.find("metrics=").expect("metrics= in the line") + "metrics=".len();
    let url: String = line[at..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"')
        .collect();
    url.trim_end_matches("/metrics").to_string()
}

/// The runner's `/status` JSON at `base`.
pub(crate) fn fetch_status(base: &str) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        reqwest::get(format!("{base}/status"))
            .await
            .expect("/status answers")
            .json()
            .await
            .expect("/status is JSON")
    })
}

/// Logs, at the spare hammer's first back-off error, what `ledger.status()` says of each group.
const LOG_BACKOFFS: &str = r#"failed = failed + 1
      if failed == 1 then
        local st = ledger.status()
        local b = st.backoffs[1]
        local first, spare
        for _, p in ipairs(st.pools) do
          if p.scope == "ip0" then first = first or p end
          if p.scope == "ip1" then spare = spare or p end
        end
        log.info("backoffs n=%d scope=%s name=%s state=%s http=%d left=%.1f pool_http=%d first=%s first_http=%s",
          #st.backoffs, b.scope, b.scope_name, b.state, b.http_status, b.secs_left,
          spare.backoff_http_status, first.backoff, tostring(first.backoff_http_status))
      end"#;

#[test]
fn the_status_names_the_group_a_429_stopped_why_and_until_when_and_the_other_group_as_going_on() {
    const RETRY_AFTER_SECS: u64 = 60;
    let exchange = Exchange::start(config_with_weight(1, WEIGHT));
    let dir = tempfile::tempdir().unwrap();
    let spare_hammer = hammer(&dir, "hammer_b", 499);
    let text = std::fs::read_to_string(&spare_hammer).unwrap();
    assert!(text.contains("failed = failed + 1"));
    std::fs::write(&spare_hammer, text.replacen("failed = failed + 1", LOG_BACKOFFS, 1)).unwrap();
    let strategies = [hammer(&dir, "hammer", 500), spare_hammer];
    let config = dir.path().join("runner.toml");
    std::fs::write(&config, format!("{GROUPS}\n[routes.hammer_b]\nip_group = \"spare\"\n")).unwrap();
    let mut cmd = exchange.runner(&dir.path().join("state"), &strategies);
    cmd.arg("--config")
        .arg(&config)
        .args(["--metrics", "127.0.0.1:0"])
        .arg("--limit")
        .arg(format!("REQUEST_WEIGHT={WEIGHT}/1s"));
    let mut run = Running::spawn(cmd);
    let metrics_line = run.wait_for("the metrics address", |l| l.contains("metrics listening"));
    let base = status_base(&metrics_line);
    for _ in 0..2 {
        run.wait_for("each hammer's first answer", |l| l.contains("hammer got="));
    }

    exchange
        .sim()
        .faults()
        .force_429_from("127.0.0.2".parse().unwrap(), RETRY_AFTER_SECS);
    let lua = run.wait_for("the spare hammer's view of the back-off", |l| l.contains("backoffs n="));
    for expected in [
        "backoffs n=1 scope=ip1 name=spare state=throttled http=429",
        "pool_http=429 first=normal first_http=nil",
    ] {
        assert!(lua.contains(expected), "{expected:?} in {lua}");
    }
    let left = lua
        .split("left=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .expect("left= in the line");
    assert!(left > 0.0 && left <= RETRY_AFTER_SECS as f64 + 1.0, "{lua}");

    let status = fetch_status(&base);
    let now_ms = status["now_ms"].as_i64().expect("now_ms");
    let backoffs = status["backoffs"].as_array().expect("backoffs");
    assert_eq!(backoffs.len(), 1, "only the spare group is stopped: {status}");
    let b = &backoffs[0];
    assert_eq!(
        (&b["scope_id"], &b["scope_name"], &b["state"], &b["http_status"]),
        (&"ip1".into(), &"spare".into(), &"throttled".into(), &429.into()),
        "{status}"
    );
    let until_ms = b["until_ms"].as_i64().expect("until_ms");
    let secs_left = b["secs_left"].as_f64().expect("secs_left");
    assert!(until_ms > now_ms, "{status}");
    assert!((secs_left - (until_ms - now_ms) as f64 / 1e3).abs() < 0.001, "{status}");
    assert!(secs_left <= RETRY_AFTER_SECS as f64 + 1.0, "{status}");
    for pool in status["pools"].as_array().expect("pools") {
        match pool["scope_id"].as_str() {
            Some("ip1") => {
                assert_eq!(
                    (&pool["scope_name"], &pool["backoff"], &pool["backoff_http_status"]),
                    (&"spare".into(), &"throttled".into(), &429.into()),
                    "{pool}"
                );
                assert_eq!(pool["backoff_until_ms"].as_i64(), Some(until_ms), "{pool}");
                assert_eq!(pool["backoff_secs_left"].as_f64(), Some(secs_left), "{pool}");
            }
            Some("ip0") => {
                assert_eq!(
                    (&pool["scope_name"], &pool["backoff"]),
                    (&"main".into(), &"normal".into()),
                    "{pool}"
                );
                for absent in ["backoff_http_status", "backoff_until_ms", "backoff_secs_left"] {
                    assert!(pool.get(absent).is_none(), "{absent} on a group not backed off: {pool}");
                }
            }
            _ => assert_eq!(pool["backoff"], "normal", "{pool}"),
        }
    }

    // Stopped inside the wait: the exit summary says which group is still stopped and why.
    let text = stop(run);
    let line = text
        .lines()
        .find(|l| l.contains("back-offs in force:"))
        .unwrap_or_else(|| panic!("no back-offs line in:\n{text}"));
    assert!(
        line.contains("back-offs in force: ip1(spare) throttled (429) until ") && line.contains(" s left)"),
        "{line}"
    );
    assert!(!line.contains("ip0"), "{line}");
    assert_eq!(summary_throttles(&text), (1, 0), "{text}");
}
