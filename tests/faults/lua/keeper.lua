-- Places three resting buys below the market and one market buy, then keeps polling the
-- ticker so the ledger has windows to persist. Killed mid-run by the test.
local placed = false

return {
  name = "keeper",
  symbols = { "BTCUSDT" },
  on_start = function() timer.every(10, "tick") end,
  on_timer = function()
    local t = market.ticker("BTCUSDT")
    if placed or not t then return end
    placed = true
    for i = 1, 3 do
      local id = "keep-" .. i
      local o, err = orders.place {
        symbol = "BTCUSDT", side = "BUY", type = "LIMIT", quantity = 0.001,
        price = market.round_price("BTCUSDT", t.price * 0.95), client_id = id,
      }
      log.info("placed %s %s", id, o and o.status or tostring(err))
    end
    local o, err = orders.place {
      symbol = "BTCUSDT", side = "BUY", type = "MARKET", quantity = 0.001, client_id = "keep-m",
    }
    log.info("placed keep-m %s", o and o.status or tostring(err))
  end,
}
