-- Hostile: LIMIT orders far below the market, placed as fast as the host lets it;
-- it cancels them in bulk only so the balance never runs out.
local SYMBOL = "BTCUSDT"

return {
  name = "order_flood",
  symbols = { SYMBOL },
  on_start = function() timer.after(1, "flood") end,
  on_timer = function()
    local placed, refused = 0, 0
    while true do
      local t = market.ticker(SYMBOL)
      local price = t and market.round_price(SYMBOL, t.price * 0.5) or 30000
      local qty = market.round_qty(SYMBOL, 12 / price)
      local o = orders.place { symbol = SYMBOL, side = "BUY", type = "LIMIT", price = price, quantity = qty }
      if o then placed = placed + 1 else refused = refused + 1 end
      if #orders.open(SYMBOL) >= 40 then orders.cancel_all(SYMBOL) end
      if (placed + refused) % 10 == 0 then log.info("order_flood placed=%d refused=%d", placed, refused) end
    end
  end,
}
