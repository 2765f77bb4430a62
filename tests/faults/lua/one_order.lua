-- Wants exactly one resting BTCUSDT buy. It places it once the bid passes 100000 (the
-- test moves the price there after injecting a fault), never re-sends an order whose
-- outcome is unknown, and only tries again, under a new client id, once `on_order` says
-- the first attempt was REJECTED.
local placing = false

local function place(client_id, bid)
  local price = market.round_price("BTCUSDT", bid * 0.8)
  local o, err = orders.place {
    symbol = "BTCUSDT", side = "BUY", type = "LIMIT",
    quantity = 0.001, price = price, client_id = client_id,
  }
  if o then
    log.info("place %s -> %s", client_id, o.status)
  else
    log.info("place %s -> error %s", client_id, err.code)
  end
end

return {
  name = "one_order",
  symbols = { "BTCUSDT" },
  streams = { "book" },
  order_wait_ms = 5000,
  on_start = function() log.info("one_order ready") end,
  on_book = function(q)
    if placing or q.bid < 100000 then return end
    placing = true
    place("faults-1", q.bid)
  end,
  on_order = function(o)
    log.info("on_order %s %s", o.client_id, o.status)
    if o.client_id == "faults-1" and o.status == "REJECTED" then
      local q = market.quote("BTCUSDT")
      place("faults-2", q.bid)
    end
  end,
}
