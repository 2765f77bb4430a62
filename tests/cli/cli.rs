//! The real `runner` binary: bad input, `check`, `--duration` and the summary,
//! several strategies on one ledger, and hot reload.

use std::fs;

use crate::support::{run_to_end, runner, save_like_an_editor, Running};

/// The CPUs `Cpus_allowed_list` in a `/proc/.../status` file lists.
#[cfg(target_os = "linux")]
fn allowed_cpus(status_file: &std::path::Path) -> Vec<usize> {
    let status = fs::read_to_string(status_file).unwrap();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list");
    runner::host::affinity::parse_cpu_list(list.trim()).unwrap()
}

/// A strategy that counts timer ticks in `state` and logs them with a version tag.
fn counter(version: &str) -> String {
    format!(
        r#"
state.n = state.n or 0
return {{
  name = "counter",
  symbols = {{ "BTCUSDT" }},
  on_start = function() timer.every(50, "tick") end,
  on_timer = function(name)
    state.n = state.n + 1
    log.info("{version} tick %d", state.n)
  end,
  on_reload = function() log.info("{version} reloaded at %d", state.n) end,
}}
"#
    )
}

fn tick_of(line: &str, version: &str) -> Option<u64> {
    let at = line.find(&format!("{version} tick "))?;
    line[at + version.len() + 6..]
        .split_whitespace()
        .next()?
        .trim_matches('"')
        .parse()
        .ok()
}

#[test]
fn bad_input_gets_one_clear_line_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let txt = dir.path().join("notes.txt");
    fs::write(&txt, "hello").unwrap();
    let good = dir.path().join("good.lua");
    fs::write(&good, counter("v1")).unwrap();
    let blocked = dir.path().join("blocked");
    fs::write(&blocked, "a file where a folder should be").unwrap();

    let cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (vec!["missing.lua".into()], "does not exist"),
        (vec![dir.path().into()], "is a directory"),
        (vec![txt.into()], "not a Lua file"),
        (vec![good.clone().into(), good.clone().into()], "given twice"),
        (vec![good.clone().into(), "--testnet".into()], "BINANCE_TESTNET_API_KEY"),
        (vec![good.clone().into(), "--live".into()], "BINANCE_API_KEY"),
        (
            vec![good.clone().into(), "--unknown-order-grace".into(), "0s".into()],
            "unknown_order_grace 0s is out of range",
        ),
        (
            vec![good.clone().into(), "--pin-strategies".into(), "two".into()],
            "is not a CPU list",
        ),
        (
            vec![good.clone().into(), "--pin-strategies".into(), "4000".into()],
            "CPU 4000 is not available",
        ),
        (
            vec![good.clone().into(), "--pin-strategies".into(), "100000".into()],
            "CPU 100000 in \"100000\" is out of range",
        ),
    ];
    for (args, expected) in cases {
        let mut cmd = runner(&state);
        cmd.args(&args);
        let (status, output) = run_to_end(cmd);
        assert!(!status.success(), "{args:?} should fail; output:\n{output}");
        assert!(
            output.contains(expected),
            "{args:?}: expected {expected:?} in:\n{output}"
        );
        assert!(!output.contains("panicked"), "{args:?} panicked:\n{output}");
    }

    let mut cmd = crate::support::runner(&blocked.join("state"));
    cmd.arg(&good);
    let (status, output) = run_to_end(cmd);
    assert!(!status.success());
    assert!(output.contains("not writable"), "{output}");
}

#[test]
fn check_accepts_good_files_and_names_the_line_of_broken_ones() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.lua");
    let broken = dir.path().join("broken.lua");
    fs::write(&good, counter("v1")).unwrap();
    fs::write(&broken, "local x = 1\nreturn {\n  name = = 'oops',\n}\n").unwrap();

    let mut cmd = runner(&dir.path().join("state"));
    cmd.arg("check").arg(&good);
    let (status, output) = run_to_end(cmd);
    assert!(status.success(), "{output}");

    let mut cmd = runner(&dir.path().join("state"));
    cmd.arg("check").arg(&good).arg(&broken);
    let (status, output) = run_to_end(cmd);
    assert!(!status.success(), "{output}");
    assert!(output.contains("broken.lua:3"), "file:line expected in:\n{output}");
    assert!(
        !dir.path().join("state").exists(),
        "check must not create the state dir"
    );
}

#[test]
fn duration_stops_cleanly_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("counter.lua");
    fs::write(&file, counter("v1")).unwrap();
    let mut cmd = runner(&dir.path().join("state"));
    cmd.arg(&file).arg("--duration").arg("2s");
    let (status, output) = run_to_end(cmd);
    assert!(status.success(), "{output}");
    assert!(output.contains("summary"), "{output}");
    assert!(output.contains("counter: orders placed 0"), "{output}");
    assert!(output.contains("(429): 0, bans (418): 0"), "{output}");
}

#[test]
fn two_strategies_share_one_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.lua");
    let b = dir.path().join("b.lua");
    let body = |name: &str| {
        format!(
            r#"return {{
  name = "{name}",
  symbols = {{ "ETHUSDT" }},
  on_start = function() timer.every(100, "poll") end,
  on_timer = function()
    local t, err = market.ticker("ETHUSDT")
    if t then
      local s = ledger.status()
      log.info("{name} mine=%d pools=%d", s.mine.weight, #s.pools)
    end
  end,
}}"#
        )
    };
    fs::write(&a, body("alpha")).unwrap();
    fs::write(&b, body("beta")).unwrap();
    let mut cmd = runner(&dir.path().join("state"));
    cmd.arg(&a).arg(&b).arg("--duration").arg("60s");
    let mut run = Running::spawn(cmd);
    run.wait_for("alpha polling", |l| l.contains("alpha mine="));
    run.wait_for("beta polling", |l| l.contains("beta mine="));
    run.terminate();
    let (status, output) = run.finish();
    assert!(status.success(), "{}", output.join("\n"));
    let text = output.join("\n");
    assert!(
        text.contains("alpha: orders placed") && text.contains("beta: orders placed"),
        "{text}"
    );
}

#[test]
fn hot_reload_keeps_state_survives_errors_and_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("counter.lua");
    fs::write(&file, counter("v1")).unwrap();
    let mut cmd = runner(&dir.path().join("state"));
    cmd.arg(&file).arg("--duration").arg("120s");
    let mut run = Running::spawn(cmd);
    let before = tick_of(
        &run.wait_for("v1 ticks", |l| tick_of(l, "v1").is_some_and(|n| n >= 3)),
        "v1",
    )
    .unwrap();

    // 1. A good edit: the new version takes over and the counter continues.
    save_like_an_editor(&file, &counter("v2"));
    run.wait_for("on_reload of v2", |l| l.contains("v2 reloaded at"));
    let after = tick_of(&run.wait_for("v2 ticks", |l| tick_of(l, "v2").is_some()), "v2").unwrap();
    assert!(
        after > before,
        "state must carry over: v1 reached {before}, v2 started at {after}"
    );

    // 2. A syntax error: reported with file:line, and v2 keeps running.
    save_like_an_editor(&file, "return {\n  name = 'counter',\n  on_timer = function( \n}\n");
    run.wait_for("the reload error with file:line", |l| {
        l.contains("reload failed") && l.contains("counter.lua:")
    });
    let n = tick_of(&run.wait_for("v2 still ticking", |l| tick_of(l, "v2").is_some()), "v2").unwrap();
    assert!(n > after);

    // 3. Deleted, then restored: the running version keeps going, the restored file loads.
    fs::remove_file(&file).unwrap();
    run.wait_for("v2 ticking while the file is gone", |l| {
        tick_of(l, "v2").is_some_and(|m| m > n + 2)
    });
    fs::write(&file, counter("v3")).unwrap();
    run.wait_for("v3 loaded", |l| l.contains("v3 reloaded at"));
    run.wait_for("v3 ticks", |l| tick_of(l, "v3").is_some());

    run.terminate();
    let (status, _) = run.finish();
    assert!(status.success());
}

#[test]
fn editing_a_required_module_reloads_the_strategy() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("greeting.lua");
    let file = dir.path().join("uses_module.lua");
    fs::write(&module, "return { word = 'hello' }\n").unwrap();
    fs::write(
        &file,
        r#"local greeting = require("greeting")
return {
  symbols = { "BTCUSDT" },
  on_start = function() timer.every(50, "say") end,
  on_timer = function() log.info("word=%s", greeting.word) end,
}
"#,
    )
    .unwrap();
    let mut cmd = runner(&dir.path().join("state"));
    cmd.arg(&file).arg("--duration").arg("120s");
    let mut run = Running::spawn(cmd);
    run.wait_for("the first word", |l| l.contains("word=hello"));
    save_like_an_editor(&module, "return { word = 'bonjour' }\n");
    run.wait_for("the edited module's word", |l| l.contains("word=bonjour"));
    run.terminate();
    let (status, _) = run.finish();
    assert!(status.success());
}

#[tokio::test]
async fn sim_command_serves_and_announces_the_limits_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = runner(&dir.path().join("state"));
    cmd.args([
        "sim",
        "--port",
        "0",
        "--limit",
        "REQUEST_WEIGHT=300/10s",
        "--limit",
        "ORDERS=20/10s",
    ]);
    let mut run = tokio::task::spawn_blocking(move || {
        let mut run = Running::spawn(cmd);
        let line = run.wait_for("the listening line", |l| l.contains("simulated exchange listening"));
        (run, line)
    });
    let (sim, line) = (&mut run).await.unwrap();
    let plain = line.replace("\u{1b}", " ");
    let at = plain
        .find("http://127.0.0.1:")
        .expect("a REST URL in the listening line");
    let url: String = plain[at..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"')
        .collect();
    let info: serde_json::Value = reqwest::get(format!("{url}/api/v3/exchangeInfo"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let limits = info["rateLimits"].as_array().unwrap();
    let find = |kind: &str| {
        limits
            .iter()
            .filter(|l| l["rateLimitType"] == kind)
            .cloned()
            .collect::<Vec<_>>()
    };
    let weight = find("REQUEST_WEIGHT");
    assert_eq!(weight.len(), 1, "{limits:?}");
    assert_eq!(
        (
            weight[0]["limit"].as_u64(),
            weight[0]["interval"].as_str(),
            weight[0]["intervalNum"].as_u64()
        ),
        (Some(300), Some("SECOND"), Some(10))
    );
    assert_eq!(
        find("ORDERS").len(),
        1,
        "both Binance ORDERS windows are replaced: {limits:?}"
    );
    assert_eq!(
        find("RAW_REQUESTS").len(),
        1,
        "kinds not given keep Binance's: {limits:?}"
    );
    sim.terminate();
    let (status, _) = tokio::task::spawn_blocking(move || sim.finish()).await.unwrap();
    assert!(status.success());
}

#[test]
fn orders_left_open_are_cancelled_at_exit_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rester.lua");
    fs::write(
        &file,
        r#"return {
  symbols = { "BTCUSDT" },
  on_start = function()
    local t = assert(market.ticker("BTCUSDT"))
    local price = market.round_price("BTCUSDT", t.price * 0.8)
    local o, err = orders.place{ symbol = "BTCUSDT", side = "BUY", type = "LIMIT", price = price, quantity = 0.001 }
    log.info("resting order %s", o and o.status or tostring(err))
  end,
}"#,
    )
    .unwrap();
    let mut cmd = runner(&dir.path().join("state"));
    cmd.arg(&file).arg("--duration").arg("3s");
    let (status, output) = run_to_end(cmd);
    assert!(status.success(), "{output}");
    assert!(output.contains("resting order NEW"), "{output}");
    assert!(
        output.contains("rester: orders placed 1, filled 0, cancelled 0, rejected 0; cancelled at exit 1; open 0"),
        "{output}"
    );
}

/// `--pin-strategies`: the strategy's thread runs on the reserved CPU only, and the runner's other
/// threads never do (read from the live process's `/proc` entries).
#[cfg(target_os = "linux")]
#[test]
fn a_reserved_cpu_runs_the_strategy_and_nothing_else() {
    let mine = allowed_cpus(std::path::Path::new("/proc/self/status"));
    let Some(&reserved) = mine.get(1) else {
        println!("skipped: reserving a CPU needs two, this process may use {mine:?}");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pinned.lua");
    fs::write(&file, counter("v1")).unwrap();
    let mut cmd = runner(&dir.path().join("state"));
    cmd.arg(&file)
        .args(["--busy-poll", "--pin-strategies", &reserved.to_string()]);
    let mut run = Running::spawn(cmd);
    run.wait_for("the strategy pinned", |l| l.contains("strategy pinned"));
    run.wait_for("a tick", |l| tick_of(l, "v1").is_some());

    let tasks = std::path::PathBuf::from(format!("/proc/{}/task", run.pid()));
    let mut strategy_threads = 0;
    let mut others = 0;
    for task in fs::read_dir(&tasks).unwrap().flatten() {
        let name = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let cpus = allowed_cpus(&task.path().join("status"));
        if name.trim() == "strategy:pinned" {
            strategy_threads += 1;
            assert_eq!(cpus, vec![reserved], "the strategy's thread");
        } else {
            others += 1;
            assert!(!cpus.contains(&reserved), "thread {} may run on {cpus:?}", name.trim());
        }
    }
    assert_eq!(strategy_threads, 1);
    assert!(
        others >= 2,
        "the main thread and the runtime's workers were checked too"
    );
    run.terminate();
    let (status, lines) = run.finish();
    assert!(status.success(), "{}", lines.join("\n"));
}

/// `--max-order-notional`: the engine puts the limit in front of every strategy, whose order over it
/// fails in Lua with `invalid_order` and never reaches the exchange.
#[test]
fn an_order_over_the_operators_notional_cap_fails_in_lua_and_is_not_sent() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.lua");
    fs::write(
        &file,
        r#"
return {
  symbols = { "BTCUSDT" },
  streams = { "book" },
  on_book = function(q)
    if state.tried then return end
    state.tried = true
    local price = market.round_price("BTCUSDT", q.bid * 0.5)
    local o, err = orders.place { symbol = "BTCUSDT", side = "BUY", type = "LIMIT", quantity = 1, price = price }
    log.info("big order: %s %s", o and o.status or err.code, o and "" or err.message)
  end,
}
"#,
    )
    .unwrap();
    let mut cmd = runner(&dir.path().join("state"));
    cmd.arg(&file).args(["--max-order-notional", "USDT=100"]);
    let mut run = Running::spawn(cmd);
    let line = run.wait_for("the refused order", |l| l.contains("big order:"));
    assert!(
        line.contains("invalid_order") && line.contains("risk limit") && line.contains("max_order_notional 100 USDT"),
        "{line}"
    );
    run.terminate();
    let (status, lines) = run.finish();
    let text = lines.join("\n");
    assert!(status.success(), "{text}");
    assert!(text.contains("big: orders placed 0"), "{text}");
}

/// The operator's kill switch: SIGUSR1 halts every new order (refused in Lua, never sent), SIGUSR2
/// lets them through again.
#[cfg(unix)]
#[test]
fn sigusr1_halts_new_orders_and_sigusr2_resumes_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("steady.lua");
    fs::write(
        &file,
        r#"
local n = 0
return {
  symbols = { "BTCUSDT" },
  streams = { "book" },
  on_start = function() timer.every(50, "try") end,
  on_timer = function()
    local q = market.quote("BTCUSDT")
    if not q then return end
    n = n + 1
    local price = market.round_price("BTCUSDT", q.bid * 0.5)
    local o, err = orders.place { symbol = "BTCUSDT", side = "BUY", type = "LIMIT", quantity = 0.001, price = price }
    if o then
      orders.cancel("BTCUSDT", o.client_id)
      log.info("attempt %d placed", n)
    else
      log.info("attempt %d refused: %s", n, err.message)
    end
  end,
}
"#,
    )
    .unwrap();
    let signal = |run: &Running, name: &str| {
        let sent = std::process::Command::new("kill")
            .args([format!("-{name}"), run.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    let mut cmd = runner(&dir.path().join("state"));
    cmd.arg(&file).args(["--status-every", "0"]);
    let mut run = Running::spawn(cmd);
    let placed = |l: &str| l.contains("attempt") && l.contains(" placed");
    run.wait_for("an order placed", placed);
    signal(&run, "USR1");
    let refused = run.wait_for("a refusal", |l| l.contains("refused:"));
    assert!(refused.contains("halted by the operator"), "{refused}");
    signal(&run, "USR2");
    run.wait_for("orders placed again", placed);
    run.terminate();
    let (status, lines) = run.finish();
    assert!(status.success(), "{}", lines.join("\n"));
}
