--[[
Grid trading: a ladder of resting LIMIT orders around a start price, buying dips and selling rises.

Levels sit `spacing_bps` apart (geometric: level k is center x (1 + spacing)^k), `levels` on each side. At the start
every level below the center holds a BUY and every level above a SELL; the center stays empty. When a BUY at level k
fills, a SELL goes to level k + 1; when a SELL at level k fills, a BUY goes to level k - 1. Each buy-then-sell
pair earns one spacing minus two fees, so `spacing_bps` must be well above 20 bps (2 x 0.1 %) to make money. The
grid holds exactly one empty level, next to the last fill, so it never sells what it has not bought inside the grid
(beyond the inventory the start-up SELLs use).

Run it:
  runner strategies/grid.lua                 paper trading on the built-in simulated exchange
  runner check strategies/grid.lua           load and validate without trading

Knobs: the `config` table below. Save the file while it runs and it hot-reloads with `state` (the grid, its orders,
the counters) kept; the grid is laid out once, so changes to center, spacing or size apply to the next grid.
Stopping the strategy cancels its orders; the next start lays out a fresh grid around the price of the moment.
]]

local book = require("book")
local pause = require("pause")
local position = require("position")
local sizing = require("sizing")

local config = {
  symbol = "ETHUSDT",
  levels = 5, -- orders on each side of the center
  spacing_bps = 40, -- distance between levels
  qty = 0.05, -- base quantity per order
  center = nil, -- start price; nil: the mid when the first quote arrives
  fee_rate = 0.001,
  repair_ms = 5000, -- how often orders that could not be placed are tried again
  backoff_ms = 5000,
  report_ms = 30000,
}

state.pos = state.pos or position.new()
state.round_trips = state.round_trips or 0
state.paused_until = state.paused_until or 0
-- state.grid = { center, spacing_bps, orders = { [level] = {client_id, side, price} }, todo = { {level, side} } }
-- Levels are string keys ("-2"): the state is saved as JSON, where a map cannot have negative integer keys.

local info

local function level_price(grid, k)
  return sizing.round_to_tick(grid.center * (1 + grid.spacing_bps / 1e4) ^ k, info.tick_size)
end

-- Logs a failed call; budget errors pause the strategy for as long as the error says.
local function on_call_error(what, err)
  pause.on_error(state, what, err, config.backoff_ms)
end

-- Places the order of level k, or queues it for the repair timer when that is not possible now.
local function place_level(grid, k, side)
  local key = tostring(k)
  if grid.orders[key] then
    log.warn("level %d already holds a %s; not placing a %s", k, grid.orders[key].side, side)
    return
  end
  if clock.now() < state.paused_until then
    table.insert(grid.todo, { level = k, side = side })
    return
  end
  local price = level_price(grid, k)
  local client_id = string.format("grid-%d-%s%d", grid.id, k < 0 and "m" or "p", math.abs(k))
  local o, err = orders.place({
    symbol = config.symbol,
    side = side,
    type = "LIMIT",
    tif = "GTC",
    price = price,
    quantity = config.qty,
    client_id = client_id .. "-" .. grid.seq,
  })
  grid.seq = grid.seq + 1
  if not o then
    on_call_error(string.format("place %s at level %d (%s)", side, k, sizing.format(price, info.tick_size)), err)
    if err.code ~= "invalid_order" then
      table.insert(grid.todo, { level = k, side = side }) -- worth another try later
    end
    return
  end
  grid.orders[key] = { client_id = o.client_id, side = side, price = price }
  position.apply(state.pos, o, config.fee_rate)
end

local function lay_out(mid)
  local grid = {
    id = clock.now() % 100000,
    center = config.center or mid,
    spacing_bps = config.spacing_bps,
    orders = {},
    todo = {},
    seq = 1,
  }
  state.grid = grid
  log.info("laying out %d levels each side of %s, %.1f bps apart", config.levels,
    sizing.format(grid.center, info.tick_size), grid.spacing_bps)
  for k = 1, config.levels do
    place_level(grid, -k, "BUY")
    place_level(grid, k, "SELL")
  end
end

local function level_of(grid, client_id)
  for key, entry in pairs(grid.orders) do
    if entry.client_id == client_id then
      return tonumber(key), entry
    end
  end
  return nil
end

local function on_update(o)
  position.apply(state.pos, o, config.fee_rate)
  local grid = state.grid
  if not grid then
    return
  end
  local k, entry = level_of(grid, o.client_id)
  if not k then
    return
  end
  if o.status == "FILLED" then
    grid.orders[tostring(k)] = nil
    if entry.side == "BUY" then
      place_level(grid, k + 1, "SELL")
    else
      state.round_trips = state.round_trips + 1
      place_level(grid, k - 1, "BUY")
    end
  elseif o.status == "CANCELED" or o.status == "EXPIRED" or o.status == "REJECTED" then
    -- Gone without filling (cancelled by hand, say): put the same order back.
    grid.orders[tostring(k)] = nil
    table.insert(grid.todo, { level = k, side = entry.side })
  end
end

-- Retries orders that could not be placed, once the pause (if any) is over.
local function repair()
  local grid = state.grid
  if not grid or #grid.todo == 0 or clock.now() < state.paused_until then
    return
  end
  local todo = grid.todo
  grid.todo = {}
  for _, item in ipairs(todo) do
    place_level(grid, item.level, item.side)
  end
end

-- After a restart, drop orders the host no longer has open; fills missed while stopped are not replayed.
local function reconcile()
  local grid = state.grid
  if not grid then
    return
  end
  local open = {}
  for _, o in ipairs(orders.open(config.symbol)) do
    open[o.client_id] = true
  end
  for key, entry in pairs(grid.orders) do
    if not open[entry.client_id] then
      grid.orders[key] = nil
      table.insert(grid.todo, { level = tonumber(key), side = entry.side })
    end
  end
end

local function report()
  local grid = state.grid
  local resting = 0
  for _ in pairs(grid and grid.orders or {}) do
    resting = resting + 1
  end
  local q = market.quote(config.symbol)
  local mid = q and book.mid(q) or 0
  log.info("report: %d round trips, %d fills, %d resting, %d waiting, position %.6f, pnl %.4f (mark at %.2f)",
    state.round_trips, state.pos.fills, resting, grid and #grid.todo or 0, state.pos.base,
    position.value(state.pos, mid), mid)
end

local function setup()
  info = market.info(config.symbol)
  reconcile()
  timer.every(config.repair_ms, "repair")
  timer.every(config.report_ms, "report")
end

return {
  name = "grid",
  symbols = { config.symbol },
  streams = { "book" },

  on_start = setup,
  on_reload = setup,

  on_book = function(q)
    -- The first quote lays out the grid (unless one is kept in state); after that the orders do the work.
    if not state.grid and q.symbol == config.symbol and book.mid(q) then
      lay_out(book.mid(q))
    end
  end,

  on_order = function(o)
    if o.symbol == config.symbol then
      on_update(o)
    end
  end,

  on_timer = function(name)
    if name == "repair" then
      repair()
    elseif name == "report" then
      report()
    end
  end,

  on_stop = function(reason)
    -- Resting orders must not outlive the strategy that re-places their opposite side.
    local _, err = orders.cancel_all(config.symbol)
    if err then
      log.error("on stop (%s): could not cancel the grid: %s", reason, tostring(err))
    else
      state.grid = nil -- the next start lays out a fresh grid
    end
    report()
  end,
}
