--[[
Bracket: an entry protected by a take-profit and a stop-loss, placed as one OTOCO order list.

The working order is a LIMIT buy capped `entry_bps` above the best ask (it fills at once unless the market runs
away). Once it has filled, the exchange itself places the pair pending on it: a LIMIT_MAKER sell `take_profit_bps`
above the entry and a STOP_LOSS_LIMIT sell triggered `stop_loss_bps` below it (its limit `stop_slip_bps` lower still).
One of the pair trading cancels the other, so the position is always closed exactly once, even if the strategy
stops meanwhile. `on_order` is called for each of the three orders, with the list's `list_id`; when all three are
done the outcome is logged and, after `cooldown_ms`, a new bracket is placed.

Run it:
  runner strategies/bracket.lua             paper trading on the built-in simulated exchange
  runner check strategies/bracket.lua       load and validate without trading

Knobs: the `config` table below. Stopping the strategy cancels the list still open.
]]

local pause = require("pause")

local config = {
  symbol = "BTCUSDT",
  budget = 25, -- quote asset spent per entry
  entry_bps = 5, -- the entry's limit above the ask
  take_profit_bps = 50,
  stop_loss_bps = 50,
  stop_slip_bps = 10, -- the stop's limit below its trigger
  cooldown_ms = 5000,
  backoff_ms = 5000,
}

state.paused_until = state.paused_until or 0
state.brackets = state.brackets or 0
-- state.list = { id, done = { [order type] = final status } }: LIMIT is the entry, LIMIT_MAKER the take-profit,
-- STOP_LOSS_LIMIT the stop-loss.

local function px(price)
  return market.round_price(config.symbol, price)
end

local function place_bracket(q)
  local entry = px(q.ask * (1 + config.entry_bps / 1e4))
  local qty = market.round_qty(config.symbol, config.budget / entry)
  local list, err = orders.place_list {
    symbol = config.symbol,
    type = "otoco",
    working = { side = "BUY", type = "LIMIT", quantity = qty, price = entry },
    pending_above = { side = "SELL", type = "LIMIT_MAKER", quantity = qty,
      price = px(entry * (1 + config.take_profit_bps / 1e4)) },
    pending_below = { side = "SELL", type = "STOP_LOSS_LIMIT", quantity = qty,
      stop_price = px(entry * (1 - config.stop_loss_bps / 1e4)),
      price = px(entry * (1 - (config.stop_loss_bps + config.stop_slip_bps) / 1e4)) },
  }
  if not list then
    -- An unknown outcome is looked up by the runner; each order's state then arrives in on_order.
    if err.code == "unknown_status" then
      state.list = { done = {} }
    end
    pause.on_error(state, "place bracket", err, config.backoff_ms)
    return
  end
  state.brackets = state.brackets + 1
  state.list = { id = list.list_id, done = {} }
  log.info("bracket %d placed: list %d, buy %s at %s, take profit at %s, stop at %s",
    state.brackets, list.list_id, tostring(qty), tostring(entry), tostring(list.pending_above.price),
    tostring(list.pending_below.stop_price))
end

local FINAL = { FILLED = true, CANCELED = true, EXPIRED = true, EXPIRED_IN_MATCH = true, REJECTED = true }

-- The bracket is over once each of its orders is: which one filled says how it ended.
local function finish_if_done(list)
  local done = list.done
  if not (done.LIMIT and done.LIMIT_MAKER and done.STOP_LOSS_LIMIT) then
    return
  end
  local outcome
  if done.LIMIT_MAKER == "FILLED" then
    outcome = "take profit"
  elseif done.STOP_LOSS_LIMIT == "FILLED" then
    outcome = "stop loss"
  elseif done.LIMIT == "FILLED" then
    outcome = "closed without a fill of its pair"
  else
    outcome = "no entry"
  end
  log.info("bracket list %s done: %s", tostring(list.id), outcome)
  state.list = nil
  state.paused_until = math.max(state.paused_until, clock.now() + config.cooldown_ms)
end

return {
  symbols = { config.symbol },
  streams = { "book" },

  on_book = function(q)
    if state.list or clock.now() < state.paused_until then
      return
    end
    place_bracket(q)
  end,

  on_order = function(o)
    local list = state.list
    if not list or not o.list_id then
      return
    end
    if list.id == nil then
      -- Learned after an unknown outcome: the list is the one this order belongs to.
      list.id = o.list_id
    end
    if o.list_id ~= list.id then
      return
    end
    log.info("bracket list %d: %s %s %s (%s filled)", o.list_id, o.type, o.side, o.status, tostring(o.filled_qty))
    if FINAL[o.status] then
      list.done[o.type] = o.status
      finish_if_done(list)
    end
  end,

  on_stop = function(reason)
    local list = state.list
    if list and list.id then
      local _, err = orders.cancel_list { symbol = config.symbol, list_id = list.id }
      if err then
        log.error("on stop (%s): could not cancel bracket list %d: %s", reason, list.id, tostring(err))
      end
    end
    log.info("brackets placed: %d", state.brackets)
  end,
}
