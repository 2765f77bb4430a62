-- Hostile: grabs memory every way Lua allows, keeps what it got, and tries again after each refusal.
local hoard = {}
local attempts, refused = 0, 0

local grabs = {
  function()
    local t = {}
    for i = 1, 1e9 do
      t[i] = string.rep("x", 1024) .. i
    end
    return t
  end,
  function() return string.rep("x", 1 << 40) end,
  function() hoard[#hoard + 1] = string.rep("y", 8 << 20) end,
  function() hoard[#hoard + 1] = table.concat(hoard) end,
}

return {
  on_start = function() timer.every(10, "grab") end,
  on_timer = function()
    attempts = attempts + 1
    if not pcall(grabs[attempts % #grabs + 1]) then
      refused = refused + 1
    end
    pcall(log.info, "memory_bomb attempts=%d refused=%d kept=%d", attempts, refused, #hoard)
  end,
}
