-- Hostile: the heaviest market-data call (weight 250) in a loop that never returns.
return {
  name = "depth_loop",
  symbols = { "BTCUSDT" },
  on_start = function() timer.after(1, "spin") end,
  on_timer = function()
    local got, failed = 0, 0
    while true do
      local d = market.depth("BTCUSDT", 5000)
      if d then got = got + 1 else failed = failed + 1 end
      if (got + failed) % 5 == 0 then log.info("depth_loop got=%d failed=%d", got, failed) end
    end
  end,
}
