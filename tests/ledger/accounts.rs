//! Two accounts in one `runner` process: each strategy's orders go out signed with its own
//! account's key, each account's order count is kept within its own limit (and mostly used), and
//! both accounts' requests draw on the one request-weight pool of their IP.

use std::path::PathBuf;

use runner::ledger::{IntervalUnit, PoolKind, RateLimit};
use runner::sim::{PoolStats, SimConfig, SimStats};

use crate::egress::{fetch_status, status_base};
use crate::harness::{config_with_weight, poll_until, stop, summary_throttles, Exchange};
use crate::redis_server::RedisServer;
use crate::support::{repo_root, run_to_end, Running};

const WINDOW_MS: i64 = 1000;
const WEIGHT: u64 = 1000;
const ORDERS: u64 = 20;
/// Two processes share each account's count through leases taken in chunks of a limit: a larger
/// limit keeps a chunk left unused at a window's end a small share of it.
const SHARED_ORDERS: u64 = 200;

/// The file `from` (under the repository) as strategy `name`, with `replace` applied.
fn strategy_as(dir: &tempfile::TempDir, from: &str, old_name: &str, name: &str, replace: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(repo_root().join(from)).expect("strategy file");
    for (old, new) in replace {
        assert!(text.contains(old), "{from} has no {old:?}");
        text = text.replace(old, new);
    }
    let text = text.replace(&format!("name = \"{old_name}\""), &format!("name = \"{name}\""));
    assert!(text.contains(&format!("name = \"{name}\"")));
    let path = dir.path().join(format!("{name}.lua"));
    std::fs::write(&path, text).expect("write the strategy");
    path
}

/// The flood prices its orders at half a fixed price instead of asking the ticker each time: its
/// demand is then orders only (the hammers take the market-data lane's weight).
const NO_TICKER: &[(&str, &str)] = &[("local t = market.ticker(SYMBOL)", "local t = { price = 60000 }")];

/// A simulator with two accounts, each allowed `orders` a second.
fn two_accounts(orders: u64) -> SimConfig {
    let mut config = config_with_weight(1, WEIGHT);
    config.limits.retain(|l| l.kind != PoolKind::Orders);
    config.limits.extend([
        RateLimit::new(PoolKind::Orders, IntervalUnit::Second, 1, orders),
        RateLimit::new(PoolKind::Orders, IntervalUnit::Day, 1, 200_000),
    ]);
    SimConfig { accounts: 2, ..config }
}

const ACCOUNTS: &str = "[accounts.main]\nkey_env = \"MAIN_KEY\"\nsecret_env = \"MAIN_SECRET\"\n\n\
                        [accounts.sub1]\nkey_env = \"SUB1_KEY\"\nsecret_env = \"SUB1_SECRET\"\n";

/// Counts of the whole windows within `[from_ms, to_ms)` (0 for a window with no traffic).
fn full_windows(pool: &PoolStats, from_ms: i64, to_ms: i64) -> Vec<u64> {
    let first = from_ms.div_euclid(WINDOW_MS) * WINDOW_MS + WINDOW_MS;
    (0..)
        .map(|i| first + i * WINDOW_MS)
        .take_while(|start| start + WINDOW_MS <= to_ms)
        .map(|start| pool.windows.iter().find(|w| w.start == start).map_or(0, |w| w.count))
        .collect()
}

/// The simulator's one-second order pool of `account`.
fn orders_of(stats: &SimStats, account: u16) -> &PoolStats {
    stats
        .pools
        .iter()
        .find(|p| p.kind == PoolKind::Orders && p.account == Some(account) && p.interval == "1 SECOND")
        .unwrap_or_else(|| panic!("no order pool for account {account}: {stats:?}"))
}

#[test]
fn two_accounts_in_one_process_keep_their_own_order_counts_and_share_the_ips_weight() {
    let exchange = Exchange::start(two_accounts(ORDERS));
    let dir = tempfile::tempdir().unwrap();
    let flood = "tests/hostile/order_flood.lua";
    let hammer = "tests/ledger/lua/hammer.lua";
    let strategies = [
        strategy_as(&dir, flood, "order_flood", "flood_main", NO_TICKER),
        strategy_as(&dir, flood, "order_flood", "flood_sub1", NO_TICKER),
        strategy_as(&dir, hammer, "hammer", "hammer", &[]),
        strategy_as(
            &dir,
            hammer,
            "hammer",
            "hammer_sub1",
            &[("local DEPTH_LIMIT = 500", "local DEPTH_LIMIT = 499")],
        ),
    ];
    let config = dir.path().join("runner.toml");
    std::fs::write(
        &config,
        format!("{ACCOUNTS}\n[routes.flood_sub1]\naccount = \"sub1\"\n\n[routes.hammer_sub1]\naccount = \"sub1\"\n"),
    )
    .unwrap();
    let mut cmd = exchange.runner(&dir.path().join("state"), &strategies);
    cmd.arg("--config")
        .arg(&config)
        .arg("--limit")
        .arg(format!("REQUEST_WEIGHT={WEIGHT}/1s"))
        .arg("--limit")
        .arg(format!("ORDERS={ORDERS}/1s"));
    let mut run = Running::spawn(cmd);
    run.wait_for("a first order of each account", |l| l.contains("order_flood placed="));
    let running = exchange.now_ms();
    poll_until("five windows", || {
        (exchange.now_ms() >= running + 6 * WINDOW_MS).then_some(())
    });
    let before_stop = exchange.now_ms();
    let text = stop(run);
    assert_eq!(summary_throttles(&text), (0, 0), "{text}");
    assert!(
        text.contains("account1(sub1)") && text.contains("account0(main)"),
        "the summary names each account's pools: {text}"
    );

    let stats = exchange.stats();
    let mut figures = each_account_within_and_mostly_used(&stats, running, before_stop, ORDERS);
    let weight: Vec<&PoolStats> = stats
        .pools
        .iter()
        .filter(|p| p.kind == PoolKind::RequestWeight)
        .collect();
    assert_eq!(
        weight.len(),
        1,
        "one IP, one weight pool, whatever account sends: {weight:?}"
    );
    for w in &weight[0].windows {
        assert!(
            w.count <= WEIGHT,
            "weight window {} counted {} > {WEIGHT}",
            w.start,
            w.count
        );
    }
    let windows = full_windows(weight[0], running + WINDOW_MS, before_stop);
    for count in &windows {
        assert!(
            count * 10 >= WEIGHT * 9,
            "weight window used {count} of {WEIGHT}: {windows:?}"
        );
    }
    figures.push(("weight of the IP".to_string(), windows));
    // Each account's own orders stayed on its own account (its own key signed them).
    let log = exchange.log();
    assert!(log.iter().any(|r| r.path == "/api/v3/order" && r.status == 200));
    println!("figure: per window (orders limit {ORDERS} per account, weight limit {WEIGHT} per IP): {figures:?}");
}

/// No 429 or 418 at the simulator, and each account's one-second order count, as the simulator
/// counted it, within its limit in every window and at least 90 % used in each whole window
/// between `running` and `before_stop` (demand exceeded it). Returns the whole windows' counts.
fn each_account_within_and_mostly_used(
    stats: &SimStats,
    running: i64,
    before_stop: i64,
    orders: u64,
) -> Vec<(String, Vec<u64>)> {
    assert_eq!((stats.count_429, stats.count_418), (0, 0), "{stats:?}");
    let mut figures = Vec::new();
    for account in [0, 1] {
        let pool = orders_of(stats, account);
        for w in &pool.windows {
            assert!(
                w.count <= orders,
                "account {account}: window {} placed {}",
                w.start,
                w.count
            );
        }
        let windows = full_windows(pool, running + WINDOW_MS, before_stop);
        assert!(windows.len() >= 3, "account {account}: only {windows:?}");
        for count in &windows {
            assert!(
                count * 10 >= orders * 9,
                "account {account}: a window placed {count} of {orders} while demand exceeded it: {windows:?}"
            );
        }
        figures.push((format!("orders of account {account}"), windows));
    }
    figures
}

#[test]
fn two_processes_trading_both_accounts_share_each_accounts_order_count_through_redis() {
    let redis = RedisServer::start();
    let exchange = Exchange::start(two_accounts(SHARED_ORDERS));
    let dir = tempfile::tempdir().unwrap();
    let flood = "tests/hostile/order_flood.lua";
    let config = dir.path().join("runner.toml");
    let routes: String = ["a", "b"]
        .iter()
        .map(|p| format!("[routes.flood_sub1_{p}]\naccount = \"sub1\"\n\n"))
        .collect();
    std::fs::write(&config, format!("{ACCOUNTS}\n{routes}")).unwrap();
    let mut fleet: Vec<Running> = ["a", "b"]
        .iter()
        .map(|p| {
            let strategies = [
                strategy_as(&dir, flood, "order_flood", &format!("flood_main_{p}"), NO_TICKER),
                strategy_as(&dir, flood, "order_flood", &format!("flood_sub1_{p}"), NO_TICKER),
            ];
            let mut cmd = exchange.runner(&dir.path().join(format!("state-{p}")), &strategies);
            cmd.arg("--config")
                .arg(&config)
                .args(["--ledger", &redis.url(), "--ledger-group", "test-ip"])
                .arg("--limit")
                .arg(format!("REQUEST_WEIGHT={WEIGHT}/1s"))
                .arg("--limit")
                .arg(format!("ORDERS={SHARED_ORDERS}/1s"));
            Running::spawn(cmd)
        })
        .collect();
    for run in &mut fleet {
        run.wait_for("a first order", |l| l.contains("order_flood placed="));
    }
    let running = exchange.now_ms();
    poll_until("five windows", || {
        (exchange.now_ms() >= running + 6 * WINDOW_MS).then_some(())
    });
    let before_stop = exchange.now_ms();
    for run in fleet {
        let text = stop(run);
        assert_eq!(summary_throttles(&text), (0, 0), "{text}");
        assert!(
            text.contains("account1(sub1)") && text.contains("shared by 2"),
            "the summary names the accounts' shared pools: {text}"
        );
    }
    let figures = each_account_within_and_mostly_used(&exchange.stats(), running, before_stop, SHARED_ORDERS);
    println!("figure: two processes, orders per window per account (limit {SHARED_ORDERS}): {figures:?}");
}

#[test]
fn a_hold_on_one_accounts_new_orders_shows_in_the_status_for_that_account_only() {
    const HOLD_SECS: u64 = 60;
    let exchange = Exchange::start(two_accounts(ORDERS));
    let dir = tempfile::tempdir().unwrap();
    let flood = "tests/hostile/order_flood.lua";
    let strategies = [
        strategy_as(&dir, flood, "order_flood", "flood_main", NO_TICKER),
        strategy_as(&dir, flood, "order_flood", "flood_sub1", NO_TICKER),
    ];
    let config = dir.path().join("runner.toml");
    std::fs::write(
        &config,
        format!("{ACCOUNTS}\n[routes.flood_sub1]\naccount = \"sub1\"\n"),
    )
    .unwrap();
    let mut cmd = exchange.runner(&dir.path().join("state"), &strategies);
    cmd.arg("--config")
        .arg(&config)
        .args(["--metrics", "127.0.0.1:0", "--order-transport", "rest"])
        .arg("--limit")
        .arg(format!("REQUEST_WEIGHT={WEIGHT}/1s"))
        .arg("--limit")
        .arg(format!("ORDERS={ORDERS}/1s"));
    let mut run = Running::spawn(cmd);
    let base = status_base(&run.wait_for("the metrics address", |l| l.contains("metrics listening")));
    run.wait_for("a first order", |l| l.contains("order_flood placed="));

    // The next order, whichever account sends it, is answered -1015 (a 429 on the account).
    exchange.sim().faults().hit_order_limit(HOLD_SECS);
    let status = poll_until("a back-off in the status", || {
        let status = fetch_status(&base);
        (!status["backoffs"].as_array().expect("backoffs").is_empty()).then_some(status)
    });
    let backoffs = status["backoffs"].as_array().unwrap();
    assert_eq!(backoffs.len(), 1, "one account held, nothing else: {status}");
    let b = &backoffs[0];
    let held = b["scope_id"].as_str().unwrap().to_string();
    let name = match held.as_str() {
        "account0" => "main",
        "account1" => "sub1",
        other => panic!("the hold is on an account, not {other}: {status}"),
    };
    assert_eq!(
        (&b["scope_name"], &b["state"], &b["http_status"]),
        (&name.into(), &"throttled".into(), &429.into()),
        "{status}"
    );
    let secs_left = b["secs_left"].as_f64().unwrap();
    assert!(secs_left > 0.0 && secs_left <= HOLD_SECS as f64 + 1.0, "{status}");
    for pool in status["pools"].as_array().unwrap() {
        let on_held = pool["scope_id"] == held.as_str();
        assert_eq!(
            (pool["backoff"].as_str(), pool["backoff_http_status"].as_u64()),
            if on_held {
                (Some("throttled"), Some(429))
            } else {
                (Some("normal"), None)
            },
            "{pool}"
        );
    }
    let text = stop(run);
    assert!(
        text.contains(&format!("back-offs in force: {held}({name}) throttled (429) until ")),
        "{text}"
    );
}

#[test]
fn a_route_naming_an_unknown_account_or_a_missing_key_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let strategy = strategy_as(&dir, "tests/ledger/lua/hammer.lua", "hammer", "hammer", &[]);
    for (lines, args, expected) in [
        (
            format!("{ACCOUNTS}[routes.hammer]\naccount = \"third\"\n"),
            vec![],
            "strategy hammer names the account \"third\", which is not configured (known: main, sub1)",
        ),
        (
            ACCOUNTS.to_string(),
            vec!["--testnet"],
            "account main: set the environment variable(s) MAIN_KEY and MAIN_SECRET",
        ),
        (
            "[accounts.a]\nkey_env = \"K\"\nsecret_env = \"S\"\n[accounts.b]\nkey_env = \"K\"\nsecret_env = \"T\"\n"
                .to_string(),
            vec![],
            "accounts: a and b both read their key from K",
        ),
    ] {
        let config = dir.path().join("bad.toml");
        std::fs::write(&config, &lines).unwrap();
        let mut cmd = crate::support::runner(&dir.path().join("state"));
        cmd.env_remove("MAIN_KEY").env_remove("MAIN_SECRET");
        cmd.arg("--config").arg(&config).args(&args).arg(&strategy);
        let (status, text) = run_to_end(cmd);
        assert_eq!(status.code(), Some(2), "{lines}: {text}");
        let line = text
            .lines()
            .find(|l| l.contains(expected))
            .unwrap_or_else(|| panic!("{lines}: no {expected:?} in:\n{text}"));
        assert!(line.len() < 240, "one short line: {line}");
    }
}
