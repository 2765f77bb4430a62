//! The API the host registers and `stdlib/runner.d.lua` declare the same functions, every
//! declared function is documented in `docs/strategy-api.md`, and the shipped example
//! strategies pass the host's own load-and-validate path.

use std::collections::BTreeSet;
use std::path::PathBuf;

use mlua::{Table, Value};
use runner::host::{check, HostConfig};

const MODULES: &[&str] = &["market", "orders", "account", "ledger", "clock", "timer", "log"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `module.function` for every function the host registers (read-only modules are walked
/// through their metatable's `__index`), plus the sandbox's `os` subset.
fn registered() -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let vm = crate::support::probe_vm(dir.path(), "return {}");
    let globals = vm.lua().globals();
    let mut names = BTreeSet::new();
    for module in MODULES.iter().chain(["os"].iter()) {
        let table: Table = globals.raw_get(*module).unwrap();
        let inner = match table.metatable() {
            Some(meta) => meta.raw_get::<Table>("__index").unwrap(),
            None => table,
        };
        for pair in inner.pairs::<String, Value>() {
            let (name, value) = pair.unwrap();
            if value.is_function() {
                names.insert(format!("{module}.{name}"));
            }
        }
    }
    names
}

/// `module.function` for every `function module.name(` in the definitions file.
fn declared() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("stdlib/runner.d.lua")).unwrap();
    text.lines()
        .filter_map(|line| line.strip_prefix("function "))
        .filter_map(|rest| rest.split('(').next())
        .filter(|name| name.contains('.'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn registered_and_declared_functions_match() {
    let registered = registered();
    let declared = declared();
    let undeclared: Vec<&String> = registered.difference(&declared).collect();
    assert!(
        undeclared.is_empty(),
        "registered but not in runner.d.lua: {undeclared:?}"
    );
    let missing: Vec<&String> = declared
        .iter()
        .filter(|name| {
            MODULES
                .iter()
                .chain(["os"].iter())
                .any(|m| name.starts_with(&format!("{m}.")))
        })
        .filter(|name| !registered.contains(*name))
        .collect();
    assert!(
        missing.is_empty(),
        "declared in runner.d.lua but not registered: {missing:?}"
    );
    assert!(registered.len() > 25, "the walk found the modules: {registered:?}");
}

#[test]
fn every_declared_api_function_is_documented_for_authors() {
    let declared = declared();
    for expected in [
        "market.quote",
        "orders.place",
        "ledger.status",
        "timer.every",
        "log.info",
        "clock.now",
    ] {
        assert!(declared.contains(expected), "runner.d.lua lacks {expected}");
    }
    let docs = std::fs::read_to_string(root().join("docs/strategy-api.md")).expect("read docs/strategy-api.md");
    let undocumented: Vec<&String> = declared.iter().filter(|name| !docs.contains(name.as_str())).collect();
    assert!(
        undocumented.is_empty(),
        "declared in stdlib/runner.d.lua but not in docs/strategy-api.md: {undocumented:?}"
    );
}

#[test]
fn example_strategies_pass_check() {
    let config = HostConfig {
        stdlib_dir: root().join("stdlib"),
        ..Default::default()
    };
    let symbols: Vec<String> = runner::sim::default_symbols()
        .iter()
        .map(|s| s.symbol.clone())
        .collect();
    let known = |s: &str| symbols.iter().any(|k| k == s);
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("strategies")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "lua") {
            let meta = check(&path, &config, &known).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(meta.warnings.is_empty(), "{}: {:?}", path.display(), meta.warnings);
            assert!(!meta.symbols.is_empty(), "{}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 3, "found {checked} example strategies");
}
