-- Hostile: as many long log lines as the CPU limit allows, on every tick.
local line = string.rep("flood ", 1000)

return {
  on_start = function() timer.every(1, "flood") end,
  on_timer = function()
    for _ = 1, 100000 do
      log.info(line)
    end
  end,
}
