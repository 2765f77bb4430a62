//! `timer`: named timers owned by the host (they survive hot reloads) that call `on_timer(name)`.

use std::rc::Rc;
use std::time::Duration;

use mlua::Lua;

use super::{host_function, publish, usage, ApiCtx};
use crate::host::timers::TimerOp;

/// Shortest period accepted, so a typo cannot turn a timer into a busy loop.
const MIN_PERIOD: Duration = Duration::from_millis(1);

pub fn register(lua: &Lua, ctx: &Rc<ApiCtx>) -> mlua::Result<()> {
    let m = lua.create_table()?;
    for (name, func, repeat) in [("every", "timer.every", true), ("after", "timer.after", false)] {
        m.raw_set(
            name,
            host_function(lua, ctx, func, move |lua, c, args| {
                let ms = args.number(lua, 0, "ms")?;
                let timer = args.string(lua, 1, "name")?;
                if !ms.is_finite() || ms < 0.0 || (repeat && Duration::from_secs_f64(ms / 1000.0) < MIN_PERIOD) {
                    return Err(usage(lua, format!("{func}: ms must be a number ≥ 1, got {ms}")));
                }
                let period = Duration::from_secs_f64(ms / 1000.0);
                c.timers.apply(if repeat {
                    TimerOp::Every(period, timer.into())
                } else {
                    TimerOp::After(period, timer.into())
                });
                Ok(())
            })?,
        )?;
    }
    m.raw_set(
        "cancel",
        host_function(lua, ctx, "timer.cancel", |lua, c, args| {
            let timer = args.string(lua, 0, "name")?;
            c.timers.apply(TimerOp::Cancel(timer.into()));
            Ok(())
        })?,
    )?;
    publish(lua, "timer", m)
}
