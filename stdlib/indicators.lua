-- Incremental indicators: each update is O(1), so they are cheap enough to feed from every book or trade event.
--
--   local ind = require("indicators")
--   local fast, slow = ind.ema(12), ind.ema(26)
--   on_trade = function(t)
--     local f, s = fast:update(t.price), slow:update(t.price)
--     if f and s and f > s then ... end          -- both nil until warmed up
--   end
--
-- Every indicator has :update(x) returning the current value (nil until warmed up), :value() and :ready().

local M = {}

---@class stdlib.Indicator
---@field update fun(self: stdlib.Indicator, x: number): number? feed a value; the current value, nil until warmed up
---@field value fun(self: stdlib.Indicator): number?
---@field ready fun(self: stdlib.Indicator): boolean

---@class stdlib.Vwap
---@field update fun(self: stdlib.Vwap, price: number, volume: number): number?
---@field value fun(self: stdlib.Vwap): number?
---@field ready fun(self: stdlib.Vwap): boolean
---@field reset fun(self: stdlib.Vwap) start a new session

---@class stdlib.Bollinger
---@field update fun(self: stdlib.Bollinger, x: number): number?, number?, number? mid, upper, lower
---@field value fun(self: stdlib.Bollinger): number?, number?, number?
---@field ready fun(self: stdlib.Bollinger): boolean
---@field stddev fun(self: stdlib.Bollinger): number?
---@field percent_b fun(self: stdlib.Bollinger, x: number): number?

local function check_period(n, what)
  if math.type(n) ~= "integer" or n < 1 then
    error(string.format("%s: period must be a positive integer, got %s", what, tostring(n)), 3)
  end
end

local function check_number(x, what)
  if type(x) ~= "number" or x ~= x then
    error(string.format("%s: expected a number, got %s", what, tostring(x)), 3)
  end
end

-- Compensated (Neumaier) running sum: adding and removing values for ever would otherwise let float error creep
-- into long-running windows.
local Sum = {}
Sum.__index = Sum

local function new_sum()
  return setmetatable({ s = 0.0, c = 0.0 }, Sum)
end

function Sum:add(x)
  local s = self.s
  local t = s + x
  if math.abs(s) >= math.abs(x) then
    self.c = self.c + ((s - t) + x)
  else
    self.c = self.c + ((x - t) + s)
  end
  self.s = t
end

function Sum:get()
  return self.s + self.c
end

-- Fixed-size ring of the last n values; push returns the value that fell out (nil while filling).
local Ring = {}
Ring.__index = Ring

local function new_ring(n)
  return setmetatable({ n = n, items = {}, next = 1, count = 0 }, Ring)
end

function Ring:push(x)
  local i = self.next
  local old = self.items[i]
  self.items[i] = x
  self.next = i % self.n + 1
  if self.count < self.n then
    self.count = self.count + 1
    return nil
  end
  return old
end

function Ring:full()
  return self.count == self.n
end

---------------------------------------------------------------------------------------------------------------------
-- Simple moving average over the last n values.

local Sma = {}
Sma.__index = Sma

---@param n integer
---@return stdlib.Indicator
function M.sma(n)
  check_period(n, "sma")
  return setmetatable({ n = n, ring = new_ring(n), sum = new_sum(), current = nil }, Sma)
end

function Sma:update(x)
  check_number(x, "sma:update")
  local old = self.ring:push(x)
  self.sum:add(x)
  if old then
    self.sum:add(-old)
  end
  if self.ring:full() then
    self.current = self.sum:get() / self.n
  end
  return self.current
end

function Sma:value()
  return self.current
end

function Sma:ready()
  return self.current ~= nil
end

---------------------------------------------------------------------------------------------------------------------
-- Exponential moving average, alpha = 2 / (n + 1), seeded with the SMA of the first n values so the start does not
-- lean on whatever the first value happened to be.

local Ema = {}
Ema.__index = Ema

---@param n integer
---@return stdlib.Indicator
function M.ema(n)
  check_period(n, "ema")
  return setmetatable({ n = n, alpha = 2 / (n + 1), seen = 0, seed = 0.0, current = nil }, Ema)
end

function Ema:update(x)
  check_number(x, "ema:update")
  if self.current then
    self.current = self.current + self.alpha * (x - self.current)
  else
    self.seen = self.seen + 1
    self.seed = self.seed + x
    if self.seen == self.n then
      self.current = self.seed / self.n
    end
  end
  return self.current
end

function Ema:value()
  return self.current
end

function Ema:ready()
  return self.current ~= nil
end

---------------------------------------------------------------------------------------------------------------------
-- Relative strength index with Wilder's smoothing: the first average gain/loss is the plain mean of the first n
-- changes (so n + 1 prices are needed), then avg = (avg * (n - 1) + change) / n.

local Rsi = {}
Rsi.__index = Rsi

---@param n integer
---@return stdlib.Indicator
function M.rsi(n)
  check_period(n, "rsi")
  return setmetatable({ n = n, prev = nil, seen = 0, gain = 0.0, loss = 0.0, current = nil }, Rsi)
end

local function rsi_from(gain, loss)
  if loss == 0 then
    -- No losses: 100, unless nothing moved at all, which is neutral.
    return gain == 0 and 50 or 100
  end
  return 100 - 100 / (1 + gain / loss)
end

function Rsi:update(x)
  check_number(x, "rsi:update")
  local prev = self.prev
  self.prev = x
  if prev == nil then
    return self.current
  end
  local change = x - prev
  local up = change > 0 and change or 0
  local down = change < 0 and -change or 0
  local n = self.n
  if self.seen < n then
    self.seen = self.seen + 1
    self.gain = self.gain + up
    self.loss = self.loss + down
    if self.seen < n then
      return nil
    end
    self.gain = self.gain / n
    self.loss = self.loss / n
  else
    self.gain = (self.gain * (n - 1) + up) / n
    self.loss = (self.loss * (n - 1) + down) / n
  end
  self.current = rsi_from(self.gain, self.loss)
  return self.current
end

function Rsi:value()
  return self.current
end

function Rsi:ready()
  return self.current ~= nil
end

---------------------------------------------------------------------------------------------------------------------
-- Volume-weighted average price: cumulative (vwap()) or over the last n updates (vwap(n)). A value exists as soon as
-- some volume has been seen. :reset() starts a new session (for a daily VWAP, call it at the day boundary).

local Vwap = {}
Vwap.__index = Vwap

---@param n? integer window in updates; nil: cumulative
---@return stdlib.Vwap
function M.vwap(n)
  if n ~= nil then
    check_period(n, "vwap")
  end
  local v = setmetatable({ n = n }, Vwap)
  v:reset()
  return v
end

function Vwap:reset()
  self.pv = new_sum()
  self.vol = new_sum()
  self.ring = self.n and new_ring(self.n) or nil
  self.current = nil
end

function Vwap:update(price, volume)
  check_number(price, "vwap:update price")
  check_number(volume, "vwap:update volume")
  if volume < 0 then
    error("vwap:update: volume must not be negative, got " .. tostring(volume), 2)
  end
  self.pv:add(price * volume)
  self.vol:add(volume)
  if self.ring then
    -- Store both parts so the evicted sample can be taken out of both sums.
    local old = self.ring:push({ price * volume, volume })
    if old then
      self.pv:add(-old[1])
      self.vol:add(-old[2])
    end
  end
  local vol = self.vol:get()
  -- A window whose volume is (numerically) gone has no price to report.
  if vol > 1e-12 then
    self.current = self.pv:get() / vol
  else
    self.current = nil
  end
  return self.current
end

function Vwap:value()
  return self.current
end

function Vwap:ready()
  return self.current ~= nil
end

---------------------------------------------------------------------------------------------------------------------
-- Bollinger bands: SMA of the last n values ± k population standard deviations. Running sums make it O(1); values are
-- shifted by the first one seen so sum-of-squares does not cancel catastrophically at prices like 60000, and a
-- variance that float error pushed below zero is clamped to zero.
--
--   local mid, upper, lower = bb:update(price)

local Bollinger = {}
Bollinger.__index = Bollinger

---@param n integer
---@param k? number band width in standard deviations (default 2)
---@return stdlib.Bollinger
function M.bollinger(n, k)
  check_period(n, "bollinger")
  k = k or 2
  check_number(k, "bollinger k")
  return setmetatable({ n = n, k = k, ring = new_ring(n), sum = new_sum(), sq = new_sum(), shift = nil }, Bollinger)
end

function Bollinger:update(x)
  check_number(x, "bollinger:update")
  if self.shift == nil then
    self.shift = x
  end
  local d = x - self.shift
  local old = self.ring:push(d)
  self.sum:add(d)
  self.sq:add(d * d)
  if old then
    self.sum:add(-old)
    self.sq:add(-old * old)
  end
  return self:value()
end

-- Mean and population standard deviation of the window (nil until full).
local function moments(self)
  if not self.ring:full() then
    return nil
  end
  local n = self.n
  local mean = self.sum:get() / n
  local var = self.sq:get() / n - mean * mean
  if var < 0 then
    var = 0
  end
  return self.shift + mean, math.sqrt(var)
end

--- Returns mid, upper, lower (all nil until n values were seen).
function Bollinger:value()
  local mid, sd = moments(self)
  if not mid then
    return nil
  end
  local width = self.k * sd
  return mid, mid + width, mid - width
end

function Bollinger:ready()
  return self.ring:full()
end

--- The population standard deviation of the window, or nil until ready.
function Bollinger:stddev()
  local _, sd = moments(self)
  return sd
end

--- Where x sits in the band: 0 at the lower band, 1 at the upper, 0.5 at the mid; nil until ready or when the band
--- has no width.
function Bollinger:percent_b(x)
  local _, upper, lower = self:value()
  if not upper or upper == lower then
    return nil
  end
  return (x - lower) / (upper - lower)
end

return M
