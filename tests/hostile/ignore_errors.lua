-- Hostile: ignores every error and retries at once, forever.
return {
  name = "ignore_errors",
  symbols = { "BTCUSDT" },
  on_start = function()
    while true do
      market.ticker("BTCUSDT")
    end
  end,
}
