//! `ledger`: the shared rate-limit ledger's view, with this strategy's own usage and the venue's
//! circuit breakers (composed here: the ledger knows nothing of the exchange).

use std::rc::Rc;

use mlua::{Lua, Table};

use super::convert::{breakers_table, ledger_table};
use super::{host_function, publish, ApiCtx};
use crate::exchange::MarketSavings;
use crate::host::stats::Stats;

pub fn register(lua: &Lua, ctx: &Rc<ApiCtx>) -> mlua::Result<()> {
    let m = lua.create_table()?;
    m.raw_set(
        "status",
        host_function(lua, ctx, "ledger.status", |lua, c, _| {
            let strategy = c.strategy();
            let status = ledger_table(lua, &c.venue.ledger_status(&strategy))?;
            status.raw_set("events", events_table(lua, &c.stats)?)?;
            status.raw_set("breakers", breakers_table(lua, &c.venue.breakers())?)?;
            // What market-data coalescing saved, composed here: the ledger knows nothing of it.
            let mut mine = MarketSavings::default();
            let mut total = MarketSavings::default();
            for (name, savings) in c.venue.market_savings() {
                if name == strategy {
                    mine = savings;
                }
                total.add(&savings);
            }
            status.raw_set("market_data", savings_table(lua, &mine)?)?;
            status.raw_set("market_data_total", savings_table(lua, &total)?)?;
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

/// `{calls, requests_sent, requests_saved, weight_saved, joined, cache_hits, stream_hits, stale_served, hit_rate}`
fn savings_table(lua: &Lua, savings: &MarketSavings) -> mlua::Result<mlua::Table> {
    let table = lua.create_table_with_capacity(0, 9)?;
    table.raw_set("calls", savings.calls)?;
    table.raw_set("requests_sent", savings.requests_sent)?;
    table.raw_set("requests_saved", savings.requests_saved())?;
    table.raw_set("weight_saved", savings.weight_saved)?;
    table.raw_set("joined", savings.joined)?;
    table.raw_set("cache_hits", savings.cache_hits)?;
    table.raw_set("stream_hits", savings.stream_hits)?;
    table.raw_set("stale_served", savings.stale_served)?;
    table.raw_set("hit_rate", savings.hit_rate())?;
    Ok(table)
}
