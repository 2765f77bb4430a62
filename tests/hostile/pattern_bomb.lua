-- Hostile: a backtracking pattern on a long subject, retried forever inside pcall. Lua's own matcher
-- would run for hours in one call, out of reach of the instruction hook.
local subject = string.rep("a", 200000)

return {
  on_start = function() timer.every(10, "bomb") end,
  on_timer = function()
    while true do
      pcall(string.find, subject, ".-.-.-.-.-b")
    end
  end,
}
