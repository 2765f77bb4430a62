-- A small stand-in for the runner host, to unit-test strategies in a plain Lua VM: the API globals (market, orders,
-- account, ledger, clock, timer, log, state) over an in-memory exchange with a controllable clock.
--
-- Orders match against the quotes the test sets: a crossing LIMIT or MARKET fills at the quote at once (IOC/FOK
-- remainders expire, GTC remainders rest), LIMIT_MAKER that would cross is rejected, resting orders fill when a
-- later quote trades through their price. Balances move with fills, less the fee on what is received. As in the real
-- host, events are delivered one at a time: order updates queue up and reach on_order after the current callback.

local sizing = require("sizing")

local H = {}
H.__index = H

local FINAL = { FILLED = true, CANCELED = true, REJECTED = true, EXPIRED = true }

local function copy(t)
  if type(t) ~= "table" then
    return t
  end
  local c = {}
  for k, v in pairs(t) do
    c[k] = copy(v)
  end
  return c
end

local error_mt = {
  __tostring = function(e)
    return e.code .. ": " .. e.message
  end,
}

--- An error table as the host hands it to Lua.
function H.err(code, message, fields)
  local e = fields and copy(fields) or {}
  e.code, e.message = code, message or code
  return setmetatable(e, error_mt)
end

--- opts: infos = {SYMBOL = {base, quote, tick_size, step_size, min_qty, max_qty, min_notional}},
---       balances = {ASSET = number}, fee = 0.001, now = ms, state = table
function H.new(opts)
  local h = setmetatable({
    now = opts.now or 1700000000000,
    infos = opts.infos,
    fee = opts.fee or 0.001,
    free = {},
    locked = {},
    quotes = {},
    orders = {}, -- client_id -> order (internal, with lock bookkeeping)
    next_id = 1,
    placed = {}, -- every request orders.place received, in order
    cancels = 0,
    logs = {},
    timers = {},
    events = {},
    fail_next = nil, -- an error returned by the next orders.place instead of trading
    lose_next_reply = false, -- the next orders.place trades but its reply and events are lost (unknown_status)
    ioc_fill_ratio = {}, -- symbol -> share of an order's quantity that crossing LIMIT orders get (default 1)
    ledger = { state = "normal", pools = {}, mine = { weight = 0, orders = 0 } },
  }, H)
  for asset, amount in pairs(opts.balances or {}) do
    h.free[asset], h.locked[asset] = amount, 0
  end
  h.state = opts.state or {}
  return h
end

function H:log_lines(level)
  local out = {}
  for _, l in ipairs(self.logs) do
    if not level or l.level == level then
      out[#out + 1] = l.text
    end
  end
  return out
end

local function known(self, symbol)
  local info = self.infos[symbol]
  if not info then
    error("unknown symbol " .. tostring(symbol), 3)
  end
  return info
end

local function on_grid(x, step)
  if step == 0 then
    return true
  end
  local n = x / step
  return math.abs(n - math.floor(n + 0.5)) <= math.abs(n) * 1e-9
end

function H:public(o) -- luacheck: ignore 212/self
  local c = copy(o)
  c.lock_asset, c.lock_left = nil, nil
  return c
end

function H:emit(o)
  self.events[#self.events + 1] = self:public(o)
end

-- Applies a fill of `qty` at `price` to order `o` and the balances.
function H:fill(o, qty, price)
  local info = self.infos[o.symbol]
  local cost = qty * price
  local prev_quote = o.filled_qty * o.avg_price
  o.filled_qty = o.filled_qty + qty
  o.avg_price = (prev_quote + cost) / o.filled_qty
  o.last_fill_qty, o.last_fill_price = qty, price
  local spent = o.side == "BUY" and cost or qty
  local spent_from_lock = math.min(spent, o.lock_left)
  o.lock_left = o.lock_left - spent_from_lock
  self.locked[o.lock_asset] = self.locked[o.lock_asset] - spent_from_lock
  self.free[o.lock_asset] = self.free[o.lock_asset] - (spent - spent_from_lock)
  if o.side == "BUY" then
    self.free[info.base] = (self.free[info.base] or 0) + qty * (1 - self.fee)
  else
    self.free[info.quote] = (self.free[info.quote] or 0) + cost * (1 - self.fee)
  end
  o.status = o.filled_qty >= o.quantity * (1 - 1e-12) and "FILLED" or "PARTIALLY_FILLED"
  o.update_time = self.now
end

function H:close(o, status)
  o.status = status
  self.locked[o.lock_asset] = self.locked[o.lock_asset] - o.lock_left
  self.free[o.lock_asset] = self.free[o.lock_asset] + o.lock_left
  o.lock_left = 0
  o.update_time = self.now
end

-- What a crossing order could take now: price and quantity at the touch, or nil.
function H:touch(o)
  local q = self.quotes[o.symbol]
  if not q then
    return nil
  end
  if o.side == "BUY" and q.ask > 0 and (o.type == "MARKET" or q.ask <= o.price) then
    return q.ask, q.ask_qty
  elseif o.side == "SELL" and q.bid > 0 and (o.type == "MARKET" or q.bid >= o.price) then
    return q.bid, q.bid_qty
  end
  return nil
end

function H:place(req)
  self.placed[#self.placed + 1] = copy(req)
  if self.fail_next then
    local e = self.fail_next
    self.fail_next = nil
    return nil, e
  end
  local info = known(self, req.symbol)
  assert(req.side == "BUY" or req.side == "SELL", "bad side " .. tostring(req.side))
  assert(req.type == "LIMIT" or req.type == "MARKET" or req.type == "LIMIT_MAKER", "bad type " .. tostring(req.type))
  local qty, price = req.quantity, req.price
  if type(qty) ~= "number" or qty <= 0 or not on_grid(qty, info.step_size) then
    return nil, H.err("invalid_order", "LOT_SIZE: quantity " .. tostring(qty) .. " is not on the step grid")
  end
  if req.type ~= "MARKET" and (type(price) ~= "number" or price <= 0 or not on_grid(price, info.tick_size)) then
    return nil, H.err("invalid_order", "PRICE_FILTER: price " .. tostring(price) .. " is not on the tick grid")
  end
  if qty < info.min_qty then
    return nil, H.err("invalid_order", "LOT_SIZE: quantity below min_qty")
  end
  local client_id = req.client_id or ("fake-" .. self.next_id)
  if self.orders[client_id] and not FINAL[self.orders[client_id].status] then
    return nil, H.err("rejected", "Duplicate order sent.", { exchange_code = -2010 })
  end
  local o = {
    id = self.next_id,
    client_id = client_id,
    symbol = req.symbol,
    side = req.side,
    type = req.type,
    tif = req.type == "LIMIT" and (req.tif or "GTC") or nil,
    status = "NEW",
    price = price or 0,
    quantity = qty,
    filled_qty = 0,
    avg_price = 0,
    last_fill_qty = 0,
    last_fill_price = 0,
    time = self.now,
    update_time = self.now,
  }
  self.next_id = self.next_id + 1
  local touch_price = self:touch(o)
  if req.type == "LIMIT_MAKER" and touch_price then
    return nil, H.err("rejected", "Order would immediately match and take.", { exchange_code = -2010 })
  end
  -- Lock what the order may spend, as the exchange does.
  local lock_price = req.type == "MARKET" and (touch_price or 0) or price
  o.lock_asset = req.side == "BUY" and info.quote or info.base
  o.lock_left = req.side == "BUY" and qty * lock_price or qty
  if (self.free[o.lock_asset] or 0) < o.lock_left then
    return nil, H.err("rejected", "Account has insufficient balance for requested action.", { exchange_code = -2010 })
  end
  self.free[o.lock_asset] = self.free[o.lock_asset] - o.lock_left
  self.locked[o.lock_asset] = (self.locked[o.lock_asset] or 0) + o.lock_left
  self.orders[client_id] = o
  if touch_price then
    local _, avail = self:touch(o)
    local ratio = req.type == "MARKET" and 1 or (self.ioc_fill_ratio[o.symbol] or 1)
    local take = math.min(qty * ratio, req.type == "MARKET" and qty or avail)
    if take > 0 then
      self:fill(o, take, touch_price)
    end
  end
  if not FINAL[o.status] and (req.type == "MARKET" or o.tif == "IOC" or o.tif == "FOK") then
    self:close(o, "EXPIRED")
  elseif FINAL[o.status] and o.lock_left > 0 then
    self:close(o, o.status) -- a BUY filled below its limit: release the rest of the lock
  end
  if self.lose_next_reply then
    self.lose_next_reply = false
    return nil, H.err("unknown_status", "timed out waiting for the exchange")
  end
  self:emit(o)
  return self:public(o)
end

function H:find(id)
  if type(id) == "string" then
    return self.orders[id]
  end
  for _, o in pairs(self.orders) do
    if o.id == id then
      return o
    end
  end
  return nil
end

function H:cancel(symbol, id)
  known(self, symbol)
  local o = self:find(id)
  if not o or o.symbol ~= symbol or FINAL[o.status] then
    return nil, H.err("rejected", "Unknown order sent.", { exchange_code = -2011 })
  end
  self.cancels = self.cancels + 1
  self:close(o, "CANCELED")
  self:emit(o)
  return self:public(o)
end

function H:open_orders(symbol)
  local list = {}
  for _, o in pairs(self.orders) do
    if not FINAL[o.status] and (symbol == nil or o.symbol == symbol) then
      list[#list + 1] = self:public(o)
    end
  end
  table.sort(list, function(a, b)
    return a.id < b.id
  end)
  return list
end

--- Installs the API globals; `state` is this host's state table.
function H:install()
  local h = self
  _G.state = h.state
  _G.market = {
    quote = function(symbol)
      known(h, symbol)
      return copy(h.quotes[symbol])
    end,
    book_ticker = function(symbol)
      known(h, symbol)
      return copy(h.quotes[symbol])
    end,
    book = function(symbol)
      known(h, symbol)
      return nil
    end,
    info = function(symbol)
      local info = copy(known(h, symbol))
      info.symbol, info.status = symbol, "TRADING"
      return info
    end,
    round_price = function(symbol, p)
      return sizing.round_to_tick(p, known(h, symbol).tick_size)
    end,
    round_qty = function(symbol, q)
      return sizing.round_to_step(q, known(h, symbol).step_size)
    end,
    round_step = function(x, step, mode)
      local round = ({ down = sizing.round_to_step, up = sizing.ceil_to_step, nearest = sizing.round_to_tick })[mode]
      if not round then
        error('market.round_step: mode must be "down", "up" or "nearest", got ' .. tostring(mode), 2)
      end
      return round(x, step)
    end,
    symbols = function()
      local list = {}
      for s in pairs(h.infos) do
        list[#list + 1] = s
      end
      table.sort(list)
      return list
    end,
  }
  _G.orders = {
    place = function(req)
      return h:place(req)
    end,
    cancel = function(symbol, id)
      return h:cancel(symbol, id)
    end,
    cancel_all = function(symbol)
      local done = {}
      for _, o in ipairs(h:open_orders(symbol)) do
        done[#done + 1] = h:cancel(symbol, o.id)
      end
      return done
    end,
    get = function(symbol, id)
      known(h, symbol)
      local o = h:find(id)
      if not o then
        return nil, H.err("rejected", "Order does not exist.", { exchange_code = -2013 })
      end
      return h:public(o)
    end,
    open = function(symbol)
      return h:open_orders(symbol)
    end,
  }
  _G.account = {
    balances = function()
      local b = {}
      for asset, free in pairs(h.free) do
        b[asset] = { free = free, locked = h.locked[asset] or 0 }
      end
      return b
    end,
  }
  _G.ledger = {
    status = function()
      return copy(h.ledger)
    end,
  }
  _G.clock = {
    now = function()
      return h.now
    end,
  }
  _G.timer = {
    every = function(ms, name)
      h.timers[name] = { due = h.now + ms, every = ms }
    end,
    after = function(ms, name)
      h.timers[name] = { due = h.now + ms }
    end,
    cancel = function(name)
      h.timers[name] = nil
    end,
  }
  local function logger(level)
    return function(fmt, ...)
      h.logs[#h.logs + 1] = { level = level, text = string.format(fmt, ...) }
    end
  end
  _G.log = { debug = logger("debug"), info = logger("info"), warn = logger("warn"), error = logger("error") }
  return self
end

--- Loads a strategy module by name (found on package.path) the way the host does: run the file, keep its table.
function H:load(name)
  local path = assert(package.searchpath(name, package.path))
  local chunk = assert(loadfile(path))
  local strategy = chunk()
  assert(type(strategy) == "table", name .. " must return a table")
  self.strategy = strategy
  return strategy
end

--- Calls a callback, then delivers queued order events one by one, as the host's event loop does.
function H:call(callback, ...)
  local fn = self.strategy[callback]
  if fn then
    fn(...)
  end
  while #self.events > 0 do
    local o = table.remove(self.events, 1)
    if self.strategy.on_order then
      self.strategy.on_order(o)
    end
  end
end

function H:start()
  self:call("on_start")
end

--- A hot reload: the file is loaded again into the same state, and on_reload runs on the new table.
function H:reload(name)
  self:load(name)
  self:call("on_reload")
end

--- Sets the best bid/ask of `symbol`, fills resting orders the new quote trades through, then calls on_book.
function H:quote(symbol, bid, bid_qty, ask, ask_qty)
  known(self, symbol)
  self.quotes[symbol] = { symbol = symbol, bid = bid, bid_qty = bid_qty, ask = ask, ask_qty = ask_qty,
    update_id = self.next_id, time = self.now }
  for _, o in pairs(self.orders) do
    if o.symbol == symbol and not FINAL[o.status] then
      -- A resting order fills at its own price when the market trades through it (a maker fill).
      if (o.side == "BUY" and ask > 0 and ask < o.price) or (o.side == "SELL" and bid > 0 and bid > o.price) then
        self:fill(o, o.quantity - o.filled_qty, o.price)
        if o.lock_left > 0 then
          self:close(o, o.status)
        end
        self:emit(o)
      end
    end
  end
  self:call("on_book", copy(self.quotes[symbol]))
end

--- Moves the clock on by `ms`, firing due timers in time order.
function H:advance(ms)
  local target = self.now + ms
  while true do
    local name, due
    for n, t in pairs(self.timers) do
      if t.due <= target and (not due or t.due < due or (t.due == due and n < name)) then
        name, due = n, t.due
      end
    end
    if not name then
      break
    end
    self.now = due
    local t = self.timers[name]
    if t.every then
      t.due = due + t.every
    else
      self.timers[name] = nil
    end
    self:call("on_timer", name)
  end
  self.now = target
end

--- Orders placed so far (requests), optionally only those on `symbol`.
function H:requests(symbol)
  local list = {}
  for _, r in ipairs(self.placed) do
    if symbol == nil or r.symbol == symbol then
      list[#list + 1] = r
    end
  end
  return list
end

return H
