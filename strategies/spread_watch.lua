-- strategies/spread_watch.lua: buys a little BTC when the BTCUSDT spread is unusually tight, and logs each buy.
local book = require("book")                 -- stdlib/book.lua: mid, spread, microprice, ...
state.buys = state.buys or 0                 -- `state` survives hot reloads and restarts

return {
  symbols = { "BTCUSDT" },
  streams = { "book" },                      -- best bid/ask pushed to on_book
  on_book = function(q)                      -- q = {symbol, bid, bid_qty, ask, ask_qty, update_id, time}
    local bps = book.spread_bps(q)           -- nil while a side of the book is empty
    if bps and bps < 2.5 and state.buys < 3 then
      local order, err = orders.place{ symbol = "BTCUSDT", side = "BUY", type = "LIMIT",
                                       price = q.ask, quantity = 0.001, tif = "IOC" }
      if not order then log.warn("not placed: %s", tostring(err)) return end
      state.buys = state.buys + 1
      log.info("spread %.2f bps: bought %.5f at %.2f", bps, order.filled_qty, q.ask)
    end
  end,
}
