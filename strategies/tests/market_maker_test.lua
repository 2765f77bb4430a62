local T = require("assert")
local fake_host = require("fake_host")
local P = require("paper")

local function setup()
  local h = P.host(fake_host)
  h:load("market_maker")
  h:start()
  P.quote(h, "BTCUSDT", 60000) -- 59994 / 60006, equal sizes: microprice 60000
  return h
end

local function last(h, side)
  local found
  for _, r in ipairs(h.placed) do
    if r.side == side then
      found = r
    end
  end
  return found
end

return T.run("market_maker", {
  quotes_both_sides_post_only_around_the_microprice = function()
    local h = setup()
    T.eq(#h.placed, 2)
    local bid, ask = last(h, "BUY"), last(h, "SELL")
    T.eq(bid.type, "LIMIT_MAKER")
    T.eq(ask.type, "LIMIT_MAKER")
    T.eq(bid.price, 59910) -- 60000 - 15 bps
    T.eq(ask.price, 60090)
    T.eq(bid.quantity, 0.01)
    T.eq(#orders.open("BTCUSDT"), 2)
  end,

  small_moves_keep_the_quotes_large_ones_replace_them = function()
    local h = setup()
    h:advance(600)
    P.quote(h, "BTCUSDT", 60010) -- 1.7 bps: below requote_bps
    T.eq(#h.placed, 2)
    P.quote(h, "BTCUSDT", 60030) -- 5 bps: replace both sides
    T.eq(#h.placed, 4)
    T.eq(h.cancels, 2)
    T.eq(last(h, "BUY").price, 59939.95) -- 60030 x (1 - 0.0015), rounded down to the tick
    T.eq(#orders.open("BTCUSDT"), 2)
  end,

  replacing_is_rate_limited_per_side = function()
    local h = setup()
    P.quote(h, "BTCUSDT", 60100) -- a big move, but the quotes are younger than min_requote_ms
    T.eq(#h.placed, 2)
    h:advance(500)
    P.quote(h, "BTCUSDT", 60100)
    T.eq(#h.placed, 4)
  end,

  a_fill_moves_the_position_and_skews_the_quotes = function()
    local h = setup()
    h:advance(600)
    P.quote(h, "BTCUSDT", 59850) -- the ask drops through our bid at 59910: we buy 0.01
    T.near(state.pos.base, 0.00999, 1e-12)
    T.eq(state.pos.fills, 1)
    -- inventory 0.00999 / 0.05 = 20 % of the limit: the center moves 2 bps down
    local center = 59850 * (1 - 0.1998 * 10 / 1e4)
    T.eq(last(h, "BUY").price, math.floor(center * (1 - 0.0015) * 100) / 100)
  end,

  at_the_position_limit_the_adding_side_is_withdrawn = function()
    local h = setup()
    state.pos.base = 0.06
    h:advance(600)
    P.quote(h, "BTCUSDT", 60100)
    local open = orders.open("BTCUSDT")
    T.eq(#open, 1)
    T.eq(open[1].side, "SELL")
  end,

  near_the_budget_limit_it_stops_replacing = function()
    local h = setup()
    h.ledger.pools = {
      { type = "ORDERS", interval = "SECOND", interval_num = 10, limit = 100, used = 90, resets_at = h.now + 5000 },
    }
    h:advance(2100) -- past the slowed-down requote interval (4 x min_requote_ms)
    P.quote(h, "BTCUSDT", 60300)
    T.eq(#h.placed, 2)
    T.eq(h.cancels, 0)
    T.truthy(state.budget_skips > 0)
    h.ledger.pools[1].used = 10
    h:advance(300) -- the cached budget reading expires
    P.quote(h, "BTCUSDT", 60300)
    T.eq(#h.placed, 4)
  end,

  budget_errors_pause_quoting = function()
    local h = P.host(fake_host)
    h:load("market_maker")
    h:start()
    h.fail_next = fake_host.err("backoff", "429 from the exchange", { retry_after_ms = 2000 })
    P.quote(h, "BTCUSDT", 60000)
    T.eq(#h.placed, 1) -- the BUY failed; the SELL was not even tried
    P.quote(h, "BTCUSDT", 60000)
    T.eq(#h.placed, 1)
    h:advance(2000)
    P.quote(h, "BTCUSDT", 60000)
    T.eq(#h.placed, 3)
  end,

  a_rejected_quote_is_not_retried_on_the_next_event = function()
    local h = P.host(fake_host)
    h:load("market_maker")
    h:start()
    h.fail_next = fake_host.err("rejected", "Account has insufficient balance for requested action.",
      { exchange_code = -2010 })
    P.quote(h, "BTCUSDT", 60000)
    T.eq(#h.placed, 2) -- the BUY was rejected, the SELL went out
    P.quote(h, "BTCUSDT", 60000)
    T.eq(#h.placed, 2)
    h:advance(2000)
    P.quote(h, "BTCUSDT", 60000)
    T.eq(#h.placed, 3)
    T.eq(last(h, "BUY").price, 59910)
    T.eq(state.rejected, 1)
  end,

  stopping_cancels_the_quotes = function()
    local h = setup()
    h:call("on_stop", "shutdown")
    T.eq(#orders.open("BTCUSDT"), 0)
    T.is_nil(next(state.working))
  end,

  reload_keeps_position_and_working_orders = function()
    local h = setup()
    h:reload("market_maker")
    T.eq(state.placed, 2)
    P.quote(h, "BTCUSDT", 60000)
    T.eq(#h.placed, 2, "the kept quotes are still good")
  end,
})
