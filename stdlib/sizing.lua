-- Order sizing on a symbol's grid, from the numbers in market.info(symbol):
--   {tick_size, step_size, min_qty, max_qty, min_notional}  (a zero bound means "no bound", as on the exchange)
--
--   local sizing = require("sizing")
--   local info = market.info("BTCUSDT")
--   local qty, why = sizing.clamp_qty(info, wanted, price)     -- nil, "below min_notional ..." when too small
--
-- Rounding works in integer step counts and rebuilds the value as units / 10^decimals, so 3 steps of 0.1 is
-- exactly 0.3 (the closest double to the decimal), never 0.30000000000000004.
--
-- The host also offers market.round_price(symbol, p) (nearest tick) and market.round_qty(symbol, q) (down to the
-- step); these functions do the same maths in Lua and add the min/max/notional checks.

local M = {}

-- Values within this relative distance of a limit count as meeting it (float noise), as the host does.
local NOISE = 1e-9
-- When rounding down or up, a step count this close (relatively) to a whole number is that number: 0.1 + 0.2 is
-- three steps of 0.1, not two. Much tighter than NOISE so it never moves a large value by a whole step.
local COUNT_NOISE = 1e-12

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
    local s = 10 ^ decimals
    local u = step * s
    local r = math.floor(u + 0.5)
    if r >= 1 and math.abs(u - r) <= r * NOISE then
      units, scale = r, s
      break
    end
  end
  grid_cache[step] = { units, scale }
  return units, scale
end

local function check_step(step, what)
  if type(step) ~= "number" or not (step > 0) or step == math.huge then
    error(string.format("%s: step must be a positive number, got %s", what, tostring(step)), 3)
  end
end

local function check_value(x, what)
  if type(x) ~= "number" or x ~= x or x == math.huge or x == -math.huge then
    error(string.format("%s: expected a finite number, got %s", what, tostring(x)), 3)
  end
end

-- x on the grid of `step`, rounding by `mode`: "down", "up" or "nearest" (ties away from zero).
local function to_grid(x, step, mode)
  local units, scale = grid_of(step)
  local steps = x * scale / units
  local slack = math.abs(steps) * COUNT_NOISE
  local n
  if mode == "down" then
    n = math.floor(steps + slack)
  elseif mode == "up" then
    n = math.ceil(steps - slack)
  else
    n = math.floor(steps + 0.5)
  end
  return n * units / scale
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

--- The nearest multiple of `tick` (prices).
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
--- when `price` is given, min_notional (qty * price). Returns the quantity, or nil and a reason.
---@param info runner.SymbolInfo
---@param qty number
---@param price? number
---@return number? qty
---@return string? reason
function M.clamp_qty(info, qty, price)
  check_info(info, "clamp_qty")
  check_value(qty, "clamp_qty")
  local step = info.step_size
  local q = step > 0 and to_grid(qty, step, "down") or qty
  local max_qty = info.max_qty or 0
  if max_qty > 0 and q > max_qty then
    q = step > 0 and to_grid(max_qty, step, "down") or max_qty
  end
  if q <= 0 then
    return nil, string.format("quantity %.12g rounds to zero on step %.12g", qty, step)
  end
  local min_qty = info.min_qty or 0
  if q < min_qty * (1 - NOISE) then
    return nil, string.format("quantity %.12g is below min_qty %.12g", q, min_qty)
  end
  local min_notional = info.min_notional or 0
  if price ~= nil and min_notional > 0 and q * price < min_notional * (1 - NOISE) then
    return nil, string.format("notional %.12g (%.12g x %.12g) is below min_notional %.12g", q * price, q, price,
      min_notional)
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
  local q = math.max(info.min_qty or 0, (info.min_notional or 0) / price)
  if info.step_size > 0 then
    q = math.max(to_grid(q, info.step_size, "up"), info.step_size)
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
