//! Runs the Lua unit tests of `stdlib/` and `strategies/` in plain Lua 5.4 VMs, and compiles every shipped `.lua`
//! file so a syntax error in a module or an example strategy fails `cargo test` with its file:line.
//!
//! Test files are `*_test.lua` under `stdlib/tests/` and `strategies/tests/`; each runs in a fresh VM whose
//! `package.path` finds the stdlib modules, the test helpers and the example strategies.

use std::fs;
use std::path::{Path, PathBuf};

use mlua::Lua;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir` (recursively) whose name ends with `suffix`, sorted for stable output.
fn files_ending_with(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.to_string_lossy().ends_with(suffix) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The path as Lua error messages should show it: relative to the crate root.
fn display_name(path: &Path) -> String {
    path.strip_prefix(root()).unwrap_or(path).display().to_string()
}

fn test_vm() -> Lua {
    let lua = Lua::new();
    let root = root();
    let search_path = [
        "stdlib/?.lua",
        "stdlib/tests/?.lua",
        "strategies/?.lua",
        "strategies/tests/?.lua",
    ]
    .iter()
    .map(|pattern| root.join(pattern).display().to_string())
    .collect::<Vec<_>>()
    .join(";");
    let package: mlua::Table = lua.globals().get("package").expect("package library");
    package.set("path", search_path).expect("set package.path");
    package.set("cpath", "").expect("clear package.cpath");
    lua
}

/// Runs one test file; Err carries Lua's message (with file:line) and traceback.
fn run_lua_test(path: &Path) -> Result<(), String> {
    let source = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let lua = test_vm();
    lua.load(source)
        .set_name(format!("@{}", display_name(path)))
        .exec()
        .map_err(|e| e.to_string())
}

fn lua_tests() -> Vec<PathBuf> {
    let root = root();
    let mut tests = files_ending_with(&root.join("stdlib/tests"), "_test.lua");
    let strategy_tests = root.join("strategies/tests");
    if strategy_tests.is_dir() {
        tests.extend(files_ending_with(&strategy_tests, "_test.lua"));
    }
    tests
}

#[test]
fn lua_unit_tests_pass() {
    let tests = lua_tests();
    assert!(
        tests.len() >= 3,
        "expected the stdlib's Lua tests, found {}",
        tests.len()
    );
    let failures: Vec<String> = tests
        .iter()
        .filter_map(|path| {
            run_lua_test(path)
                .err()
                .map(|e| format!("{}:\n{e}", display_name(path)))
        })
        .collect();
    assert!(failures.is_empty(), "Lua tests failed:\n\n{}", failures.join("\n\n"));
}

#[test]
fn every_shipped_lua_file_compiles() {
    let root = root();
    let mut files = files_ending_with(&root.join("stdlib"), ".lua");
    files.extend(files_ending_with(&root.join("strategies"), ".lua"));
    assert!(
        files.len() >= 5,
        "expected stdlib modules and strategies, found {}",
        files.len()
    );
    let lua = Lua::new();
    let failures: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let source = match fs::read_to_string(path) {
                Ok(source) => source,
                Err(e) => return Some(format!("{}: {e}", display_name(path))),
            };
            lua.load(source)
                .set_name(format!("@{}", display_name(path)))
                .into_function()
                .err()
                .map(|e| e.to_string())
        })
        .collect();
    assert!(
        failures.is_empty(),
        "Lua files do not compile:\n{}",
        failures.join("\n")
    );
}

#[test]
fn a_failing_lua_assertion_is_reported_with_file_and_line() {
    // Guards the harness itself: a broken test must fail with the location of the failed check.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("broken_test.lua");
    fs::write(
        &path,
        "local T = require('assert')\nreturn T.run('broken', { one = function()\n  T.eq(1 + 1, 3)\nend })\n",
    )
    .expect("write test file");
    let err = run_lua_test(&path).expect_err("a failing assertion must fail the run");
    assert!(err.contains("broken_test.lua:3:"), "no file:line in: {err}");
    assert!(err.contains("expected 3, got 2"), "no detail in: {err}");
    assert!(err.contains("1 of 1 broken tests failed"), "no summary in: {err}");
}
