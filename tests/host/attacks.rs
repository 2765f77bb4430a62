//! Hostile strategies against the sandbox's limits, each run beside a benign one that must keep
//! its timer rate and market events, and a host that must stop within seconds.

use std::time::{Duration, Instant};

use crate::support::{config, good_neighbour, quote, report, saving_config, stats, wait_for, Files, TestVenue};
use runner::exchange::{EventSink, MarketEvent};
use runner::host::{check, Host, HostConfig, StopReason};

const LONG: Duration = Duration::from_secs(30);
/// How long stopping every strategy may take, whatever the hostile one is doing.
const PROMPT_STOP: Duration = Duration::from_secs(5);

fn limited(files: &Files) -> HostConfig {
    HostConfig {
        cpu_limit: Duration::from_millis(30),
        memory_limit: 64 << 20,
        ..config(files)
    }
}

/// Runs `bad` (a strategy named "bad" misbehaving in each `on_timer`) beside the good one until the
/// bad one is stopped for its trips; checks the good one's pace and that the host stops promptly.
async fn beside_a_good_one(bad: &str) {
    let files = Files::new();
    let venue = TestVenue::new();
    let host = Host::new(venue.clone(), limited(&files));
    host.add(&files.write("good.lua", &good_neighbour())).await.unwrap();
    host.add(&files.write("bad.lua", bad)).await.unwrap();
    let started = Instant::now();
    let mut id = 0;
    while stats(&host, "bad").running && started.elapsed() < LONG {
        id += 1;
        host.market(MarketEvent::Book(quote("ETHUSDT", 1.0, id)));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let bad = stats(&host, "bad");
    assert!(!bad.running && bad.trips == 3, "stopped after three trips: {bad:?}");

    let ticks_before = venue.reports("good", "tick:").len();
    let window = Instant::now();
    wait_for("more ticks", LONG, || {
        venue.reports("good", "tick:").len() >= ticks_before + 5
    })
    .await;
    let per_tick = window.elapsed() / 5;
    assert!(per_tick < Duration::from_millis(300), "timer ticks every {per_tick:?}");
    let good = stats(&host, "good");
    assert!(good.running && good.trips == 0 && good.errors == 0, "{good:?}");
    assert!(good.events_handled > 0, "{good:?}");

    let stopping = Instant::now();
    host.stop_all(StopReason::Shutdown).await;
    assert!(stopping.elapsed() < PROMPT_STOP, "stop took {:?}", stopping.elapsed());
}

fn looping(body: &str) -> String {
    format!(
        r#"return {{ name = "bad", symbols = {{ "BTCUSDT" }},
            on_start = function() timer.every(50, "attack") end,
            on_timer = function() {body} end }}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backtracking_pattern_is_cut_short() {
    for call in [
        r#"string.find(s, ".-.-.-.-.-b")"#,
        r#"string.match(s, "(.-)(.-)(.-)(.-)x$")"#,
        r#"for _ in string.gmatch(s, ".-.-.-.-b") do end"#,
        r#"string.gsub(s, ".-.-.-.-b", "")"#,
    ] {
        beside_a_good_one(&looping(&format!(
            r#"local s = string.rep("a", 100000) while true do pcall(function() {call} end) end"#
        )))
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loops_of_expensive_library_calls_are_cut_short() {
    for body in [
        // Each call copies megabytes in C; the loop itself is a handful of instructions.
        r#"while true do local s = string.rep("x", 4 << 20) end"#,
        r#"local s = string.rep("x", 4 << 20) while true do local t = s .. "y" end"#,
        r#"local s = string.rep("x", 4 << 20) while true do local t = string.format("%s%s", s, "y") end"#,
        r#"local s = string.rep("x", 4 << 20) while true do local t = s:upper() end"#,
        // A length that lies: C's table.insert would loop 2^40 times without an instruction.
        r#"local t = setmetatable({}, { __len = function() return 1 << 40 end }) table.insert(t, 1, "x")"#,
        r#"table.move({}, 1, 1 << 50, 2)"#,
    ] {
        beside_a_good_one(&looping(body)).await;
    }
}

/// Callbacks run unhooked until the watchdog arms them: a runaway is still stopped wherever it
/// hides (the same escapes as at load time, where the hook is always on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_callbacks_are_stopped_however_they_hide() {
    for body in [
        "while true do end",
        "while true do pcall(function() while true do end end) end",
        "while true do xpcall(function() while true do end end, function() while true do end end) end",
        "local co = coroutine.wrap(function() while true do end end) while true do pcall(co) end",
        "while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
        "local t = {} for i = 1, 100 do t[i] = i end while true do pcall(table.sort, t, function() while true do end end) end",
        "while true do pcall(string.gsub, 'aaaa', 'a', function() while true do end end) end",
    ] {
        beside_a_good_one(&looping(body)).await;
    }
    // A coroutine made while the file loaded (on the always-hooked main thread), resumed by callbacks.
    beside_a_good_one(
        r#"local spins = {}
        for i = 1, 3 do
            local body = function() while true do end end
            if i == 2 then
                spins[i] = coroutine.wrap(body)
            else
                local co = coroutine.create(body)
                spins[i] = function() return coroutine.resume(co) end
            end
        end
        local n = 0
        return { name = "bad", symbols = { "BTCUSDT" },
            on_start = function() timer.every(50, "attack") end,
            on_timer = function() n = n + 1 pcall(spins[n]) end }"#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_handler_that_never_returns_is_cut_short() {
    beside_a_good_one(&looping(
        r#"local t = setmetatable({}, { __close = function() while true do end end })
           do local x <close> = t end"#,
    ))
    .await;
}

#[test]
fn finalizers_cannot_be_installed_and_check_returns() {
    let files = Files::new();
    let config = HostConfig {
        cpu_limit: Duration::from_millis(30),
        ..config(&files)
    };
    let started = Instant::now();
    for source in [
        r#"setmetatable({}, { __gc = function() while true do end end }) return { name = "gc" }"#,
        r#"setmetatable({}, { __gc = setmetatable({}, { __call = function() while true do end end }) }) return {}"#,
    ] {
        let err = check(&files.write("gc.lua", source), &config, &|_| true).unwrap_err();
        assert!(err.to_string().contains("__gc finalizers are not allowed"), "{err}");
        assert!(err.to_string().contains("gc.lua:1:"), "names file and line: {err}");
    }
    // Setting `__gc` after the metatable is in place makes nothing finalizable (Lua's rule).
    let meta = check(
        &files.write(
            "late.lua",
            r#"local mt = {} setmetatable({}, mt) mt.__gc = function() while true do end end return { name = "late" }"#,
        ),
        &config,
        &|_| true,
    )
    .unwrap();
    assert_eq!(meta.name, "late");
    assert!(started.elapsed() < PROMPT_STOP, "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_calls_where_lua_cannot_wait_are_refused_before_anything_is_sent() {
    let files = Files::new();
    let venue = TestVenue::new();
    let host = Host::new(venue.clone(), config(&files));
    let source = format!(
        r#"
        local function attempt(what, f)
            local ok, err = pcall(f)
            local refused = not ok and tostring(err):find("exchange calls can only be made from a callback", 1, true)
            {}
        end
        local place = function() return orders.place {{ symbol = "BTCUSDT", side = "BUY", type = "MARKET",
            quantity = 1, client_id = "sent-anyway" }} end
        return {{
            name = "nowait",
            on_start = function()
                attempt("wrap", function() coroutine.wrap(place)() end)
                attempt("resume", function() local _, err = coroutine.resume(coroutine.create(place)) error(err) end)
                attempt("gsub", function() string.gsub("x", "x", function() place() end) end)
                attempt("sort", function() table.sort({{ 1, 2, 3 }}, function(a, b) place() return a < b end) end)
                {}
            end,
        }}
        "#,
        report(r#"(refused and "refused:" or "accepted:") .. what"#),
        report(r#""done""#)
    );
    host.add(&files.write("nowait.lua", &source)).await.unwrap();
    wait_for("the attempts", LONG, || !venue.reports("nowait", "done").is_empty()).await;
    let mut got = venue.all_reports("nowait");
    got.sort();
    assert_eq!(
        got,
        ["done", "refused:gsub", "refused:resume", "refused:sort", "refused:wrap"],
        "each refused, and nothing else placed"
    );
    host.stop_all(StopReason::Shutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_are_bounded_per_strategy() {
    let files = Files::new();
    let venue = TestVenue::new();
    let host = Host::new(venue.clone(), config(&files));
    let source = format!(
        r#"
        return {{
            name = "timers",
            on_start = function()
                local made, err = 0, nil
                for i = 1, 1000000 do
                    local ok, e = pcall(timer.every, 60000, "t" .. i)
                    if not ok then err = tostring(e) break end
                    made = made + 1
                end
                {}
            end,
        }}
        "#,
        report(r#""made:" .. made .. ":" .. tostring(err and err:find("too many timers", 1, true) ~= nil)"#)
    );
    host.add(&files.write("timers.lua", &source)).await.unwrap();
    wait_for("the report", LONG, || !venue.all_reports("timers").is_empty()).await;
    assert_eq!(venue.all_reports("timers"), ["made:1000:true"]);
    host.stop_all(StopReason::Shutdown).await;
}

#[test]
fn oversized_modules_are_refused_without_being_read() {
    let files = Files::new();
    let big = files.path().join("big.lua");
    // A sparse file: gigabytes on paper, nothing on disk.
    std::fs::File::create(&big).unwrap().set_len(4 << 30).unwrap();
    let err = check(
        &files.write("loader.lua", r#"require("big") return { name = "loader" }"#),
        &config(&files),
        &|_| true,
    )
    .unwrap_err();
    assert!(err.to_string().contains("larger than 8 MiB"), "{err}");
}

#[test]
fn durations_from_lua_are_checked_not_panicked_on() {
    let files = Files::new();
    for (source, needle) in [
        (r#"timer.every(1e300, "t") return {}"#, "30 days"),
        (r#"timer.after(0/0, "t") return {}"#, "30 days"),
        (r#"timer.after(-1, "t") return {}"#, "30 days"),
        (r#"return { max_wait_ms = 1e300 }"#, "max_wait_ms"),
        (r#"return { order_wait_ms = 0/0 }"#, "order_wait_ms"),
    ] {
        let err = check(&files.write("durations.lua", source), &config(&files), &|_| true).unwrap_err();
        assert!(err.to_string().contains(needle), "{source}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_referencing_state_is_refused_with_its_path() {
    let files = Files::new();
    let venue = TestVenue::new();
    let host = Host::new(venue.clone(), saving_config(&files));
    let path = files.write(
        "cyclic.lua",
        r#"return { name = "cyclic", on_start = function()
            state.a = { b = {} } state.a.b.c = state.a
        end }"#,
    );
    // 2^60 paths through one table shared at every level: refused by size, in bounded time.
    host.add(&files.write(
        "wide.lua",
        r#"return { name = "wide", on_start = function()
            local t = {} for i = 1, 60 do t = { x = t, y = t } end state.wide = t
        end }"#,
    ))
    .await
    .unwrap();
    host.add(&path).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let err = host.reload("cyclic").await.unwrap_err().to_string();
    assert!(err.contains("state.a.b.c refers back to state.a"), "{err}");
    assert!(started.elapsed() < PROMPT_STOP, "{:?}", started.elapsed());
    assert!(stats(&host, "cyclic").running);
    let err = host.reload("wide").await.unwrap_err().to_string();
    assert!(
        err.contains("state is too large") && err.contains("state.wide."),
        "{err}"
    );
    assert!(started.elapsed() < PROMPT_STOP, "{:?}", started.elapsed());
    host.stop_all(StopReason::Shutdown).await;
    assert!(started.elapsed() < PROMPT_STOP, "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_strategy_starts_again_at_the_next_good_save() {
    let files = Files::new();
    let venue = TestVenue::new();
    let host = Host::new(venue.clone(), limited(&files));
    let path = files.write("bad.lua", &looping("while true do end"));
    host.add(&path).await.unwrap();
    wait_for("the stop", LONG, || !stats(&host, "bad").running).await;
    std::fs::write(
        &path,
        format!(
            r#"return {{ name = "bad", on_start = function() {} end }}"#,
            report(r#""back""#)
        ),
    )
    .unwrap();
    host.reload("bad").await.expect("a good save starts it again");
    wait_for("the new version", LONG, || !venue.reports("bad", "back").is_empty()).await;
    assert!(stats(&host, "bad").running);
    host.stop_all(StopReason::Shutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_waits_are_errors_with_file_and_line() {
    let files = Files::new();
    let venue = TestVenue::new();
    let host = Host::new(venue.clone(), config(&files));
    let source = format!(
        r#"return {{ name = "waits", on_start = function()
            local results = {{}}
            for _, ms in ipairs({{ 1e300, -1, 0/0, math.huge }}) do
                local ok, err = pcall(market.depth, "BTCUSDT", 5, {{ wait_ms = ms }})
                results[#results + 1] = (not ok and tostring(err):find("waits.lua:4: market.depth: wait_ms", 1, true)) and "err" or "?"
            end
            {}
        end }}"#,
        report("table.concat(results, ':')")
    );
    host.add(&files.write("waits.lua", &source)).await.unwrap();
    wait_for("the report", LONG, || !venue.all_reports("waits").is_empty()).await;
    assert_eq!(venue.all_reports("waits"), ["err:err:err:err"]);
    // The report itself is an order; no market-data request went out.
    let calls = venue.calls.lock().clone();
    assert!(calls.iter().all(|c| !c.starts_with("depth")), "nothing sent: {calls:?}");
    host.stop_all(StopReason::Shutdown).await;
}
