-- Polls the ticker as fast as the host lets it (weight 2 per call), waiting for budget
-- when the window is full. Logs every failure, the first success after one, and every
-- 25th success, each with the exchange time, so a test can line its output up with the
-- simulator's request log.
local ok, failing = 0, false

return {
  name = "poller",
  symbols = { "BTCUSDT" },
  max_wait_ms = 30000,
  on_start = function() timer.every(10, "poll") end,
  on_timer = function()
    for _ = 1, 5 do
      local t, err = market.ticker("BTCUSDT")
      if t then
        ok = ok + 1
        if failing or ok % 25 == 1 then
          log.info("poll ok n=%d at=%d", ok, clock.now())
        end
        failing = false
      else
        failing = true
        log.info("poll err %s retry_after=%d at=%d", err.code, err.retry_after_ms or -1, clock.now())
        return
      end
    end
  end,
}
