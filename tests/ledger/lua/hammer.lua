-- Hostile: the order book (limit 500: weight 25; a test may substitute another limit) in a
-- loop that never returns, as fast as the host lets it. Logs the first success and every
-- 20th with the exchange time, and every error; after an error it waits as long as it was
-- told (so a back-off is not a busy loop).
local DEPTH_LIMIT = 500
local got, failed = 0, 0

local function spin()
  while true do
    local d, err = market.depth("BTCUSDT", DEPTH_LIMIT)
    if d then
      got = got + 1
      if got % 20 == 1 then
        log.info("hammer got=%d failed=%d at=%d", got, failed, clock.now())
      end
    else
      failed = failed + 1
      log.info("hammer err %s retry_after=%d at=%d", err.code, err.retry_after_ms or -1, clock.now())
      timer.after(math.max(err.retry_after_ms or 0, 10), "spin")
      return
    end
  end
end

return {
  name = "hammer",
  symbols = { "BTCUSDT" },
  max_wait_ms = 30000,
  on_start = function() timer.after(1, "spin") end,
  on_timer = spin,
}
