local T = require("assert")
local fake_host = require("fake_host")
local P = require("paper")

local function setup()
  local h = P.host(fake_host)
  h:load("spread_watch")
  h:start()
  return h
end

return T.run("spread_watch", {
  an_empty_book_side_is_not_an_error = function()
    local h = setup()
    h:quote("BTCUSDT", 0, 0, 60000, 1) -- no bids yet: there is no spread to judge
    h:quote("BTCUSDT", 60000, 1, 0, 0)
    T.eq(#h.placed, 0)
  end,

  buys_at_most_three_times_when_the_spread_is_tight = function()
    local h = setup()
    h:quote("BTCUSDT", 60000, 1, 60100, 1) -- 16.6 bps: too wide
    T.eq(#h.placed, 0)
    for _ = 1, 5 do
      h:quote("BTCUSDT", 60000, 1, 60000.01, 1)
    end
    T.eq(#h.placed, 3)
    T.eq(h.placed[1].price, 60000.01)
    T.eq(state.buys, 3)
    local bought = h:log_lines("info")
    T.eq(#bought, 3)
    T.truthy(bought[1]:find("bought 0.00100 at 60000.01", 1, true), bought[1])
  end,
})
