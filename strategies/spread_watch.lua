-- strategies/spread_watch.lua: logs the BTCUSDT spread and buys a little when it is unusually tight.
local book = require("book")                 -- stdlib/book.lua: mid, spread, microprice, ...
state.buys = state.buys or 0                 -- `state` survives hot reloads and restarts

return {
  symbols = { "BTCUSDT" },
  streams = { "book" },                      -- best bid/ask pushed to on_book
  on_book = function(q)                      -- q = {symbol, bid, bid_qty, ask, ask_qty, update_id, time}
    if book.spread_bps(q) < 2.5 and state.buys < 3 then
      local order, err = orders.place{ symbol = "BTCUSDT", side = "BUY", type = "LIMIT",
                                       price = q.ask, quantity = 0.001, tif = "IOC" }
      if order then state.buys = state.buys + 1 else log.warn("not placed: %s", tostring(err)) end
    end
  end,
}
