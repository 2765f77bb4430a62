-- The same strategy after a restart: it places nothing, reports what the ledger restored
-- and every order event the host brings it.
local function pool(kind, unit, num)
  for _, p in ipairs(ledger.status().pools) do
    if p.type == kind and p.interval == unit and p.interval_num == num then return p end
  end
end

return {
  name = "keeper",
  symbols = { "BTCUSDT" },
  on_start = function()
    local p = pool("RAW_REQUESTS", "DAY", 1)
    log.info("restored raw_1d_used=%d", p and p.used or -1)
    for _, o in ipairs(orders.open("BTCUSDT")) do
      log.info("open after restart %s %s", o.client_id, o.status)
    end
  end,
  on_order = function(o)
    log.info("on_order %s %s", o.client_id, o.status)
  end,
}
