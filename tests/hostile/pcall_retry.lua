-- Hostile: turns every failure into a Lua error, catches it with pcall and retries at once.
local function must(value, err)
  if value == nil then error(err) end
  return value
end

return {
  name = "pcall_retry",
  symbols = { "ETHUSDT" },
  on_start = function() timer.after(1, "retry") end,
  on_timer = function()
    local ok_count, caught = 0, 0
    while true do
      local ok = pcall(function()
        must(market.ticker("ETHUSDT"))
        must(market.depth("ETHUSDT", 100))
      end)
      if ok then ok_count = ok_count + 1 else caught = caught + 1 end
      if (ok_count + caught) % 20 == 0 then log.info("pcall_retry ok=%d caught=%d", ok_count, caught) end
    end
  end,
}
