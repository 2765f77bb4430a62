//! `clock`: exchange-synchronised time.

use std::rc::Rc;

use mlua::Lua;

use super::{host_function, publish, ApiCtx};

pub fn register(lua: &Lua, ctx: &Rc<ApiCtx>) -> mlua::Result<()> {
    let m = lua.create_table()?;
    m.raw_set(
        "now",
        host_function(lua, ctx, "clock.now", |_, c, _| Ok(c.venue.now_ms()))?,
    )?;
    publish(lua, "clock", m)
}
