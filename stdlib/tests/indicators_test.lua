local T = require("assert")
local ind = require("indicators")

local function feed(indicator, values)
  local last
  for _, v in ipairs(values) do
    last = indicator:update(v)
  end
  return last
end

return T.run("indicators", {
  sma_warms_up_then_slides = function()
    local s = ind.sma(3)
    T.is_nil(s:update(1))
    T.is_nil(s:update(2))
    T.eq(s:ready(), false)
    T.eq(s:update(3), 2)
    T.eq(s:update(4), 3)
    T.eq(s:update(8), 5)
    T.eq(s:value(), 5)
    T.eq(s:ready(), true)
  end,

  sma_does_not_drift_over_a_long_run = function()
    local s = ind.sma(10)
    for i = 1, 200000 do
      s:update(0.1 * (i % 7) + 60000)
    end
    -- the last 10 values are i = 199991..200000; recompute the mean directly
    local sum = 0
    for i = 199991, 200000 do
      sum = sum + 0.1 * (i % 7) + 60000
    end
    T.near(s:value(), sum / 10, 1e-9)
  end,

  ema_is_seeded_with_the_sma = function()
    local e = ind.ema(3) -- alpha = 0.5
    T.is_nil(e:update(1))
    T.is_nil(e:update(2))
    T.eq(e:update(3), 2) -- seed: mean of 1, 2, 3
    T.eq(e:update(4), 3) -- 2 + 0.5 * (4 - 2)
    T.eq(e:update(6), 4.5)
    T.eq(e:ready(), true)
  end,

  ema_of_one_follows_the_input = function()
    local e = ind.ema(1)
    T.eq(e:update(5), 5)
    T.eq(e:update(7), 7)
  end,

  rsi_matches_a_hand_computed_series = function()
    -- changes +1, -0.5, +1: avg gain 2/3, avg loss 1/6, RS 4, RSI 80
    local r = ind.rsi(3)
    T.is_nil(r:update(10))
    T.is_nil(r:update(11))
    T.is_nil(r:update(10.5))
    T.near(r:update(11.5), 80, 1e-12)
    -- change -0.5, Wilder: gain (2/3*2 + 0)/3 = 4/9, loss (1/6*2 + 0.5)/3 = 5/18, RS 8/5, RSI 100 - 100/2.6
    T.near(r:update(11), 100 - 100 / 2.6, 1e-12)
  end,

  rsi_matches_the_classic_14_period_table = function()
    local prices = { 44.34, 44.09, 44.15, 43.61, 44.33, 44.83, 45.10, 45.42, 45.84, 46.08, 45.89, 46.03, 45.61,
      46.28, 46.28, 46.00, 46.03, 46.41, 46.22, 45.64 }
    local expected = { 70.4641350211, 66.2496185536, 66.4809418347, 69.3468531629, 66.2947126589, 57.9150206701 }
    local r = ind.rsi(14)
    local got = {}
    for _, p in ipairs(prices) do
      local v = r:update(p)
      if v then
        got[#got + 1] = v
      end
    end
    T.eq(#got, #expected)
    for i = 1, #expected do
      T.near(got[i], expected[i], 1e-9, "value " .. i)
    end
  end,

  rsi_edges = function()
    T.eq(feed(ind.rsi(2), { 1, 2, 3, 4 }), 100) -- only gains
    T.eq(feed(ind.rsi(2), { 4, 3, 2, 1 }), 0) -- only losses
    T.eq(feed(ind.rsi(2), { 5, 5, 5 }), 50) -- nothing moved
  end,

  vwap_cumulative = function()
    local v = ind.vwap()
    T.is_nil(v:value())
    T.is_nil(v:update(100, 0)) -- no volume, no price
    T.eq(v:update(100, 1), 100)
    T.eq(v:update(110, 3), 107.5) -- (100 + 330) / 4
    T.eq(v:ready(), true)
    v:reset()
    T.is_nil(v:value())
    T.eq(v:update(50, 2), 50)
  end,

  vwap_windowed_forgets_old_samples = function()
    local v = ind.vwap(2)
    v:update(100, 1)
    v:update(110, 1)
    T.eq(v:value(), 105)
    T.eq(v:update(120, 2), (110 + 240) / 3)
    T.raises(function()
      v:update(1, -1)
    end, "volume must not be negative")
  end,

  bollinger_on_constant_input_has_zero_width = function()
    for _, c in ipairs({ 0.1, 60000.12, 1e-7 }) do
      local b = ind.bollinger(20, 2)
      for _ = 1, 500 do
        b:update(c)
      end
      local mid, upper, lower = b:value()
      T.eq(mid, c, "mid of constant " .. c)
      T.eq(upper, c, "upper of constant " .. c)
      T.eq(lower, c, "lower of constant " .. c)
      T.eq(b:stddev(), 0)
      T.is_nil(b:percent_b(c)) -- a band without width has no position
    end
  end,

  bollinger_known_values = function()
    local b = ind.bollinger(4, 2)
    T.is_nil(b:update(2))
    b:update(4)
    b:update(4)
    local mid, upper, lower = b:update(6) -- mean 4, population variance (4 + 0 + 0 + 4) / 4 = 2
    T.near(mid, 4, 1e-12)
    T.near(upper, 4 + 2 * math.sqrt(2), 1e-12)
    T.near(lower, 4 - 2 * math.sqrt(2), 1e-12)
    T.near(b:percent_b(4), 0.5, 1e-12)
    -- slide: window 4, 4, 6, 8 -> mean 5.5, variance (2.25 + 2.25 + 0.25 + 6.25) / 4 = 2.75
    mid, upper = b:update(8)
    T.near(mid, 5.5, 1e-12)
    T.near(upper, 5.5 + 2 * math.sqrt(2.75), 1e-12)
  end,

  bollinger_stays_accurate_at_high_prices = function()
    local b = ind.bollinger(3, 1)
    for i = 1, 100000 do
      b:update(60000 + (i % 3) * 0.01)
    end
    -- the window always holds 60000.00, .01, .02 in some order: sd = sqrt(2/3) * 0.01
    T.near(b:stddev(), math.sqrt(2 / 3) * 0.01, 1e-9)
  end,

  bad_arguments_raise = function()
    T.raises(function()
      ind.sma(0)
    end, "period must be a positive integer")
    T.raises(function()
      ind.ema(2.5)
    end, "period must be a positive integer")
    T.raises(function()
      ind.sma(3):update("x")
    end, "expected a number")
  end,
})
