-- Hostile as a crowd: the test runs twenty copies of this file (distinct file names, so
-- distinct strategy names) in one process, each polling in a loop that never stops.
local SYMBOLS = { "BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT" }

local function report()
  local mine = ledger.status().mine
  log.info("swarm mine weight=%d total_weight=%d", mine.weight, mine.total_weight)
end

return {
  on_start = function() timer.after(1, "poll") end,
  on_timer = function()
    local calls = 0
    while true do
      market.ticker(SYMBOLS[calls % #SYMBOLS + 1])
      calls = calls + 1
      if calls % 25 == 0 then report() end
    end
  end,
  on_stop = report,
}
