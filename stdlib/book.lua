-- Helpers over the two book shapes the host hands out:
--
--   quote (on_book, market.quote, market.book_ticker):  {bid, bid_qty, ask, ask_qty, ...}
--   depth (market.book, market.depth):                  {bids = {{price, qty}, ...}, asks = {{price, qty}, ...}}
--                                                        bids best (highest) first, asks best (lowest) first
--
--   local book = require("book")
--   local fair = book.microprice(q)                     -- nil when a side is empty
--   local avg = book.depth_weighted_price(market.book("BTCUSDT").asks, 0.5)
--
-- Functions return nil (not an error) when the book cannot answer: an empty side is normal market data.

local M = {}

-- A side is usable when it has a positive price; the exchange reports an empty side as zeros.
local function has_sides(q)
  return q ~= nil and (q.bid or 0) > 0 and (q.ask or 0) > 0
end

--- Mid price (bid + ask) / 2, or nil when a side is empty.
---@param q runner.Quote?
---@return number?
function M.mid(q)
  if not has_sides(q) then
    return nil
  end
  return (q.bid + q.ask) / 2
end

--- Absolute spread ask - bid, or nil when a side is empty.
---@param q runner.Quote?
---@return number?
function M.spread(q)
  if not has_sides(q) then
    return nil
  end
  return q.ask - q.bid
end

--- Spread in basis points of the mid (1 bp = 0.01 %), or nil when a side is empty.
---@param q runner.Quote?
---@return number?
function M.spread_bps(q)
  if not has_sides(q) then
    return nil
  end
  return (q.ask - q.bid) / ((q.bid + q.ask) / 2) * 1e4
end

--- Size-weighted mid: leans toward the side with LESS quantity, since that side is the one about to be taken out.
--- (bid * ask_qty + ask * bid_qty) / (bid_qty + ask_qty); the plain mid when both quantities are zero.
---@param q runner.Quote?
---@return number?
function M.microprice(q)
  if not has_sides(q) then
    return nil
  end
  local bq, aq = q.bid_qty or 0, q.ask_qty or 0
  local total = bq + aq
  if total <= 0 then
    return (q.bid + q.ask) / 2
  end
  return (q.bid * aq + q.ask * bq) / total
end

-- (bid - ask) / (bid + ask) quantities; nil when both are zero.
local function imbalance_of(bq, aq)
  local total = bq + aq
  if total <= 0 then
    return nil
  end
  return (bq - aq) / total
end

--- Top-of-book quantity imbalance in [-1, 1]: +1 all bids, -1 all asks; nil when both quantities are zero.
---@param q runner.Quote?
---@return number?
function M.imbalance(q)
  if q == nil then
    return nil
  end
  return imbalance_of(q.bid_qty or 0, q.ask_qty or 0)
end

-- Summed quantity of the first `levels` levels of one side.
local function side_qty(levels_list, levels)
  local total = 0
  for i = 1, math.min(levels, #levels_list) do
    total = total + levels_list[i][2]
  end
  return total
end

--- Quantity imbalance over the first `levels` levels (default 5) of a depth table, in [-1, 1]; nil if empty.
---@param depth runner.Depth?
---@param levels? integer
---@return number?
function M.depth_imbalance(depth, levels)
  if depth == nil then
    return nil
  end
  levels = levels or 5
  return imbalance_of(side_qty(depth.bids or {}, levels), side_qty(depth.asks or {}, levels))
end

--- The best bid and ask of a depth table as a quote-shaped table {bid, bid_qty, ask, ask_qty} (a missing side is
--- zeros, as the exchange reports it), so the quote helpers above work on depth too.
---@param depth runner.Depth?
---@return runner.Quote
function M.top(depth)
  local b = depth and depth.bids and depth.bids[1]
  local a = depth and depth.asks and depth.asks[1]
  return {
    symbol = depth and depth.symbol,
    bid = b and b[1] or 0,
    bid_qty = b and b[2] or 0,
    ask = a and a[1] or 0,
    ask_qty = a and a[2] or 0,
  }
end

--- Average price to fill `qty` by walking one side of a depth table (`depth.asks` to buy, `depth.bids` to sell).
--- Returns average_price, worst_price (the last level touched); nil when the side holds less than `qty`.
---@param side_levels runner.Level[]?
---@param qty number
---@return number? average
---@return number? worst
function M.depth_weighted_price(side_levels, qty)
  if type(qty) ~= "number" or qty <= 0 then
    error("depth_weighted_price: qty must be a positive number, got " .. tostring(qty), 2)
  end
  if side_levels == nil then
    return nil
  end
  local left, cost = qty, 0
  for i = 1, #side_levels do
    local price, avail = side_levels[i][1], side_levels[i][2]
    local take = avail < left and avail or left
    cost = cost + take * price
    left = left - take
    -- Relative tolerance: summing level quantities leaves float dust that must not make a full book "thin".
    if left <= qty * 1e-12 then
      return cost / (qty - left), price
    end
  end
  return nil
end

--- Quantity an order of `side` ("BUY" or "SELL") with limit `limit_price` could take at once from a depth table:
--- a BUY takes asks priced <= limit, a SELL takes bids priced >= limit.
---@param depth runner.Depth?
---@param side runner.Side
---@param limit_price number
---@return number
function M.takeable_qty(depth, side, limit_price)
  local buying = side == "BUY"
  if not buying and side ~= "SELL" then
    error('takeable_qty: side must be "BUY" or "SELL", got ' .. tostring(side), 2)
  end
  local levels = depth and (buying and depth.asks or depth.bids) or {}
  local total = 0
  for i = 1, #levels do
    local price = levels[i][1]
    if (buying and price > limit_price) or (not buying and price < limit_price) then
      break
    end
    total = total + levels[i][2]
  end
  return total
end

return M
