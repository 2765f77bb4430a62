-- Order sizing on a symbol's grid, from the numbers in market.info(symbol):
--   {tick_size, step_size, min_qty, max_qty, min_notional, max_notional}
--   (a zero bound means "no bound", as on the exchange)
--
--   local sizing = require("sizing")
--   local info = market.info("BTCUSDT")
--   local qty, why = sizing.clamp_qty(info, wanted, price)     -- nil, "below min_notional ..." when too small
--
-- One rounding rule, the host's: inside the runner every rounding goes through market.round_step, which works
-- in exact decimals. In a plain Lua VM (unit tests with fake_host) the same rule runs in Lua below, and a test
-- (tests/host_sizing.rs) checks the two agree. Results are the doubles nearest the decimal multiples, so 3 steps
-- of 0.1 is exactly 0.3 (what tonumber("0.3") gives), never 0.30000000000000004.
--
-- Float noise: a value within NOISE_ULPS doubles of a grid point is that point (0.1 + 0.2 is three steps of 0.1,
-- 3 * 0.7 is 21 steps), and one that close to a midpoint is the midpoint (ties go away from zero). Counted in
-- doubles, so rounding down never gains a real step however many steps the value holds. (A difference of nearly
-- equal numbers, 1.0001 - 1, carries more noise than that: round before subtracting.)

local M = {}

-- As the host's grid::NOISE_ULPS.
local NOISE_ULPS = 4
-- A value holding this many units of the step's last decimal (2.8e6 on a 0.00000001 grid) is returned as it is, as
-- the host does: below it a double has at least 16 values per step and the step counts stay exact integers.
local MAX_UNITS = 2 ^ 48

-- The bits of x as an integer that orders like the doubles themselves.
local function ordered_bits(x)
  local bits = string.unpack("<i8", string.pack("<d", x))
  if bits < 0 then
    bits = math.mininteger - bits
  end
  return bits
end

-- How many doubles lie between a and b.
local function ulps_apart(a, b)
  local d = ordered_bits(a) - ordered_bits(b)
  if d < 0 then
    d = -d
  end
  return d < 0 and math.maxinteger or d -- -math.mininteger wraps around
end

-- value >= limit, float noise included.
local function meets(value, limit)
  return value >= limit or ulps_apart(value, limit) <= NOISE_ULPS
end

-- Decomposes a step into integer units and a power of ten: 0.001 -> 1, 1000; 0.25 -> 25, 100; 10 -> 10, 1.
-- Steps that are not short decimals fall back to plain float maths (units = step, scale = 1).
local grid_cache = {}

local function grid_of(step)
  local cached = grid_cache[step]
  if cached then
    return cached[1], cached[2]
  end
  local units, scale = step, 1
  for decimals = 0, 15 do
    local s = 10.0 ^ decimals
    local r = math.floor(step * s + 0.5)
    if r >= 1 and r / s == step then
      units, scale = r, s
      break
    end
  end
  grid_cache[step] = { units, scale }
  return units, scale
end

-- The host's rounding rule in Lua, for VMs without the host (see the top of this file).
local function lua_round_step(x, step, mode)
  local units, scale = grid_of(step)
  if math.abs(x) * scale >= MAX_UNITS then
    return x
  end
  local n = math.floor(x * scale / units)
  local function point(k)
    return k * units / scale
  end
  -- Float maths may put n one step off right next to a grid point, so look one step further each way.
  for k = n - 1, n + 2 do
    local p = point(k)
    if ulps_apart(x, p) <= NOISE_ULPS then
      return p
    end
  end
  if mode == "down" then
    return point(n)
  elseif mode == "up" then
    return point(n + 1)
  end
  local midpoint = (2 * n + 1) * units / (2 * scale)
  local upper
  if ulps_apart(x, midpoint) <= NOISE_ULPS then
    upper = x > 0
  else
    upper = x > midpoint
  end
  return upper and point(n + 1) or point(n)
end

-- x on the grid of `step`, rounding by mode: "down", "up" or "nearest".
local host_market = rawget(_G, "market")
local to_grid = type(host_market) == "table" and host_market.round_step or lua_round_step

local function check_step(step, what)
  -- `not (step > 0)` on purpose: it also refuses NaN, which `step <= 0` lets through.
  if type(step) ~= "number" or not (step > 0) or step == math.huge then -- luacheck: ignore 581
    error(string.format("%s: step must be a positive number, got %s", what, tostring(step)), 3)
  end
end

local function check_value(x, what)
  if type(x) ~= "number" or x ~= x or x == math.huge or x == -math.huge then
    error(string.format("%s: expected a finite number, got %s", what, tostring(x)), 3)
  end
end

--- The largest multiple of `step` not above x (quantities: never ask for more than you meant or hold).
---@param x number
---@param step number
---@return number
function M.round_to_step(x, step)
  check_value(x, "round_to_step")
  check_step(step, "round_to_step")
  return to_grid(x, step, "down")
end

--- The smallest multiple of `step` not below x (e.g. the least quantity that meets a minimum notional).
---@param x number
---@param step number
---@return number
function M.ceil_to_step(x, step)
  check_value(x, "ceil_to_step")
  check_step(step, "ceil_to_step")
  return to_grid(x, step, "up")
end

--- The nearest multiple of `tick` (prices); halfway goes away from zero.
---@param p number
---@param tick number
---@return number
function M.round_to_tick(p, tick)
  check_value(p, "round_to_tick")
  check_step(tick, "round_to_tick")
  return to_grid(p, tick, "nearest")
end

--- A price on the tick grid that is never more aggressive than p: BUY rounds down, SELL rounds up.
---@param p number
---@param tick number
---@param side runner.Side
---@return number
function M.passive_price(p, tick, side)
  check_value(p, "passive_price")
  check_step(tick, "passive_price")
  if side == "BUY" then
    return to_grid(p, tick, "down")
  elseif side == "SELL" then
    return to_grid(p, tick, "up")
  end
  error('passive_price: side must be "BUY" or "SELL", got ' .. tostring(side), 2)
end

--- Number of decimals of a step (0.001 -> 3), for formatting prices and quantities in logs.
---@param step number
---@return integer
function M.decimals(step)
  check_step(step, "decimals")
  local _, scale = grid_of(step)
  return math.floor(math.log(scale, 10) + 0.5)
end

--- Formats x with as many decimals as `step` has: sizing.format(0.1 + 0.2, 0.01) == "0.30".
---@param x number
---@param step number
---@return string
function M.format(x, step)
  return string.format("%." .. M.decimals(step) .. "f", x)
end

local function check_info(info, what)
  if type(info) ~= "table" or type(info.step_size) ~= "number" then
    error(what .. ": expected a market.info(symbol) table", 3)
  end
end

--- A valid order quantity for `qty`: rounded down to the step, capped at max_qty, and checked against min_qty and,
--- when `price` is given, min_notional and max_notional (qty * price). Returns the quantity, or nil and a reason.
---@param info runner.SymbolInfo
---@param qty number
---@param price? number
---@return number? qty
---@return string? reason
function M.clamp_qty(info, qty, price)
  check_info(info, "clamp_qty")
  check_value(qty, "clamp_qty")
  if price ~= nil then
    check_value(price, "clamp_qty")
  end
  local step = info.step_size
  local q = step > 0 and to_grid(qty, step, "down") or qty
  local max_qty = info.max_qty or 0
  if max_qty > 0 and q > max_qty then
    q = step > 0 and to_grid(max_qty, step, "down") or max_qty
  end
  if q <= 0 then
    return nil, string.format("quantity %.12g rounds to zero on step %.12g", qty, step)
  end
  -- Both are doubles of exchange decimals, so comparing them compares the decimals, as the exchange does.
  local min_qty = info.min_qty or 0
  if q < min_qty then
    return nil, string.format("quantity %.12g is below min_qty %.12g", q, min_qty)
  end
  if price == nil then
    return q
  end
  local notional = q * price
  local min_notional = info.min_notional or 0
  if min_notional > 0 and not meets(notional, min_notional) then
    return nil, string.format("notional %.12g (%.12g x %.12g) is below min_notional %.12g", notional, q, price,
      min_notional)
  end
  local max_notional = info.max_notional or 0
  if max_notional > 0 and not meets(max_notional, notional) then
    return nil, string.format("notional %.12g (%.12g x %.12g) is above max_notional %.12g", notional, q, price,
      max_notional)
  end
  return q
end

--- The smallest valid quantity at `price`: meets min_qty and min_notional, on the step grid.
---@param info runner.SymbolInfo
---@param price number
---@return number
function M.min_qty_at(info, price)
  check_info(info, "min_qty_at")
  check_value(price, "min_qty_at")
  if price <= 0 then
    error("min_qty_at: price must be positive, got " .. tostring(price), 2)
  end
  local step = info.step_size
  local min_notional = info.min_notional or 0
  local q = math.max(info.min_qty or 0, min_notional / price)
  if step > 0 then
    q = math.max(to_grid(q, step, "up"), step)
    -- min_notional / price rounds, and may have landed a hair below the step that meets it: take the next one,
    -- so clamp_qty(info, min_qty_at(info, price), price) always accepts it.
    if not meets(q * price, min_notional) then
      q = to_grid(q + step, step, "nearest")
    end
  end
  return q
end

--- The base quantity that spends `fraction` (0..1] of a free quote balance at `price`. With `info`, the result is
--- passed through clamp_qty (so it can be nil, reason); without, it is the raw quantity.
---@param balance_free number
---@param fraction number
---@param price number
---@param info? runner.SymbolInfo
---@return number? qty
---@return string? reason
function M.fraction_of_balance(balance_free, fraction, price, info)
  check_value(balance_free, "fraction_of_balance")
  check_value(fraction, "fraction_of_balance")
  check_value(price, "fraction_of_balance")
  if fraction < 0 or fraction > 1 then
    error("fraction_of_balance: fraction must be within [0, 1], got " .. tostring(fraction), 2)
  end
  if price <= 0 then
    error("fraction_of_balance: price must be positive, got " .. tostring(price), 2)
  end
  local qty = math.max(balance_free, 0) * fraction / price
  if info then
    return M.clamp_qty(info, qty, price)
  end
  return qty
end

--- What is left of `amount` after a fee rate (0.001 for 0.1 %).
---@param amount number
---@param fee_rate number
---@return number
function M.net_of_fee(amount, fee_rate)
  return amount * (1 - fee_rate)
end

return M
