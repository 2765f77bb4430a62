-- The neighbour of the sandbox attacks: a steady timer and market data, each counted and logged.
local ticks, books = 0, 0

return {
  symbols = { "BTCUSDT" },
  on_start = function() timer.every(100, "tick") end,
  on_timer = function()
    ticks = ticks + 1
    log.info("benign tick=%d books=%d", ticks, books)
  end,
  on_book = function() books = books + 1 end,
  on_stop = function() log.info("benign final ticks=%d books=%d", ticks, books) end,
}
