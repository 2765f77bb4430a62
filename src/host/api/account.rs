//! `account`: the account's balances, from the venue's account state (free).

use std::rc::Rc;

use mlua::Lua;

use super::convert::balances_table;
use super::{publish, ApiCtx};

pub fn register(lua: &Lua, ctx: &Rc<ApiCtx>) -> mlua::Result<()> {
    let m = lua.create_table()?;
    let c = ctx.clone();
    m.raw_set(
        "balances",
        lua.create_function(move |lua, ()| {
            c.guard.check()?;
            balances_table(lua, &c.venue.balances())
        })?,
    )?;
    publish(lua, "account", m)
}
