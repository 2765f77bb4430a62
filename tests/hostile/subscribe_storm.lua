-- Hostile: every saved version asks for a different set of symbols and streams (the test
-- rewrites this file many times a second), so subscriptions churn and connections come and go.
local SYMBOLS = { "BTCUSDT" } -- VERSION 0

state.reloads = state.reloads or 0

return {
  name = "subscribe_storm",
  symbols = SYMBOLS,
  streams = { "book", "trade", "depth" },
  on_reload = function()
    state.reloads = state.reloads + 1
    log.info("subscribe_storm reload=%d symbols=%d", state.reloads, #SYMBOLS)
  end,
}
