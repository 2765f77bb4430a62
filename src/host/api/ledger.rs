//! `ledger`: the shared rate-limit ledger's view, with this strategy's own usage and the venue's
//! circuit breakers (composed here: the ledger knows nothing of the exchange).

use std::rc::Rc;

use mlua::Lua;

use super::convert::{breakers_table, ledger_table};
use super::{host_function, publish, ApiCtx};

pub fn register(lua: &Lua, ctx: &Rc<ApiCtx>) -> mlua::Result<()> {
    let m = lua.create_table()?;
    m.raw_set(
        "status",
        host_function(lua, ctx, "ledger.status", |lua, c, _| {
            let table = ledger_table(lua, &c.venue.ledger_status(&c.strategy()))?;
            table.raw_set("breakers", breakers_table(lua, &c.venue.breakers())?)?;
            Ok(table)
        })?,
    )?;
    publish(lua, "ledger", m)
}
