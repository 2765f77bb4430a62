//! The VM factory: every strategy VM (running, reload candidate, `runner check`) is built here.
//!
//! Only `string`, `table`, `math`, `utf8`, `coroutine` and `os.time/clock/date` are
//! available; `load` takes text only (`print` comes with the API's `log`); `collectgarbage` only
//! answers "count". Memory and CPU are limited by [`super::limits`].

use std::rc::Rc;

use mlua::{ChunkMode, Lua, LuaOptions, MultiValue, StdLib, Table, Thread, Value};

use super::limits::{self, Guard};
use super::strlib;

/// Globals of the base library that are removed outright.
const REMOVED_GLOBALS: &[&str] = &[
    "dofile",
    "loadfile",
    "require",
    "package",
    "io",
    "debug",
    "collectgarbage",
];

/// Registry key of Lua's own `xpcall`, before the sandbox wraps it.
pub const RAW_XPCALL: &str = "runner.raw_xpcall";

/// mlua's pool of coroutines reused for callbacks (avoids a new thread per event).
const THREAD_POOL: usize = 16;

/// Builds a sandboxed VM with `guard`'s limits installed.
pub fn new_vm(guard: &Rc<Guard>, memory_limit: usize) -> mlua::Result<Lua> {
    let libs = StdLib::STRING | StdLib::TABLE | StdLib::MATH | StdLib::UTF8 | StdLib::COROUTINE | StdLib::OS;
    let lua = Lua::new_with(libs, LuaOptions::new().thread_pool_size(THREAD_POOL))?;
    let globals = lua.globals();
    for name in REMOVED_GLOBALS {
        globals.raw_set(*name, Value::Nil)?;
    }
    restrict_os(&lua, &globals)?;
    let string: Table = globals.raw_get("string")?;
    string.raw_set("dump", Value::Nil)?;
    install_load(&lua, &globals)?;
    install_collectgarbage(&lua, &globals)?;
    install_protected_calls(&lua, &globals, guard)?;
    install_setmetatable(&lua, &globals)?;
    strlib::install(&lua, guard)?;
    lua.set_memory_limit(memory_limit)?;
    limits::install(&lua, guard.clone())?;
    Ok(lua)
}

fn restrict_os(lua: &Lua, globals: &Table) -> mlua::Result<()> {
    let full: Table = globals.raw_get("os")?;
    let os = lua.create_table_with_capacity(0, 3)?;
    for name in ["time", "clock", "date"] {
        os.raw_set(name, full.raw_get::<Value>(name)?)?;
    }
    globals.raw_set("os", os)
}

/// `load(chunk [, chunkname [, mode [, env]]])`: text chunks only, given as a string;
/// the environment defaults to the sandbox's globals.
fn install_load(lua: &Lua, globals: &Table) -> mlua::Result<()> {
    let load = lua.create_function(
        |lua, (chunk, name, _mode, env): (Value, Option<String>, Value, Option<Table>)| {
            let Value::String(chunk) = chunk else {
                return Err(mlua::Error::runtime("load: only string chunks are allowed"));
            };
            let name = name.unwrap_or_else(|| "=(load)".to_owned());
            let env = env.unwrap_or_else(|| lua.globals());
            let loaded = lua
                .load(chunk.as_bytes().to_vec())
                .set_name(name)
                .set_mode(ChunkMode::Text)
                .set_environment(env)
                .into_function();
            match loaded {
                Ok(function) => Ok((Value::Function(function), Value::Nil)),
                Err(err) => Ok((Value::Nil, Value::String(lua.create_string(error_text(&err))?))),
            }
        },
    )?;
    globals.raw_set("load", load)
}

fn install_collectgarbage(lua: &Lua, globals: &Table) -> mlua::Result<()> {
    let collectgarbage = lua.create_function(|lua, option: Option<String>| match option.as_deref() {
        Some("count") => Ok(lua.used_memory() as f64 / 1024.0),
        Some(other) => Err(mlua::Error::runtime(format!(
            "collectgarbage: option '{other}' is not allowed (only \"count\")"
        ))),
        None => Err(mlua::Error::runtime(
            "collectgarbage: only collectgarbage(\"count\") is allowed",
        )),
    })?;
    globals.raw_set("collectgarbage", collectgarbage)
}

/// Wraps `pcall`, `xpcall` and `coroutine.resume` so a trip or an out-of-memory error
/// cannot be caught and ignored, and `coroutine.create`/`wrap` so new coroutines are hooked. The wrappers are Lua closures, so callbacks can still
/// yield (wait on the exchange) inside a `pcall`.
fn install_protected_calls(lua: &Lua, globals: &Table, guard: &Rc<Guard>) -> mlua::Result<()> {
    // The host's own callback trampoline uses the unwrapped `xpcall` (trips are seen through the guard).
    lua.set_named_registry_value(RAW_XPCALL, globals.raw_get::<Value>("xpcall")?)?;
    let check = {
        let guard = guard.clone();
        lua.create_function(move |_, results: MultiValue| limits::protected_result(&guard, results))?
    };
    // Coroutines the script creates carry the instruction hook from their start (see `limits`).
    let hook_coroutine = {
        let guard = guard.clone();
        lua.create_function(move |_, thread: Thread| {
            guard.hook_coroutine(&thread);
            Ok(())
        })?
    };
    let hook_running = {
        let guard = guard.clone();
        lua.create_function(move |lua, ()| guard.hook_running(lua))?
    };
    lua.load(
        r#"
        local check, raw_pcall, raw_xpcall, co, hook_coroutine, hook_running = ...
        local raw_resume, raw_close, create, wrap, type = co.resume, co.close, co.create, co.wrap, type
        pcall = function(...) return check(raw_pcall(...)) end
        xpcall = function(f, handler, ...)
            return check(raw_xpcall(f, function(e) check(false, e) return handler(e) end, ...))
        end
        co.resume = function(...) return check(raw_resume(...)) end
        co.close = function(...) return check(raw_close(...)) end
        co.create = function(f)
            local thread = create(f)
            hook_coroutine(thread)
            return thread
        end
        co.wrap = function(f)
            if type(f) ~= "function" then return wrap(f) end
            return wrap(function(...)
                hook_running()
                return f(...)
            end)
        end
        "#,
    )
    .set_name("=sandbox")
    .call::<()>((
        check,
        globals.raw_get::<Value>("pcall")?,
        globals.raw_get::<Value>("xpcall")?,
        globals.raw_get::<Table>("coroutine")?,
        hook_coroutine,
        hook_running,
    ))
}

/// `setmetatable` without finalizers: Lua runs `__gc` with the instruction hook switched off
/// (also while the VM closes), so one that never returns would hang shutdown, `runner check` and
/// reloads. Only a metatable that has `__gc` when it is set makes an object finalizable, so
/// refusing it here is enough.
fn install_setmetatable(lua: &Lua, globals: &Table) -> mlua::Result<()> {
    let native: mlua::Function = globals.raw_get("setmetatable")?;
    let refuse = lua.create_function(|lua, ()| -> mlua::Result<()> {
        Err(mlua::Error::runtime(format!(
            "{}setmetatable: __gc finalizers are not allowed in strategies (use on_stop to clean up)",
            super::api::location(lua)
        )))
    })?;
    let wrapped: mlua::Function = lua
        .load(
            r#"
            local native, refuse, type, rawget = ...
            return function(t, mt)
                if type(mt) == "table" and rawget(mt, "__gc") ~= nil then refuse() end
                return native(t, mt)
            end
            "#,
        )
        .set_name("=sandbox")
        .call((
            native,
            refuse,
            globals.raw_get::<Value>("type")?,
            globals.raw_get::<Value>("rawget")?,
        ))?;
    globals.raw_set("setmetatable", wrapped)
}

/// Wraps `table` in a read-only proxy: reads and `pairs` see it, writes raise.
pub fn read_only(lua: &Lua, name: &str, table: Table) -> mlua::Result<Table> {
    let proxy = lua.create_table()?;
    let meta = lua.create_table_with_capacity(0, 4)?;
    let module = name.to_owned();
    meta.raw_set(
        "__newindex",
        lua.create_function(move |_, (_, key): (Value, Value)| -> mlua::Result<()> {
            let key = key.to_string().unwrap_or_default();
            Err(mlua::Error::runtime(format!(
                "{module} is read-only (cannot set '{key}')"
            )))
        })?,
    )?;
    let next: mlua::Function = lua.globals().raw_get("next")?;
    let inner = table.clone();
    meta.raw_set(
        "__pairs",
        lua.create_function(move |_, _: Value| Ok((next.clone(), inner.clone(), Value::Nil)))?,
    )?;
    meta.raw_set("__index", table)?;
    meta.raw_set("__metatable", false)?;
    proxy.set_metatable(Some(meta))?;
    Ok(proxy)
}

/// The message of a Lua error without mlua's decorations: for syntax and runtime errors
/// this starts with `file:line:` when Lua knew where it happened.
pub fn error_text(err: &mlua::Error) -> String {
    match err {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(message) | mlua::Error::MemoryError(message) => message.clone(),
        mlua::Error::CallbackError { cause, .. } => error_text(cause),
        mlua::Error::WithContext { cause, .. } => error_text(cause),
        other => other.to_string(),
    }
}
