-- Position and cash from this strategy's own fills, fed with order tables (from orders.place replies and on_order).
--
--   local position = require("position")
--   state.pos = state.pos or position.new()       -- a plain table, so it lives in `state` across reloads
--   on_order = function(o) position.apply(state.pos, o, 0.001) end
--   log.info("pnl %.2f", position.value(state.pos, mid))
--
-- Updates may repeat or arrive twice (a reply and an on_order event for the same state): only the growth of an
-- order's filled quantity counts, so nothing is counted twice. The fee is taken from what is received, as the
-- exchange does when not paying fees in another asset.

local M = {}

---@class stdlib.Position
---@field base number net base quantity bought (+) or sold (-), fees included
---@field quote number net quote amount received (+) or spent (-), fees included
---@field fills integer fills counted
---@field volume number quote volume traded
---@field seen table<string, table> per client id: what was already counted
---@field finished string[] client ids of finished orders, oldest first

-- Orders remembered after they finished, so a late duplicate update is recognised; older ones are forgotten.
local KEEP_FINISHED = 200

local FINAL = { FILLED = true, CANCELED = true, REJECTED = true, EXPIRED = true }

--- A new, flat position: base and quote are net amounts moved by fills (quote includes fees paid in quote).
---@return stdlib.Position
function M.new()
  return { base = 0, quote = 0, fills = 0, volume = 0, seen = {}, finished = {} }
end

local function forget_old(p)
  while #p.finished > KEEP_FINISHED do
    p.seen[table.remove(p.finished, 1)] = nil
  end
end

--- Folds one order update in. Returns the newly filled quantity and its average price (0, nil when nothing new).
---@param p stdlib.Position
---@param o runner.Order
---@param fee_rate? number
---@return number filled
---@return number? price
function M.apply(p, o, fee_rate)
  local key = o.client_id
  local seen = p.seen[key]
  if seen and seen.final then
    return 0, nil
  end
  seen = seen or { qty = 0, quote = 0 }
  local qty = o.filled_qty or 0
  local quote = qty * (o.avg_price or 0)
  local dq, dquote = qty - seen.qty, quote - seen.quote
  local price = nil
  if dq > 0 then
    fee_rate = fee_rate or 0
    if o.side == "BUY" then
      p.base = p.base + dq * (1 - fee_rate)
      p.quote = p.quote - dquote
    else
      p.base = p.base - dq
      p.quote = p.quote + dquote * (1 - fee_rate)
    end
    p.fills = p.fills + 1
    p.volume = p.volume + dquote
    seen.qty, seen.quote = qty, quote
    price = dquote / dq
  else
    dq = 0
  end
  if FINAL[o.status] then
    seen.final = true
    p.finished[#p.finished + 1] = key
    forget_old(p)
  end
  p.seen[key] = seen
  return dq, price
end

--- Mark-to-market value of the position in the quote asset at `price` (PnL since new(), fees included).
---@param p stdlib.Position
---@param price number
---@return number
function M.value(p, price)
  return p.quote + p.base * price
end

return M
