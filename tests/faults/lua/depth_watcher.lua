-- Follows the local order book of BTCUSDT and reports the update id it has reached.
return {
  name = "depth_watcher",
  symbols = { "BTCUSDT" },
  streams = { "depth" },
  on_depth = function(symbol)
    local book = market.book(symbol, 5)
    if book then
      log.info("depth %s update_id=%d bids=%d asks=%d", symbol, book.update_id, #book.bids, #book.asks)
    end
  end,
}
