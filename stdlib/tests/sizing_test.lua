local T = require("assert")
local sizing = require("sizing")

local btc = { symbol = "BTCUSDT", tick_size = 0.01, step_size = 0.00001, min_qty = 0.00001, max_qty = 9000,
  min_notional = 5 }
local eth_btc = { symbol = "ETHBTC", tick_size = 0.00001, step_size = 0.0001, min_qty = 0.0001, max_qty = 100000,
  min_notional = 0.0001 }

return T.run("sizing", {
  round_to_step_goes_down_onto_exact_decimals = function()
    T.eq(sizing.round_to_step(0.3, 0.1), 0.3)
    T.eq(sizing.round_to_step(0.1 + 0.2, 0.1), 0.3) -- 0.30000000000000004 is float noise, not a fourth step
    T.eq(sizing.round_to_step(0.29999999, 0.1), 0.2)
    T.eq(sizing.round_to_step(1.23456789, 0.001), 1.234)
    T.eq(sizing.round_to_step(0.0012345, 0.00001), 0.00123)
    T.eq(sizing.round_to_step(17, 5), 15)
    T.eq(sizing.round_to_step(0.7, 0.25), 0.5)
    T.eq(sizing.round_to_step(3 * 0.1, 0.1), 0.3)
    T.eq(sizing.round_to_step(0.00000001 * 7, 0.00000001), 0.00000007)
  end,

  every_multiple_is_exact = function()
    -- n steps of 0.01 must be the double nearest to the decimal n/100, as tonumber would parse it
    for n = 1, 5000 do
      local exact = tonumber(string.format("%d.%02d", n // 100, n % 100))
      T.eq(sizing.round_to_step(n * 0.01, 0.01), exact, "step count " .. n)
      T.eq(sizing.round_to_tick(n * 0.01, 0.01), exact, "tick count " .. n)
    end
  end,

  ceil_and_nearest = function()
    T.eq(sizing.ceil_to_step(0.31, 0.1), 0.4)
    T.eq(sizing.ceil_to_step(0.3, 0.1), 0.3)
    T.eq(sizing.round_to_tick(100.004, 0.01), 100)
    T.eq(sizing.round_to_tick(100.006, 0.01), 100.01)
    T.eq(sizing.round_to_tick(0.07, 0.05), 0.05)
    T.eq(sizing.round_to_tick(0.08, 0.05), 0.1)
  end,

  passive_price_never_crosses = function()
    T.eq(sizing.passive_price(100.019, 0.01, "BUY"), 100.01)
    T.eq(sizing.passive_price(100.011, 0.01, "SELL"), 100.02)
    T.eq(sizing.passive_price(100.01, 0.01, "SELL"), 100.01)
    T.raises(function()
      sizing.passive_price(1, 0.01, "buy")
    end, "side must be")
  end,

  decimals_and_format = function()
    T.eq(sizing.decimals(0.001), 3)
    T.eq(sizing.decimals(1), 0)
    T.eq(sizing.decimals(0.00000001), 8)
    T.eq(sizing.format(0.1 + 0.2, 0.01), "0.30")
  end,

  clamp_qty = function()
    T.eq(sizing.clamp_qty(btc, 0.123456789, 60000), 0.12345)
    T.eq(sizing.clamp_qty(btc, 1e6, 60000), 9000) -- capped at max_qty
    local q, why = sizing.clamp_qty(btc, 0.000001, 60000)
    T.is_nil(q)
    T.truthy(why:find("rounds to zero", 1, true), why)
    q, why = sizing.clamp_qty(btc, 0.00008, 60000) -- 4.8 USDT < 5
    T.is_nil(q)
    T.truthy(why:find("min_notional", 1, true), why)
    T.eq(sizing.clamp_qty(btc, 0.00008), 0.00008) -- no price: notional not checked
    q, why = sizing.clamp_qty({ step_size = 0.1, min_qty = 1, max_qty = 0, min_notional = 0 }, 0.95)
    T.is_nil(q)
    T.truthy(why:find("min_qty", 1, true), why)
    T.eq(sizing.clamp_qty({ step_size = 0.1, min_qty = 1, max_qty = 0, min_notional = 0 }, 1e9), 1e9) -- no max
    T.raises(function()
      sizing.clamp_qty(nil, 1)
    end, "market.info")
  end,

  min_qty_at = function()
    T.eq(sizing.min_qty_at(btc, 60000), 0.00009) -- 5 / 60000 = 0.0000833 -> up to the step
    T.eq(sizing.min_qty_at(eth_btc, 0.05), 0.002) -- 0.0001 / 0.05
    T.eq(sizing.min_qty_at({ step_size = 0.1, min_qty = 0, min_notional = 0 }, 5), 0.1)
  end,

  fraction_of_balance = function()
    T.eq(sizing.fraction_of_balance(1000, 0.5, 100), 5)
    T.eq(sizing.fraction_of_balance(1000, 0.1, 60000, btc), 0.00166)
    local q, why = sizing.fraction_of_balance(1, 0.5, 60000, btc)
    T.is_nil(q)
    T.truthy(why)
    T.eq(sizing.fraction_of_balance(-3, 0.5, 100), 0) -- a negative balance buys nothing
    T.raises(function()
      sizing.fraction_of_balance(1000, 1.5, 100)
    end, "fraction must be within")
  end,

  net_of_fee = function()
    T.near(sizing.net_of_fee(1000, 0.001), 999, 1e-12)
  end,

  rounding_down_never_gains_a_step_on_large_counts = function()
    -- a relative tolerance would take these up to 10000 and 2800000.00000001
    T.eq(sizing.round_to_step(9999.99999999, 0.00000001), 9999.99999999)
    T.eq(sizing.round_to_step(2800000 - 0.000000005, 0.00000001), 2799999.99999999)
    T.eq(sizing.round_to_step(3 * 0.7, 0.1), 2.1) -- one double below 2.1 is still 2.1
    T.eq(sizing.ceil_to_step(0.1 + 0.2, 0.1), 0.3)
    -- a difference of nearly equal numbers is off by far more than noise: documented to round down
    T.eq(sizing.round_to_step(1.0001 - 1, 0.0001), 0)
  end,

  halfway_goes_away_from_zero = function()
    T.eq(sizing.round_to_tick(0.125, 0.25), 0.25)
    T.eq(sizing.round_to_tick(-0.125, 0.25), -0.25)
    T.eq(sizing.round_to_tick(100.005, 0.01), 100.01) -- a hair below halfway as a double, halfway as written
  end,

  notional_limits = function()
    local capped = { step_size = 0.001, min_qty = 0.001, max_qty = 0, min_notional = 5, max_notional = 1000 }
    local q, why = sizing.clamp_qty(capped, 20, 100) -- 2000 > 1000
    T.is_nil(q)
    T.truthy(why:find("max_notional", 1, true), why)
    T.eq(sizing.clamp_qty(capped, 10, 100), 10) -- exactly max_notional
    T.eq(sizing.clamp_qty(capped, 0.05, 100), 0.05) -- exactly min_notional
    -- min_qty_at's quantity is always one clamp_qty accepts
    for _, price in ipairs({ 3, 7, 0.1 + 0.2, 33.33, 99999.99 }) do
      local m = sizing.min_qty_at(capped, price)
      T.eq(sizing.clamp_qty(capped, m, price), m, "at " .. price)
    end
  end,

  bad_steps_raise = function()
    T.raises(function()
      sizing.round_to_step(1, 0)
    end, "step must be a positive number")
    T.raises(function()
      sizing.round_to_tick(0 / 0, 0.1)
    end, "finite number")
  end,
})
