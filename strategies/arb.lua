--[[
Triangular arbitrage.

A triangle is three markets over three assets, e.g. BTCUSDT, ETHBTC and ETHUSDT over USDT, BTC and ETH. Going
round it (USDT -> BTC -> ETH -> USDT: buy BTCUSDT at the ask, buy ETHBTC at the ask, sell ETHUSDT at the bid), or
the other way round, normally gives back a little less than you started with: three spreads and three fees. When
one market lags the other two, the round trip pays more than the fees. This strategy watches the best bid/ask of
every market of its triangles and trades a round trip when one clears `config.min_edge_bps` net of 3 fees.

Run it:
  runner strategies/arb.lua                  paper trading on the built-in simulated exchange
  runner check strategies/arb.lua            load and validate without trading
  runner strategies/arb.lua --testnet        Binance spot testnet (keys from the environment)

Knobs: the `config` table below. Save the file while it runs and it hot-reloads: the new version takes over
between two events, `state` (counters, PnL, even a cycle in flight) is kept, and on_reload runs instead of on_start.

How a cycle is executed (sequentially, each leg sized by what the previous one really filled):
  1. Leg 1 goes out as an IOC LIMIT at the quoted price. An IOC at a quote that just moved often fills nothing;
     then the cycle simply ends ("missed") having spent nothing but one request.
  2. Legs 2 and 3 go out one after the other, each an IOC LIMIT at its quoted price for the amount the previous
     leg actually produced (net of fee).
  3. If leg 2 or 3 fills short, the rest of that leg is completed with a MARKET order (`complete_with_market`), so
     the cycle ends back in the asset it started from instead of holding a stray position.
  So only the start asset must be held. Sending all three legs at once would save two round trips (holding every
  asset, no leg would wait for another's proceeds), but whenever leg 1 missed, the other two would be left as an
  unhedged position. On a local or
  co-located venue the extra round trips cost a few milliseconds; the dislocations this trades last seconds.

Safety: never more than one cycle in flight; a cooldown between cycles; on rate_limited / backoff / banned the
strategy pauses for the time the error says and never retries in a loop; an order whose outcome is unknown
(`unknown_status`) is followed up by client id until the host knows, and the cycle waits for it.
]]

local book = require("book")
local pause = require("pause")
local sizing = require("sizing")

local config = {
  -- Each triangle: its three markets and the asset a cycle starts and ends in (its PnL is counted in that asset).
  triangles = {
    { "BTCUSDT", "ETHBTC", "ETHUSDT", home = "USDT" },
    { "BTCUSDT", "BNBBTC", "BNBUSDT", home = "USDT" },
    { "ETHUSDT", "BNBETH", "BNBUSDT", home = "USDT" },
    { "BTCUSDT", "SOLBTC", "SOLUSDT", home = "USDT" },
    { "ETHBTC", "BNBETH", "BNBBTC", home = "BTC" },
  },
  fee_rate = 0.001, -- per fill (0.1 %)
  min_edge_bps = 5, -- required profit of a round trip after 3 fees, in basis points of the amount
  max_cycle = { USDT = 2000, BTC = 0.03 }, -- largest amount of the home asset put through one cycle
  book_fraction = 0.8, -- use at most this share of the quantity shown at the best price
  balance_fraction = 0.5, -- and at most this share of the free balance of the start asset
  max_quote_age_ms = 60000, -- ignore quotes older than this (a dead stream); a lagging leg is exactly what we want
  cooldown_ms = 1000, -- pause after each cycle
  complete_with_market = true, -- finish a short leg 2 or 3 with a MARKET order
  max_leg_attempts = 3, -- orders per leg at most (1 IOC + MARKET completions)
  incomplete_share = 0.01, -- a leg 2 or 3 leaving more than this share unconverted makes the cycle "incomplete"
  backoff_ms = 5000, -- pause after a budget error that gave no retry_after_ms
  check_ms = 2000, -- how often an order with an unknown outcome is looked up
  abandon_after_ms = 60000, -- give up tracking a cycle whose orders stay unknown this long (and say so loudly)
  report_ms = 30000,
}

-- State kept across hot reloads and restarts. Maps use string keys (it is saved as JSON).
state.cycles = state.cycles or 0 -- cycles started
state.outcomes = state.outcomes or {} -- outcome -> count: done, missed, incomplete, abandoned
state.opportunities = state.opportunities or 0 -- edges seen above the threshold
state.market_completions = state.market_completions or 0
state.errors = state.errors or {} -- error code -> count
state.pnl = state.pnl or {} -- home asset -> realised PnL estimate (flows valued at the mid when a cycle ends)
state.flows = state.flows or {} -- asset -> net amount moved by our fills, fees included (exact, not an estimate)
state.paused_until = state.paused_until or 0
state.cooldown_until = state.cooldown_until or 0
-- state.cycle: the cycle in flight, or nil

local FINAL = { FILLED = true, CANCELED = true, REJECTED = true, EXPIRED = true, FAILED = true }

---------------------------------------------------------------------------------------------------------------------
-- Triangles: built from market.info in on_start / on_reload, since the host answers it only once running.

local triangles = {} -- list of { name, home, cycles = { {legs...}, {legs...} } }
local by_symbol = {} -- symbol -> list of triangles that use it
local infos = {} -- symbol -> market.info

local function all_symbols()
  local seen, list = {}, {}
  for _, t in ipairs(config.triangles) do
    for i = 1, 3 do
      if not seen[t[i]] then
        seen[t[i]] = true
        list[#list + 1] = t[i]
      end
    end
  end
  return list
end

-- The market converting `from` into `to` among `symbols`, as a leg: selling the base or buying it with the quote.
local function leg_between(symbols, from, to)
  for _, s in ipairs(symbols) do
    local info = infos[s]
    if info.base == from and info.quote == to then
      return { symbol = s, side = "SELL", from = from, to = to }
    elseif info.quote == from and info.base == to then
      return { symbol = s, side = "BUY", from = from, to = to }
    end
  end
  return nil
end

local function build_triangles()
  triangles, by_symbol, infos = {}, {}, {}
  for _, t in ipairs(config.triangles) do
    local symbols = { t[1], t[2], t[3] }
    local assets, count = {}, 0
    for _, s in ipairs(symbols) do
      infos[s] = infos[s] or market.info(s)
      for _, a in ipairs({ infos[s].base, infos[s].quote }) do
        if not assets[a] then
          assets[a] = true
          count = count + 1
        end
      end
    end
    local home = t.home
    if count ~= 3 or not assets[home] then
      error(string.format("triangle %s/%s/%s must span exactly three assets including %s", t[1], t[2], t[3], home))
    end
    local others = {}
    for a in pairs(assets) do
      if a ~= home then
        others[#others + 1] = a
      end
    end
    table.sort(others) -- a stable order, so names and logs do not change between runs
    local x, y = others[1], others[2]
    local tri = {
      name = table.concat(symbols, "/"),
      home = home,
      cycles = {
        { leg_between(symbols, home, x), leg_between(symbols, x, y), leg_between(symbols, y, home) },
        { leg_between(symbols, home, y), leg_between(symbols, y, x), leg_between(symbols, x, home) },
      },
    }
    triangles[#triangles + 1] = tri
    for _, s in ipairs(symbols) do
      by_symbol[s] = by_symbol[s] or {}
      table.insert(by_symbol[s], tri)
    end
  end
end

---------------------------------------------------------------------------------------------------------------------
-- Errors and pauses

local function count(map, key)
  map[key] = (map[key] or 0) + 1
end

local function paused()
  return clock.now() < state.paused_until
end

-- Logs a failed call; budget errors pause the whole strategy for as long as the error says. Never retries here.
local function on_call_error(what, err)
  count(state.errors, err.code)
  if err.code == "stopped" then
    log.info("%s: %s", what, tostring(err))
  else
    pause.on_error(state, what, err, config.backoff_ms)
  end
end

---------------------------------------------------------------------------------------------------------------------
-- Pricing a cycle from the latest quotes

local function fresh_quote(symbol, now)
  local q = market.quote(symbol)
  if not q or not book.mid(q) then
    return nil
  end
  if q.time and now - q.time > config.max_quote_age_ms then
    return nil
  end
  return q
end

-- How much of `leg.to` one unit of `leg.from` buys at the best price, how much `from` the best level can absorb,
-- and that price.
local function leg_terms(leg, q)
  if leg.side == "SELL" then
    return q.bid, q.bid_qty, q.bid
  end
  return 1 / q.ask, q.ask_qty * q.ask, q.ask
end

-- Evaluates one direction: returns the net edge (fraction) and the largest start amount the books and balances
-- allow, or nil when a quote is missing.
local function price_cycle(legs, home, now, balances)
  local keep = 1 - config.fee_rate
  local factor = 1 -- units of this leg's input per unit of the start amount
  local max_start = config.max_cycle[home] or 0
  local planned = {}
  for i, leg in ipairs(legs) do
    local q = fresh_quote(leg.symbol, now)
    if not q then
      return nil
    end
    local rate, book_cap, price = leg_terms(leg, q)
    local cap = book_cap * config.book_fraction
    if i == 1 then
      -- Only the first leg spends from the balance: the later ones spend what the leg before them produced.
      local free = balances[leg.from] and balances[leg.from].free or 0
      cap = math.min(cap, free * config.balance_fraction)
    end
    max_start = math.min(max_start, cap / factor)
    planned[i] = price
    factor = factor * rate * keep
  end
  return factor - 1, max_start, planned
end

---------------------------------------------------------------------------------------------------------------------
-- Executing a cycle

-- Sums what the orders of leg `i` consumed (in leg.from) and received (in leg.to, net of fee).
local function leg_totals(c, i)
  local leg = c.legs[i]
  local consumed, received = 0, 0
  for _, rec in pairs(c.orders) do
    if rec.leg == i then
      local base, quote = rec.filled_qty, rec.filled_quote
      if leg.side == "SELL" then
        consumed, received = consumed + base, received + quote * (1 - config.fee_rate)
      else
        consumed, received = consumed + quote, received + base * (1 - config.fee_rate)
      end
    end
  end
  return consumed, received
end

local function leg_has_pending(c, i)
  for _, rec in pairs(c.orders) do
    if rec.leg == i and not FINAL[rec.status] then
      return true
    end
  end
  return false
end

-- Folds an order update into its record. Updates can repeat or arrive after the place() reply: filled amounts only
-- grow and a final status is never undone.
local function apply_update(rec, o)
  if o.filled_qty and o.filled_qty >= rec.filled_qty then
    rec.filled_qty = o.filled_qty
    rec.filled_quote = o.filled_qty * (o.avg_price or 0)
  end
  if not FINAL[rec.status] then
    rec.status = o.status
  end
  rec.id = o.id or rec.id
end

-- The base quantity to send for `amount` of leg.from at `price`, on the grid; nil when too small to be an order.
local function leg_qty(leg, amount, price)
  local qty = leg.side == "SELL" and amount or amount / price
  return (sizing.clamp_qty(infos[leg.symbol], qty, price))
end

-- Sends one order of leg `i`. Returns after the reply; the record says what happened.
local function send(c, i, order_type, qty)
  local leg = c.legs[i]
  leg.attempts = leg.attempts + 1
  local client_id = string.format("arb-%d-%d-%d", c.id, i, leg.attempts)
  -- Recorded before sending: if the reply is lost, on_order or a lookup by client id still finds the order.
  local rec = { leg = i, symbol = leg.symbol, status = "PENDING", filled_qty = 0, filled_quote = 0, sent = clock.now() }
  c.orders[client_id] = rec
  local request = { symbol = leg.symbol, side = leg.side, type = order_type, quantity = qty, client_id = client_id }
  if order_type == "LIMIT" then
    request.price, request.tif = leg.price, "IOC"
  end
  local o, err = orders.place(request)
  if o then
    if order_type == "MARKET" then
      state.market_completions = state.market_completions + 1
    end
    apply_update(rec, o)
  elseif err.code == "unknown_status" then
    on_call_error("leg " .. i .. " " .. leg.symbol, err) -- stays PENDING: the host is finding out
  else
    on_call_error("leg " .. i .. " " .. leg.symbol, err)
    rec.status = "FAILED" -- nothing was sent (or the exchange refused it): final, nothing filled
  end
end

local function value_in(asset, home, amount)
  if asset == home or amount == 0 then
    return amount
  end
  -- Only markets of our triangles are asked about: a symbol the exchange does not list is an error in the host.
  local direct = infos[asset .. home] and book.mid(market.quote(asset .. home))
  if direct then
    return amount * direct
  end
  local inverse = infos[home .. asset] and book.mid(market.quote(home .. asset))
  if inverse then
    return amount / inverse
  end
  return 0 -- not priceable here; it still shows in state.flows
end

local function finish(c, outcome)
  local flows = {}
  for i, leg in ipairs(c.legs) do
    local consumed, received = leg_totals(c, i)
    flows[leg.from] = (flows[leg.from] or 0) - consumed
    flows[leg.to] = (flows[leg.to] or 0) + received
  end
  local pnl = 0
  for asset, amount in pairs(flows) do
    state.flows[asset] = (state.flows[asset] or 0) + amount
    pnl = pnl + value_in(asset, c.home, amount)
  end
  state.pnl[c.home] = (state.pnl[c.home] or 0) + pnl
  count(state.outcomes, outcome)
  log.info("cycle %d %s %s: %s, pnl %.8f %s (expected edge %.1f bps, took %d ms)", c.id, c.triangle, c.direction,
    outcome, pnl, c.home, c.edge_bps, clock.now() - c.started)
  state.cycle = nil
  state.cooldown_until = clock.now() + config.cooldown_ms
  timer.cancel("cycle_check")
end

-- Moves the cycle on as far as it can go now; called after every reply and order update.
local function advance(c)
  while state.cycle == c do
    local i = c.stage
    local leg = c.legs[i]
    if leg_has_pending(c, i) then
      return -- on_order (or the periodic lookup) calls us again
    end
    local consumed, received = leg_totals(c, i)
    local q = market.quote(leg.symbol)
    local order_type, qty
    if leg.attempts == 0 then
      order_type, qty = "LIMIT", leg_qty(leg, leg.input, leg.price)
    elseif i > 1 and config.complete_with_market and leg.attempts < config.max_leg_attempts and q then
      local _, _, price = leg_terms(leg, q)
      order_type, qty = "MARKET", leg_qty(leg, leg.input - consumed, price)
    end
    if qty then
      if paused() then
        timer.after(math.max(state.paused_until - clock.now(), 1), "resume")
        return
      end
      send(c, i, order_type, qty)
    elseif i == 1 and consumed == 0 then
      return finish(c, "missed")
    else
      -- A later leg that could not convert (nearly) all its input leaves part of the cycle as a position.
      if i > 1 and consumed < leg.input * (1 - config.incomplete_share) then
        c.incomplete = true
        log.warn("cycle %d: leg %d %s converted %.8f of %.8f %s", c.id, i, leg.symbol, consumed, leg.input, leg.from)
      end
      if i == 3 then
        return finish(c, c.incomplete and "incomplete" or "done")
      end
      c.stage = i + 1
      c.legs[i + 1].input = received
    end
  end
end

local function start_cycle(tri, direction, legs, edge, start_amount, prices)
  state.cycles = state.cycles + 1
  local c = {
    id = state.cycles,
    triangle = tri.name,
    direction = direction,
    home = tri.home,
    edge_bps = edge * 1e4,
    started = clock.now(),
    stage = 1,
    legs = {},
    orders = {},
  }
  for i, leg in ipairs(legs) do
    c.legs[i] = { symbol = leg.symbol, side = leg.side, from = leg.from, to = leg.to, price = prices[i], attempts = 0 }
  end
  c.legs[1].input = start_amount
  state.cycle = c
  timer.every(config.check_ms, "cycle_check")
  advance(c)
end

---------------------------------------------------------------------------------------------------------------------
-- Following up orders with an unknown outcome

local function check_cycle()
  local c = state.cycle
  if not c then
    timer.cancel("cycle_check")
    return
  end
  for client_id, rec in pairs(c.orders) do
    if not FINAL[rec.status] then
      local o, err = orders.get(rec.symbol, client_id)
      if o then
        apply_update(rec, o)
      else
        on_call_error("lookup " .. client_id, err)
      end
    end
  end
  if state.cycle == c and clock.now() - c.started > config.abandon_after_ms then
    log.error("cycle %d: orders still unresolved after %d ms; no longer tracking it. Check the account.", c.id,
      config.abandon_after_ms)
    return finish(c, "abandoned")
  end
  advance(c)
end

---------------------------------------------------------------------------------------------------------------------
-- Looking for opportunities

local function look(symbol)
  if state.cycle or #triangles == 0 then
    return -- one cycle at a time
  end
  local now = clock.now()
  if now < state.cooldown_until or now < state.paused_until then
    return
  end
  local balances = nil
  local best
  for _, tri in ipairs(by_symbol[symbol] or {}) do
    for d, legs in ipairs(tri.cycles) do
      balances = balances or account.balances()
      local edge, max_start, prices = price_cycle(legs, tri.home, now, balances)
      if edge and edge * 1e4 >= config.min_edge_bps and (not best or edge > best.edge) then
        best = { tri = tri, direction = d == 1 and "forward" or "reverse", legs = legs, edge = edge,
          amount = max_start, prices = prices }
      end
    end
  end
  if not best then
    return
  end
  state.opportunities = state.opportunities + 1
  if ledger.status().state ~= "normal" then
    return -- the exchange asked everyone to wait; the host would refuse anyway
  end
  if best.amount <= 0 or not leg_qty(best.legs[1], best.amount, best.prices[1]) then
    log.debug("%s %s: edge %.1f bps but too small to trade", best.tri.name, best.direction, best.edge * 1e4)
    return
  end
  start_cycle(best.tri, best.direction, best.legs, best.edge, best.amount, best.prices)
end

local function report()
  local parts = {}
  for home, pnl in pairs(state.pnl) do
    parts[#parts + 1] = string.format("%.8f %s", pnl, home)
  end
  local mine = ledger.status().mine
  log.info("report: %d cycles (done %d, missed %d, incomplete %d, abandoned %d), %d opportunities, "
    .. "%d market completions, pnl %s, weight used this window %d", state.cycles, state.outcomes.done or 0,
    state.outcomes.missed or 0, state.outcomes.incomplete or 0, state.outcomes.abandoned or 0, state.opportunities,
    state.market_completions,
    #parts > 0 and table.concat(parts, ", ") or "0", mine.weight)
end

-- Timers are owned by the host and survive reloads; registering them again applies a changed interval.
local function arm_timers()
  timer.every(config.report_ms, "report")
  if state.cycle then
    timer.every(config.check_ms, "cycle_check")
  end
end

return {
  name = "tri-arb",
  symbols = all_symbols(),
  streams = { "book" },
  order_wait_ms = 500, -- a cycle is only worth it now; better to fail fast than to queue for budget

  on_start = function()
    build_triangles()
    arm_timers()
    log.info("watching %d triangles over %d markets, threshold %.1f bps net of fees", #triangles,
      #all_symbols(), config.min_edge_bps)
  end,

  on_reload = function()
    build_triangles()
    arm_timers()
    log.info("reloaded; %d cycles so far, cycle in flight: %s", state.cycles, state.cycle and state.cycle.id or "none")
  end,

  on_book = function(q)
    look(q.symbol)
  end,

  on_order = function(o)
    local c = state.cycle
    local rec = c and c.orders[o.client_id]
    if rec then
      apply_update(rec, o)
      advance(c)
    end
  end,

  on_timer = function(name)
    if name == "report" then
      report()
    elseif name == "cycle_check" then
      check_cycle()
    elseif name == "resume" and state.cycle then
      advance(state.cycle)
    end
  end,

  on_stop = function(reason)
    report()
    if state.cycle then
      log.warn("stopping (%s) with cycle %d in flight; it is kept in state and followed up on the next start",
        reason, state.cycle.id)
    end
  end,
}
