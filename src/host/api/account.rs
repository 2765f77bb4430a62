//! `account`: the account's balances, from the venue's account state (free).

use std::rc::Rc;

use mlua::Lua;

use super::convert::balances_table;
use super::{host_function, publish, ApiCtx};

pub fn register(lua: &Lua, ctx: &Rc<ApiCtx>) -> mlua::Result<()> {
    let m = lua.create_table()?;
    m.raw_set(
        "balances",
        host_function(lua, ctx, "account.balances", |lua, c, _| {
            balances_table(lua, &c.venue.balances_of(&c.strategy()))
        })?,
    )?;
    publish(lua, "account", m)
}
