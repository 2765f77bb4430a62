//! `ledger`: the shared rate-limit ledger's view, with this strategy's own usage.

use std::rc::Rc;

use mlua::Lua;

use super::convert::ledger_table;
use super::{host_function, publish, ApiCtx};

pub fn register(lua: &Lua, ctx: &Rc<ApiCtx>) -> mlua::Result<()> {
    let m = lua.create_table()?;
    m.raw_set(
        "status",
        host_function(lua, ctx, "ledger.status", |lua, c, _| {
            ledger_table(lua, &c.venue.ledger_status(&c.strategy()))
        })?,
    )?;
    publish(lua, "ledger", m)
}
