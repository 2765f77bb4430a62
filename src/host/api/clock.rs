//! `clock`: exchange-synchronised time.

use std::rc::Rc;

use mlua::Lua;

use super::{publish, ApiCtx};

pub fn register(lua: &Lua, ctx: &Rc<ApiCtx>) -> mlua::Result<()> {
    let m = lua.create_table()?;
    let c = ctx.clone();
    m.raw_set(
        "now",
        lua.create_function(move |_, ()| {
            c.guard.check()?;
            Ok(c.venue.now_ms())
        })?,
    )?;
    publish(lua, "clock", m)
}
