--[[
Market maker: one bid and one ask, resting on the book, around a fair price.

The fair price is the microprice (stdlib `book`): the mid leaned toward the side with less quantity, which is where
the next trade is likelier to happen. Quotes sit `half_spread_bps` either side of it and are shifted against the
inventory (`skew_bps`): holding too much base lowers both quotes, so selling becomes likelier than buying. Nearer
`max_position` than one quote's size, the side that would add to the position is shrunk where it stands
(`orders.amend` keeps its place in the queue, where a cancel and a new order would go to the back of it); past
`max_position` that side is withdrawn.

Orders are LIMIT_MAKER (post-only): the exchange rejects them rather than letting them take liquidity, so every fill
is a maker fill. A quote is cancelled and replaced only when the fair price has moved more than `requote_bps` since
it was placed, and not more often than `min_requote_ms` per side: each replace costs an order from the account's
order-rate pool. The strategy reads `ledger.status()` and slows down as the budget fills (`budget_slow`), stops
replacing near the limit (`budget_stop`), and pauses for as long as a budget error says.

Run it:
  runner strategies/market_maker.lua             paper trading on the built-in simulated exchange
  runner check strategies/market_maker.lua       load and validate without trading

Knobs: the `config` table below. Save the file while it runs and it hot-reloads: `state` (position, counters, the
working orders) is kept and on_reload runs instead of on_start. On stop, the strategy cancels its quotes.
]]

local book = require("book")
local pause = require("pause")
local position = require("position")
local sizing = require("sizing")

local config = {
  symbol = "BTCUSDT",
  order_qty = 0.01, -- base quantity per quote
  half_spread_bps = 15, -- distance of each quote from the fair price; a round trip pays 2 x 0.1 % in fees
  skew_bps = 10, -- quotes move by this much when the position is at max_position
  max_position = 0.05, -- base inventory (relative to the start) beyond which we only quote to reduce it
  requote_bps = 3, -- replace a quote when the fair price moved more than this since it was placed
  min_requote_ms = 500, -- and not more often than this per side
  budget_slow = 0.6, -- above this share of any order or weight pool, requote 4 x less often
  budget_stop = 0.85, -- above this share, place nothing new (cancels still go out)
  reject_backoff_ms = 2000, -- after the exchange rejects a quote, leave that side alone this long
  fee_rate = 0.001,
  backoff_ms = 5000, -- pause after a budget error that gave no retry_after_ms
  report_ms = 30000,
}

local SIDES = { "BUY", "SELL" }

state.pos = state.pos or position.new()
state.working = state.working or {} -- side -> {client_id, price, fair, placed_at}
state.placed = state.placed or 0
state.cancelled = state.cancelled or 0
state.rejected = state.rejected or 0
state.amended = state.amended or 0
state.budget_skips = state.budget_skips or 0
state.paused_until = state.paused_until or 0
state.seq = state.seq or 0
state.retry_at = state.retry_at or {} -- side -> time before which that side is not quoted (after a rejection)

local info -- market.info(config.symbol), fetched in on_start / on_reload

---------------------------------------------------------------------------------------------------------------------
-- Budget

local budget = { checked_at = -math.huge, use = 0 }

-- The highest share used of any order or weight pool (1 when the exchange asked us to back off). Cached briefly:
-- it is cheap, but a busy book would ask it thousands of times a second for nothing.
local function budget_use()
  local now = clock.now()
  if now - budget.checked_at >= 250 then
    local status = ledger.status()
    local worst = status.state == "normal" and 0 or 1
    for _, pool in ipairs(status.pools) do
      if (pool.type == "ORDERS" or pool.type == "REQUEST_WEIGHT") and pool.limit > 0 then
        worst = math.max(worst, pool.used / pool.limit)
      end
    end
    budget.use, budget.checked_at = worst, now
  end
  return budget.use
end

-- Logs a failed call; budget errors pause the strategy for as long as the error says.
local function on_call_error(what, err)
  pause.on_error(state, what, err, config.backoff_ms)
end

---------------------------------------------------------------------------------------------------------------------
-- Orders

local function track(o)
  position.apply(state.pos, o, config.fee_rate)
  local w = state.working[o.side]
  if w and w.client_id == o.client_id then
    w.filled = o.filled_qty
  end
  if w and w.client_id == o.client_id and (o.status == "FILLED" or o.status == "CANCELED" or o.status == "REJECTED"
      or o.status == "EXPIRED") then
    state.working[o.side] = nil -- the side is free: the next book event quotes it again
  end
end

-- Cancels the working quote of `side`. True when it is gone (cancelled now, or already filled/cancelled).
local function cancel(side)
  local w = state.working[side]
  if not w then
    return true
  end
  local o, err = orders.cancel(config.symbol, w.client_id)
  if o then
    state.cancelled = state.cancelled + 1
    track(o)
    state.working[side] = nil
    return true
  end
  if err.code == "rejected" then
    -- Unknown order: it filled or was cancelled meanwhile. Its update may still be queued behind this event, so
    -- look it up now (free while the host's order state is current): the replacement must see the new position.
    local gone = orders.get(config.symbol, w.client_id)
    if gone then
      track(gone)
    end
    state.working[side] = nil
    return true
  end
  on_call_error("cancel " .. side, err)
  return false
end

-- Lowers what is still open of the working quote of `side` to `qty`, in place. A quote that is gone or cannot be
-- lowered (filled meanwhile) is cancelled instead, which also finds out what became of it.
local function shrink(side, qty)
  local w = state.working[side]
  -- An amend sets the order's whole quantity, what has filled included.
  local quantity = qty + (w.filled or 0)
  local o, err = orders.amend({ symbol = config.symbol, id = w.client_id, quantity = quantity })
  if o then
    state.amended = state.amended + 1
    w.quantity = quantity
    track(o)
    return
  end
  if err.code == "rejected" or err.code == "invalid_order" then
    cancel(side)
    return
  end
  on_call_error("amend " .. side, err)
end

-- How much to quote on `side` at `price`: the configured size, or less when the position limit is nearer than that;
-- nil when not even the smallest order fits.
local function quote_qty(side, price)
  local room = side == "BUY" and config.max_position - state.pos.base or config.max_position + state.pos.base
  return sizing.clamp_qty(info, math.min(config.order_qty, room), price)
end

local function place(side, price, fair)
  state.seq = state.seq + 1
  local client_id = string.format("mm-%s-%d-%d", side == "BUY" and "b" or "s", clock.now() % 100000000, state.seq)
  local quantity = quote_qty(side, price)
  if not quantity then
    return
  end
  local o, err = orders.place({
    symbol = config.symbol,
    side = side,
    type = "LIMIT_MAKER",
    price = price,
    quantity = quantity,
    client_id = client_id,
  })
  if not o then
    if err.code == "rejected" then
      -- Usually "would immediately match" (the book moved under us), or a balance gone short. Either way a failed
      -- order costs weight: do not try the same side again on the very next book event.
      state.rejected = state.rejected + 1
      state.retry_at[side] = clock.now() + config.reject_backoff_ms
      log.debug("place %s at %s rejected: %s", side, sizing.format(price, info.tick_size), tostring(err))
    else
      on_call_error("place " .. side, err)
    end
    return
  end
  state.placed = state.placed + 1
  state.working[side] = {
    client_id = client_id,
    price = price,
    fair = fair,
    placed_at = clock.now(),
    quantity = quantity,
  }
  track(o)
end

---------------------------------------------------------------------------------------------------------------------
-- Quoting

-- Where each side should be now, or nil for a side we should not quote.
local function targets(q, fair)
  local inventory = math.max(-1, math.min(1, state.pos.base / config.max_position))
  local center = fair * (1 - inventory * config.skew_bps / 1e4)
  local hs = config.half_spread_bps / 1e4
  local bid = sizing.passive_price(center * (1 - hs), info.tick_size, "BUY")
  local ask = sizing.passive_price(center * (1 + hs), info.tick_size, "SELL")
  -- Post-only orders must not cross the book, or the exchange rejects them.
  bid = math.min(bid, sizing.passive_price(q.ask - info.tick_size, info.tick_size, "BUY"))
  ask = math.max(ask, sizing.passive_price(q.bid + info.tick_size, info.tick_size, "SELL"))
  return {
    BUY = state.pos.base < config.max_position and bid or nil,
    SELL = state.pos.base > -config.max_position and ask or nil,
  }
end

local function requote(side, q, fair, use)
  local w = state.working[side]
  if not w and clock.now() < (state.retry_at[side] or 0) then
    return
  end
  local target = targets(q, fair)[side]
  local qty = target and quote_qty(side, target)
  if qty == nil then
    cancel(side) -- at the position limit: withdraw the side that would add to it
    return
  end
  if w and qty < (w.quantity or config.order_qty) - (w.filled or 0) - info.step_size / 2 then
    shrink(side, qty)
    return
  end
  if w then
    local moved_bps = math.abs(fair - w.fair) / w.fair * 1e4
    local min_ms = use > config.budget_slow and config.min_requote_ms * 4 or config.min_requote_ms
    if moved_bps < config.requote_bps or clock.now() - w.placed_at < min_ms or w.price == target then
      return
    end
    if use > config.budget_stop then
      state.budget_skips = state.budget_skips + 1
      return -- keep the old quote rather than spend the last of the budget
    end
    if not cancel(side) then
      return
    end
    -- The cancel may have found a fill that moved the position: price the replacement afresh.
    target = targets(q, fair)[side]
    if target == nil then
      return
    end
  elseif use > config.budget_stop then
    state.budget_skips = state.budget_skips + 1
    return
  end
  place(side, target, fair)
end

local function on_quote(q)
  local fair = book.microprice(q)
  if not fair then
    return
  end
  state.last_mid = book.mid(q)
  if clock.now() < state.paused_until then
    return
  end
  local use = budget_use()
  for _, side in ipairs(SIDES) do
    if clock.now() < state.paused_until then
      return -- the first side hit a budget error: do not try the second
    end
    requote(side, q, fair, use)
  end
end

-- After a restart or reload, forget working orders the host no longer has open (they filled or were cancelled).
local function reconcile()
  local open = {}
  for _, o in ipairs(orders.open(config.symbol)) do
    open[o.client_id] = true
  end
  for _, side in ipairs(SIDES) do
    local w = state.working[side]
    if w and not open[w.client_id] then
      state.working[side] = nil
    end
  end
end

local function report()
  local mid = state.last_mid or 0
  log.info("report: position %.8f, pnl %.4f (mark at %.2f), %d fills, %d placed, %d amended, %d cancelled, "
    .. "%d rejected, %d skipped for budget, budget use %.0f %%", state.pos.base, position.value(state.pos, mid), mid,
    state.pos.fills, state.placed, state.amended, state.cancelled, state.rejected, state.budget_skips,
    budget_use() * 100)
end

local function setup()
  info = market.info(config.symbol)
  reconcile()
  timer.every(config.report_ms, "report")
end

return {
  name = "market-maker",
  symbols = { config.symbol },
  streams = { "book" },
  order_wait_ms = 300, -- a quote is only worth placing now

  on_start = function()
    setup()
    log.info("quoting %s: %s per side, %.1f bps half spread", config.symbol, config.order_qty,
      config.half_spread_bps)
  end,

  on_reload = setup,

  on_book = function(q)
    if q.symbol == config.symbol then
      on_quote(q)
    end
  end,

  on_order = function(o)
    if o.symbol == config.symbol then
      track(o)
    end
  end,

  on_timer = function(name)
    if name == "report" then
      report()
    end
  end,

  on_stop = function(reason)
    -- Resting quotes must not outlive the strategy that manages them.
    local _, err = orders.cancel_all(config.symbol)
    if err then
      log.error("on stop (%s): could not cancel quotes: %s", reason, tostring(err))
    end
    state.working = {}
    report()
  end,
}
