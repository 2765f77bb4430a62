-- Hostile: place then cancel at once, over and over, and bulk-cancel in between.
local SYMBOL = "ETHUSDT"

return {
  name = "cancel_storm",
  symbols = { SYMBOL },
  on_start = function() timer.after(1, "storm") end,
  on_timer = function()
    local price = market.round_price(SYMBOL, 1000)
    local qty = market.round_qty(SYMBOL, 0.01)
    local cycles, cancelled = 0, 0
    while true do
      local o = orders.place { symbol = SYMBOL, side = "BUY", type = "LIMIT", price = price, quantity = qty }
      if o and o.id then
        if orders.cancel(SYMBOL, o.id) then cancelled = cancelled + 1 end
        -- Cancelling what is already gone, on purpose.
        orders.cancel(SYMBOL, o.id)
      end
      orders.cancel_all(SYMBOL)
      orders.cancel_all(SYMBOL)
      cycles = cycles + 1
      if cycles % 10 == 0 then log.info("cancel_storm cycles=%d cancelled=%d", cycles, cancelled) end
    end
  end,
}
