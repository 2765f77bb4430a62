//! `log`: `string.format`-style logging, tagged with the strategy's name.

use std::rc::Rc;

use mlua::{Function, Lua, MultiValue, Table, Value};

use super::{host_function, publish, usage, ApiCtx};

#[derive(Clone, Copy)]
enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

pub fn register(lua: &Lua, ctx: &Rc<ApiCtx>) -> mlua::Result<()> {
    let string: Table = lua.globals().raw_get("string")?;
    let format: Function = string.raw_get("format")?;
    let m = lua.create_table()?;
    for (name, func, level) in [
        ("debug", "log.debug", Level::Debug),
        ("info", "log.info", Level::Info),
        ("warn", "log.warn", Level::Warn),
        ("error", "log.error", Level::Error),
    ] {
        let format = format.clone();
        m.raw_set(
            name,
            host_function(lua, ctx, func, move |lua, c, args| {
                let line = render(lua, &format, args.into_values())?;
                let strategy = c.strategy();
                match level {
                    Level::Debug => tracing::debug!(strategy = %strategy, "{line}"),
                    Level::Info => tracing::info!(strategy = %strategy, "{line}"),
                    Level::Warn => tracing::warn!(strategy = %strategy, "{line}"),
                    Level::Error => tracing::error!(strategy = %strategy, "{line}"),
                }
                Ok(())
            })?,
        )?;
    }
    publish(lua, "log", m)
}

/// `string.format(fmt, ...)` when the first argument is a string, else the values' `tostring`s.
fn render(lua: &Lua, format: &Function, args: MultiValue) -> mlua::Result<String> {
    match args.front() {
        Some(Value::String(_)) if args.len() > 1 => format
            .call::<String>(args)
            .map_err(|err| usage(lua, format!("log: {}", crate::host::sandbox::error_text(&err)))),
        Some(Value::String(s)) => Ok(s.to_string_lossy()),
        _ => Ok(crate::host::sandbox::tab_joined(&args)),
    }
}
