//! The sandbox and the load/validate path, through `runner::host::check`.

use std::time::Duration;

use crate::support::Files;
use runner::host::{check, HostConfig, LoadError, StrategyMeta};

fn known(symbol: &str) -> bool {
    ["BTCUSDT", "ETHUSDT"].contains(&symbol)
}

fn fast_config(files: &Files) -> HostConfig {
    HostConfig {
        stdlib_dir: files.path().join("stdlib"),
        cpu_limit: Duration::from_millis(20),
        ..Default::default()
    }
}

fn run(files: &Files, name: &str, source: &str) -> Result<StrategyMeta, LoadError> {
    let path = files.write(name, source);
    check(&path, &fast_config(files), &known)
}

/// Enough CPU that memory, not instructions, is what runs out.
fn run_with_cpu(files: &Files, name: &str, source: &str) -> Result<StrategyMeta, LoadError> {
    let path = files.write(name, source);
    let config = HostConfig {
        cpu_limit: Duration::from_secs(20),
        ..fast_config(files)
    };
    check(&path, &config, &known)
}

#[test]
fn escapes_are_refused() {
    let files = Files::new();
    let meta = run(
        &files,
        "escapes.lua",
        r#"
        assert(io == nil, "io")
        assert(os.execute == nil and os.exit == nil and os.getenv == nil and os.remove == nil, "os")
        assert(type(os.time()) == "number" and type(os.clock()) == "number" and type(os.date()) == "string")
        assert(package == nil and dofile == nil and loadfile == nil and debug == nil, "globals")
        assert(string.dump == nil, "string.dump")
        local ok, err = pcall(require, "socket")
        assert(not ok and tostring(err):find("not found"), tostring(err))
        ok, err = pcall(require, "../../etc/passwd")
        assert(not ok and tostring(err):find("invalid module name"), tostring(err))
        ok = pcall(function() return load(string.dump(print)) end)
        assert(not ok, "string.dump must not exist")
        local f, lerr = load("\27Lua\84\0\25\147\13\10\26\10")
        assert(f == nil and lerr:find("binary"), tostring(lerr))
        assert(load("return io")() == nil, "load gets the sandbox env")
        assert(load("return 1 + 1")() == 2)
        assert(not pcall(collectgarbage, "stop"))
        assert(not pcall(collectgarbage))
        assert(type(collectgarbage("count")) == "number")
        ok, err = pcall(function() market.quote = nil end)
        assert(not ok and tostring(err):find("read%-only"), tostring(err))
        assert(setmetatable ~= nil and getmetatable(market) == false)
        return { name = "escapes" }
        "#,
    )
    .expect("every escape attempt was refused");
    assert_eq!(meta.name, "escapes");
}

fn assert_tripped(result: Result<StrategyMeta, LoadError>, what: &str, needle: &str) {
    let err = result.expect_err(what).to_string();
    assert!(err.contains(needle), "{what}: {err}");
    assert!(err.contains(".lua"), "{what} names the file: {err}");
}

#[test]
fn cpu_trips_cannot_be_caught() {
    let files = Files::new();
    let cases = [
        ("plain", "while true do end"),
        ("pcall", "pcall(function() while true do end end) return {}"),
        ("nested pcall loop", "while true do pcall(function() while true do end end) end"),
        (
            "xpcall with a looping handler",
            "while true do xpcall(function() while true do end end, function() while true do end end) end",
        ),
        (
            "coroutine",
            "local co = coroutine.wrap(function() while true do end end) while true do pcall(co) end",
        ),
        (
            "resume loop",
            "while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
        ),
        (
            "sort comparator",
            "local t = {} for i = 1, 100 do t[i] = i end while true do pcall(table.sort, t, function() while true do end end) end",
        ),
        ("string pattern inside pcall", "while true do pcall(string.gsub, 'aaaa', 'a', function() while true do end end) end"),
    ];
    for (what, source) in cases {
        assert_tripped(run(&files, "cpu.lua", source), what, "CPU limit exceeded");
    }
}

#[test]
fn memory_bombs_trip() {
    let files = Files::new();
    let cases = [
        (
            "string.rep bomb",
            "local ok = pcall(string.rep, 'x', 1 << 30) return {}",
        ),
        (
            "string.rep doubling",
            "local s = 'x' while true do pcall(function() s = s .. s end) end",
        ),
        (
            "10 GB table",
            "local t = {} pcall(function() for i = 1, 10e9 / 16 do t[i] = i end end) return {}",
        ),
        (
            "caught and retried",
            "local keep = {} while true do pcall(function() keep[#keep + 1] = string.rep('y', 1 << 20) end) end",
        ),
    ];
    for (what, source) in cases {
        assert_tripped(run_with_cpu(&files, "mem.lua", source), what, "memory limit exceeded");
    }
}

#[test]
fn deep_recursion_is_an_ordinary_error() {
    let files = Files::new();
    let result = run(
        &files,
        "deep.lua",
        r#"
        local function f(n) return f(n + 1) + 1 end
        local ok, err = pcall(f, 1)
        assert(not ok)
        return { name = "deep" }
        "#,
    );
    // Lua's stack limit (an ordinary, catchable error), the memory limit or the CPU-time limit
    // (growing the stack is expensive work) stops it; in every case the process survives and the
    // outcome is reported.
    match result {
        Ok(meta) => assert_eq!(meta.name, "deep"),
        Err(err) => {
            let err = err.to_string();
            assert!(err.contains("memory") || err.contains("CPU limit"), "{err}")
        }
    }
}

#[test]
fn load_errors_name_file_and_line() {
    let files = Files::new();
    let err = run(&files, "syntax.lua", "local x = = 1\nreturn {}")
        .unwrap_err()
        .to_string();
    assert!(err.contains("syntax.lua:1:"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");

    let err = run(&files, "five.lua", "return 5").unwrap_err().to_string();
    assert!(err.contains("five.lua") && err.contains("must return a table"), "{err}");

    let err = run(&files, "boom.lua", "\nerror('boom')").unwrap_err().to_string();
    assert!(err.contains("boom.lua:2: boom"), "{err}");

    let err = run(&files, "sym.lua", r#"return { symbols = { "BTCUSDT", "NOPEUSDT" } }"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown symbol 'NOPEUSDT'"), "{err}");

    let err = run(
        &files,
        "stream.lua",
        r#"return { symbols = { "BTCUSDT" }, streams = { "bok" } }"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("unknown stream 'bok'") && err.contains("did you mean book?"),
        "{err}"
    );

    let err = run(&files, "cb.lua", "return { on_book = 5 }").unwrap_err().to_string();
    assert!(err.contains("on_book must be a function"), "{err}");

    let err = run(&files, "types.lua", "local x = 1\nmarket.round_price(5, 1)\nreturn {}")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("types.lua:2:") && err.contains("bad argument #1 (symbol) to 'market.round_price'"),
        "{err}"
    );
}

#[test]
fn typos_are_warnings_with_suggestions() {
    let files = Files::new();
    let meta = run(
        &files,
        "typo.lua",
        r#"return { symbols = { "BTCUSDT" }, streams = { "book", "kline_1m" }, on_boook = function() end, max_wait = 3 }"#,
    )
    .expect("typos only warn");
    assert!(
        meta.warnings.iter().any(|w| w.contains("did you mean on_book?")),
        "{:?}",
        meta.warnings
    );
    assert!(
        meta.warnings.iter().any(|w| w.contains("did you mean max_wait_ms?")),
        "{:?}",
        meta.warnings
    );
    assert_eq!(meta.name, "typo");
    assert_eq!(meta.symbols, vec!["BTCUSDT".to_string()]);
    assert_eq!(meta.streams.len(), 2);
}

#[test]
fn require_stays_inside_its_folders_and_records_files() {
    let files = Files::new();
    files.write(
        "stdlib/indicators.lua",
        "return { sma = function(a, b) return (a + b) / 2 end }",
    );
    files.write("stdlib/books/local_book.lua", "return { depth = 3 }");
    let helper = files.write(
        "strategies/helper.lua",
        "return { twice = function(x) return 2 * x end }",
    );
    let outside = files.write("secret.lua", "return { leaked = true }");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside, files.path().join("strategies/leak.lua")).unwrap();
    let path = files.write(
        "strategies/mod.lua",
        r#"
        local ind = require("indicators")
        local book = require("books.local_book")
        local h = require("helper")
        assert(require("indicators") == ind, "cached")
        assert(ind.sma(1, 3) == 2 and h.twice(4) == 8 and book.depth == 3)
        local ok, err = pcall(require, "leak")
        assert(not ok and tostring(err):find("not found"), "a symlink out of the folder is refused")
        return { name = "mod" }
        "#,
    );
    let meta = check(&path, &fast_config(&files), &known).expect("modules load");
    let names: Vec<String> = meta
        .files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["mod.lua", "indicators.lua", "local_book.lua", "helper.lua"]);
    assert!(meta.files.contains(&helper.canonicalize().unwrap()));
}
