//! `ledger`: the shared rate-limit ledger's view, with this strategy's own usage.

use std::rc::Rc;

use mlua::Lua;

use super::convert::ledger_table;
use super::{host_function, publish, ApiCtx};
use crate::exchange::MarketSavings;

pub fn register(lua: &Lua, ctx: &Rc<ApiCtx>) -> mlua::Result<()> {
    let m = lua.create_table()?;
    m.raw_set(
        "status",
        host_function(lua, ctx, "ledger.status", |lua, c, _| {
            let strategy = c.strategy();
            let table = ledger_table(lua, &c.venue.ledger_status(&strategy))?;
            // What market-data coalescing saved, composed here: the ledger knows nothing of it.
            let mut mine = MarketSavings::default();
            let mut total = MarketSavings::default();
            for (name, savings) in c.venue.market_savings() {
                if name == strategy {
                    mine = savings;
                }
                total.add(&savings);
            }
            table.raw_set("market_data", savings_table(lua, &mine)?)?;
            table.raw_set("market_data_total", savings_table(lua, &total)?)?;
            Ok(table)
        })?,
    )?;
    publish(lua, "ledger", m)
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
