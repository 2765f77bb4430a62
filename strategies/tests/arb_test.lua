local T = require("assert")
local fake_host = require("fake_host")
local P = require("paper")

-- A host with calm markets and a started arb strategy.
local function setup(overrides)
  local h = P.host(fake_host, overrides)
  local s = h:load("arb")
  h:start()
  P.quote_all(h)
  return h, s
end

-- ETH cheap in BTC: USDT -> BTC -> ETH -> USDT pays about 66 bps after fees.
local function dislocate(h)
  P.quote(h, "ETHBTC", 0.0495)
end

local function on_grid(x, step)
  local n = x / step
  return math.abs(n - math.floor(n + 0.5)) < 1e-9 * n
end

return T.run("arb", {
  declares_its_markets_and_stream = function()
    local h = P.host(fake_host)
    local s = h:load("arb")
    T.eq(#s.symbols, 8)
    T.eq(s.streams[1], "book")
    T.eq(type(s.on_book), "function")
    T.eq(type(s.on_order), "function")
  end,

  calm_markets_do_not_trade = function()
    local h = setup()
    T.eq(#h.placed, 0)
    T.eq(state.cycles, 0)
  end,

  a_dislocation_trades_one_full_cycle = function()
    local h = setup()
    dislocate(h)
    local r = h.placed
    T.eq(#r, 3, "three legs")
    T.eq(r[1].symbol, "BTCUSDT")
    T.eq(r[1].side, "BUY")
    T.eq(r[2].symbol, "ETHBTC")
    T.eq(r[2].side, "BUY")
    T.eq(r[3].symbol, "ETHUSDT")
    T.eq(r[3].side, "SELL")
    for i = 1, 3 do
      T.eq(r[i].type, "LIMIT")
      T.eq(r[i].tif, "IOC")
      T.truthy(on_grid(r[i].quantity, P.infos[r[i].symbol].step_size), "quantity on grid, leg " .. i)
      T.truthy(r[i].client_id:match("^arb%-1%-" .. i .. "%-1$"), r[i].client_id)
    end
    T.eq(r[1].price, 60006) -- the quoted ask
    T.eq(r[1].quantity, 0.03333) -- 2000 USDT (max_cycle) / 60006, down to the step
    -- leg 2 spends what leg 1 received net of fee: 0.03333 * 0.999 BTC at 0.04951
    T.eq(r[2].quantity, 0.6725)
    T.eq(r[3].quantity, 0.6718) -- 0.6725 * 0.999 ETH, down to the step
    T.eq(state.outcomes.done, 1)
    T.is_nil(state.cycle)
    T.truthy(state.pnl.USDT > 10 and state.pnl.USDT < 16, "pnl " .. tostring(state.pnl.USDT))
    T.near(state.flows.USDT, 0.6718 * 2999.7 * 0.999 - 0.03333 * 60006, 1e-6)
  end,

  only_the_start_asset_must_be_held = function()
    local h = setup({ balances = { USDT = 5000 } })
    dislocate(h)
    T.eq(#h.placed, 3)
    T.eq(state.outcomes.done, 1)
    T.truthy(h.free.USDT > 5000, "ended with more USDT than it started with")
  end,

  one_cycle_at_a_time_and_a_cooldown = function()
    local h = setup()
    dislocate(h)
    T.eq(#h.placed, 3)
    P.quote(h, "ETHBTC", 0.0495) -- still dislocated, but inside the cooldown
    T.eq(#h.placed, 3)
    h:advance(1000)
    P.quote(h, "ETHBTC", 0.0495)
    T.eq(#h.placed, 6)
    T.eq(state.cycles, 2)
  end,

  a_missed_first_leg_ends_the_cycle = function()
    local h = setup()
    h.ioc_fill_ratio.BTCUSDT = 0 -- the quote was gone by the time the order arrived
    dislocate(h)
    T.eq(#h.placed, 1)
    T.eq(state.outcomes.missed, 1)
    T.is_nil(state.cycle)
    T.eq(state.pnl.USDT, 0)
  end,

  a_short_later_leg_is_completed_at_market = function()
    local h = setup()
    h.ioc_fill_ratio.ETHBTC = 0.5
    dislocate(h)
    local r = h.placed
    T.eq(#r, 4)
    T.eq(r[3].symbol, "ETHBTC")
    T.eq(r[3].type, "MARKET")
    T.eq(r[3].side, "BUY")
    T.eq(r[4].symbol, "ETHUSDT")
    T.eq(state.market_completions, 1)
    T.eq(state.outcomes.done, 1)
    -- the cycle ends back in USDT: nearly all the BTC bought in leg 1 was spent
    T.truthy(math.abs(state.flows.BTC) < 0.0001, "BTC left over " .. state.flows.BTC)
  end,

  a_later_leg_that_cannot_complete_is_reported_incomplete = function()
    local h = setup()
    h.ioc_fill_ratio.ETHBTC = 0.5
    -- Leg 1 and the half-filled leg 2 go through; the MARKET completion of leg 2 is refused every time.
    local place = h.place
    h.place = function(self, req)
      if req.type == "MARKET" then
        self.placed[#self.placed + 1] = req
        return nil, fake_host.err("rejected", "Account has insufficient balance for requested action.",
          { exchange_code = -2010 })
      end
      return place(self, req)
    end
    dislocate(h)
    T.eq(state.outcomes.incomplete, 1)
    T.is_nil(state.outcomes.done)
    T.eq(#h:requests("ETHBTC"), 3) -- the IOC and two MARKET tries (max_leg_attempts = 3)
    T.eq(state.errors.rejected, 2)
    T.truthy(#h:log_lines("warn") > 0)
  end,

  budget_errors_pause_without_retrying = function()
    local h = setup()
    h.fail_next = fake_host.err("rate_limited", "no budget", { retry_after_ms = 3000 })
    dislocate(h)
    T.eq(#h.placed, 1)
    T.eq(state.outcomes.missed, 1)
    T.eq(state.errors.rate_limited, 1)
    h:advance(1500) -- cooldown over, still paused
    P.quote(h, "ETHBTC", 0.0495)
    T.eq(#h.placed, 1)
    h:advance(1500)
    P.quote(h, "ETHBTC", 0.0495)
    T.eq(#h.placed, 4)
  end,

  an_unknown_outcome_is_followed_up_by_client_id = function()
    local h = setup()
    h.lose_next_reply = true -- leg 1 fills at the exchange, but the reply never arrives
    dislocate(h)
    T.eq(#h.placed, 1)
    T.truthy(state.cycle, "cycle waits for the outcome")
    P.quote(h, "ETHBTC", 0.0495)
    T.eq(#h.placed, 1, "no second cycle while one is in flight")
    h:advance(2000) -- the periodic lookup finds leg 1 FILLED and the cycle goes on
    T.eq(#h.placed, 3)
    T.eq(state.outcomes.done, 1)
  end,

  hot_reload_keeps_counters_and_timers = function()
    local h = setup()
    dislocate(h)
    T.eq(state.cycles, 1)
    h:reload("arb")
    T.eq(state.cycles, 1)
    T.eq(state.outcomes.done, 1)
    T.truthy(h.timers.report, "report timer still armed")
    h:advance(30000)
    local reports = 0
    for _, line in ipairs(h:log_lines("info")) do
      if line:find("^report: 1 cycles") then
        reports = reports + 1
      end
    end
    T.eq(reports, 1)
  end,
})
