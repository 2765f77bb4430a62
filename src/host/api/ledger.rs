//! `ledger`: the shared rate-limit ledger's view, with this strategy's own usage and the venue's
//! circuit breakers (composed here: the ledger knows nothing of the exchange).

use std::rc::Rc;

use mlua::{Lua, Table};

use super::convert::{breakers_table, ledger_table};
use super::{host_function, publish, ApiCtx};
use crate::host::stats::Stats;

pub fn register(lua: &Lua, ctx: &Rc<ApiCtx>) -> mlua::Result<()> {
    let m = lua.create_table()?;
    m.raw_set(
        "status",
        host_function(lua, ctx, "ledger.status", |lua, c, _| {
            let status = ledger_table(lua, &c.venue.ledger_status(&c.strategy()))?;
            status.raw_set("events", events_table(lua, &c.stats)?)?;
            status.raw_set("breakers", breakers_table(lua, &c.venue.breakers())?)?;
            Ok(status)
        })?,
    )?;
    publish(lua, "ledger", m)
}

/// This strategy's market and host events: pushed to it, handed to its callbacks, and conflated
/// (replaced by a newer one) while it was behind.
fn events_table(lua: &Lua, stats: &Stats) -> mlua::Result<Table> {
    let events = lua.create_table_with_capacity(0, 3)?;
    events.raw_set("received", Stats::get(&stats.events_received))?;
    events.raw_set("delivered", Stats::get(&stats.events_handled))?;
    events.raw_set("conflated", Stats::get(&stats.events_coalesced))?;
    Ok(events)
}
