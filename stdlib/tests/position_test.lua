local T = require("assert")
local position = require("position")

local function order(cid, side, status, filled, avg)
  return { client_id = cid, side = side, status = status, filled_qty = filled, avg_price = avg }
end

return T.run("position", {
  fills_move_base_and_quote_net_of_fee = function()
    local p = position.new()
    local dq, price = position.apply(p, order("a", "BUY", "FILLED", 2, 100), 0.001)
    T.eq(dq, 2)
    T.eq(price, 100)
    T.near(p.base, 1.998, 1e-12)
    T.eq(p.quote, -200)
    position.apply(p, order("b", "SELL", "FILLED", 1, 110), 0.001)
    T.near(p.base, 0.998, 1e-12)
    T.near(p.quote, -200 + 109.89, 1e-9)
    T.eq(p.fills, 2)
    T.near(position.value(p, 110), -200 + 109.89 + 0.998 * 110, 1e-9)
  end,

  partial_fills_count_only_their_growth = function()
    local p = position.new()
    position.apply(p, order("a", "BUY", "PARTIALLY_FILLED", 1, 100))
    local dq, price = position.apply(p, order("a", "BUY", "PARTIALLY_FILLED", 3, 102)) -- 2 more at 103
    T.eq(dq, 2)
    T.near(price, 103, 1e-12)
    T.eq(p.base, 3)
    T.near(p.quote, -306, 1e-9)
  end,

  repeated_and_late_updates_are_not_counted_twice = function()
    local p = position.new()
    position.apply(p, order("a", "SELL", "FILLED", 1, 50))
    T.eq(position.apply(p, order("a", "SELL", "FILLED", 1, 50)), 0) -- the same final state again
    T.eq(position.apply(p, order("a", "SELL", "PARTIALLY_FILLED", 0.5, 50)), 0) -- an older update arriving late
    T.eq(p.base, -1)
    T.eq(p.quote, 50)
    T.eq(p.fills, 1)
  end,

  finished_orders_are_forgotten_after_a_while = function()
    local p = position.new()
    for i = 1, 500 do
      position.apply(p, order("o" .. i, "BUY", "CANCELED", 0, 0))
    end
    local remembered = 0
    for _ in pairs(p.seen) do
      remembered = remembered + 1
    end
    T.eq(remembered, 200)
    T.eq(#p.finished, 200)
  end,
})
