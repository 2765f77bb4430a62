-- Wants exactly one OTOCO on BTCUSDT: a resting buy with a take-profit and a stop-loss pending on
-- it. It places the list once the bid passes 100000 (the test moves the price there after
-- injecting a fault) and never re-sends a list whose outcome is unknown. The stop-loss stands far below: the
-- exchange checks the pair against the last trade, which may still be at the price before the move.
local placing = false

return {
  name = "one_list",
  symbols = { "BTCUSDT" },
  streams = { "book" },
  order_wait_ms = 5000,
  on_start = function() log.info("one_list ready") end,
  on_book = function(q)
    if placing or q.bid < 100000 then return end
    placing = true
    local function px(f) return market.round_price("BTCUSDT", q.bid * f) end
    local list, err = orders.place_list {
      symbol = "BTCUSDT", type = "otoco", client_id = "list-1",
      working = { side = "BUY", type = "LIMIT", quantity = 0.001, price = px(0.8), client_id = "list-1-w" },
      pending_above = { side = "SELL", type = "LIMIT_MAKER", quantity = 0.001, price = px(1.2), client_id = "list-1-a" },
      pending_below = { side = "SELL", type = "STOP_LOSS_LIMIT", quantity = 0.001, stop_price = px(0.5),
        price = px(0.49), client_id = "list-1-b" },
    }
    if list then
      log.info("place_list list-1 -> %s", tostring(list.list_id))
    else
      log.info("place_list list-1 -> error %s", err.code)
    end
  end,
  on_order = function(o)
    log.info("on_order %s %s list=%s", o.client_id, o.status, tostring(o.list_id))
  end,
}
