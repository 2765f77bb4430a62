local T = require("assert")
local fake_host = require("fake_host")
local P = require("paper")

local function setup()
  local h = P.host(fake_host)
  h:load("grid")
  h:start()
  P.quote(h, "ETHUSDT", 3000)
  return h
end

local function level(k)
  return math.floor(3000 * 1.004 ^ k * 100 + 0.5) / 100
end

return T.run("grid", {
  lays_out_buys_below_and_sells_above = function()
    local h = setup()
    T.eq(#h.placed, 10)
    local buys, sells = 0, 0
    for _, r in ipairs(h.placed) do
      T.eq(r.type, "LIMIT")
      T.eq(r.quantity, 0.05)
      if r.side == "BUY" then
        buys = buys + 1
        T.truthy(r.price < 3000, "buy below the center")
      else
        sells = sells + 1
        T.truthy(r.price > 3000, "sell above the center")
      end
    end
    T.eq(buys, 5)
    T.eq(sells, 5)
    T.eq(h.placed[1].price, level(-1))
    T.eq(h.placed[2].price, level(1))
    T.eq(h.placed[9].price, level(-5))
  end,

  a_filled_buy_is_followed_by_a_sell_one_level_up_and_back = function()
    local h = setup()
    P.quote(h, "ETHUSDT", 2985) -- the ask (2985.30) goes through the level -1 buy at 2988.05
    T.eq(#h.placed, 11)
    T.eq(h.placed[11].side, "SELL")
    T.eq(h.placed[11].price, 3000)
    P.quote(h, "ETHUSDT", 3001) -- the bid (3000.69) goes through that sell
    T.eq(#h.placed, 12)
    T.eq(h.placed[12].side, "BUY")
    T.eq(h.placed[12].price, level(-1))
    T.eq(state.round_trips, 1)
    -- bought 0.05 at 2988.05, sold 0.05 at 3000, fees 0.1 % of what was received each time
    T.near(state.pos.quote, 0.05 * 3000 * 0.999 - 0.05 * 2988.05, 1e-9)
    T.eq(#orders.open("ETHUSDT"), 10)
  end,

  orders_that_cannot_be_placed_are_retried_after_the_pause = function()
    local h = setup()
    h.fail_next = fake_host.err("rate_limited", "no budget", { retry_after_ms = 3000 })
    P.quote(h, "ETHUSDT", 2985)
    T.eq(#orders.open("ETHUSDT"), 9)
    T.eq(#state.grid.todo, 1)
    h:advance(3000) -- the repair timer (every 5 s) runs after the pause
    T.eq(#orders.open("ETHUSDT"), 9)
    h:advance(2000)
    T.eq(#orders.open("ETHUSDT"), 10)
    T.eq(#state.grid.todo, 0)
  end,

  reload_keeps_the_grid = function()
    local h = setup()
    h:reload("grid")
    P.quote(h, "ETHUSDT", 3000)
    T.eq(#h.placed, 10)
    T.truthy(h.timers.repair)
  end,

  stopping_cancels_the_grid = function()
    local h = setup()
    h:call("on_stop", "shutdown")
    T.eq(#orders.open("ETHUSDT"), 0)
    T.is_nil(state.grid)
  end,
})
