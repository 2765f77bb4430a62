//! `timer`: named timers owned by the host (they survive hot reloads) that call `on_timer(name)`.

use std::rc::Rc;
use std::time::Duration;

use mlua::Lua;

use super::{duration_ms, host_function, publish, usage, ApiCtx};
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
                let period = duration_ms(args.get(0)).map_err(|err| usage(lua, format!("{func}: ms: {err}")))?;
                if repeat && period < MIN_PERIOD {
                    return Err(usage(lua, format!("{func}: ms must be a number ≥ 1, got {ms}")));
                }
                c.timers
                    .apply(if repeat {
                        TimerOp::Every(period, timer.into())
                    } else {
                        TimerOp::After(period, timer.into())
                    })
                    .map_err(|err| usage(lua, format!("{func}: {err}")))
            })?,
        )?;
    }
    m.raw_set(
        "cancel",
        host_function(lua, ctx, "timer.cancel", |lua, c, args| {
            let timer = args.string(lua, 0, "name")?;
            c.timers
                .apply(TimerOp::Cancel(timer.into()))
                .map_err(|err| usage(lua, format!("timer.cancel: {err}")))
        })?,
    )?;
    publish(lua, "timer", m)
}
