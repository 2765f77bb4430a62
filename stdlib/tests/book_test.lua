local T = require("assert")
local book = require("book")

local q = { symbol = "BTCUSDT", bid = 100, bid_qty = 3, ask = 101, ask_qty = 1 }
local empty_ask = { bid = 100, bid_qty = 1, ask = 0, ask_qty = 0 }

local depth = {
  symbol = "BTCUSDT",
  bids = { { 100, 1 }, { 99, 2 }, { 98, 5 } },
  asks = { { 101, 0.5 }, { 102, 1.5 }, { 105, 10 } },
}

return T.run("book", {
  mid_spread_and_bps = function()
    T.eq(book.mid(q), 100.5)
    T.eq(book.spread(q), 1)
    T.near(book.spread_bps(q), 1 / 100.5 * 1e4, 1e-9)
    T.is_nil(book.mid(empty_ask))
    T.is_nil(book.spread(empty_ask))
    T.is_nil(book.spread_bps(nil))
  end,

  microprice_leans_to_the_thin_side = function()
    -- (100 * 1 + 101 * 3) / 4: three times more bids, so the ask is closer to being lifted
    T.eq(book.microprice(q), 100.75)
    T.eq(book.microprice({ bid = 100, bid_qty = 2, ask = 102, ask_qty = 2 }), 101)
    T.eq(book.microprice({ bid = 100, bid_qty = 0, ask = 102, ask_qty = 0 }), 101)
    T.is_nil(book.microprice(empty_ask))
  end,

  imbalance = function()
    T.eq(book.imbalance(q), 0.5) -- (3 - 1) / 4
    T.is_nil(book.imbalance({ bid = 1, bid_qty = 0, ask = 2, ask_qty = 0 }))
    T.near(book.depth_imbalance(depth, 2), (3 - 2) / 5, 1e-12)
    T.near(book.depth_imbalance(depth), (8 - 12) / 20, 1e-12)
  end,

  top_of_depth = function()
    local top = book.top(depth)
    T.eq(top.bid, 100)
    T.eq(top.ask_qty, 0.5)
    T.eq(book.mid(top), 100.5)
    local one_sided = book.top({ bids = {}, asks = { { 5, 1 } } })
    T.eq(one_sided.bid, 0)
    T.is_nil(book.mid(one_sided))
  end,

  depth_weighted_price_walks_levels = function()
    local avg, worst = book.depth_weighted_price(depth.asks, 0.5)
    T.eq(avg, 101)
    T.eq(worst, 101)
    -- 0.5 @ 101 + 1.5 @ 102 = 203.5 for 2
    avg, worst = book.depth_weighted_price(depth.asks, 2)
    T.near(avg, 203.5 / 2, 1e-12)
    T.eq(worst, 102)
    -- selling 2 into the bids: 1 @ 100 + 1 @ 99
    T.near(book.depth_weighted_price(depth.bids, 2), 99.5, 1e-12)
    T.is_nil(book.depth_weighted_price(depth.asks, 12.01)) -- only 12 on offer
    T.near(book.depth_weighted_price(depth.asks, 12), (50.5 + 153 + 1050) / 12, 1e-9)
    T.raises(function()
      book.depth_weighted_price(depth.asks, 0)
    end, "qty must be a positive number")
  end,

  depth_weighted_price_ignores_float_dust = function()
    local levels = { { 1, 0.1 }, { 2, 0.2 } }
    -- 0.1 + 0.2 is 0.30000000000000004 in floats; asking for 0.3 must still fill
    T.truthy(book.depth_weighted_price(levels, 0.3))
  end,

  takeable_qty = function()
    T.eq(book.takeable_qty(depth, "BUY", 102), 2)
    T.eq(book.takeable_qty(depth, "BUY", 100.5), 0)
    T.eq(book.takeable_qty(depth, "SELL", 99), 3)
    T.eq(book.takeable_qty(nil, "SELL", 99), 0)
    T.raises(function()
      book.takeable_qty(depth, "buy", 1)
    end, "side must be")
  end,
})
