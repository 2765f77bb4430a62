-- Hostile: tries to register a million timers and to keep a million coroutines waiting on the exchange.
return {
  on_start = function()
    local made = 0
    for i = 1, 1000000 do
      if not pcall(timer.every, 60000, "t" .. i) then break end
      made = made + 1
    end
    local refused = 0
    for _ = 1, 2000 do
      local co = coroutine.create(function() return market.depth("BTCUSDT", 5000) end)
      local ok = coroutine.resume(co)
      if not ok then refused = refused + 1 end
    end
    log.info("timer_flood timers=%d refused_calls=%d", made, refused)
  end,
}
