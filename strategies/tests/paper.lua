-- Market rules and fair prices resembling the built-in paper exchange, for the example strategies' tests.

local sizing = require("sizing")

local P = {}

P.infos = {
  BTCUSDT = { base = "BTC", quote = "USDT", tick_size = 0.01, step_size = 0.00001, min_qty = 0.00001, max_qty = 9000,
    min_notional = 5 },
  ETHUSDT = { base = "ETH", quote = "USDT", tick_size = 0.01, step_size = 0.0001, min_qty = 0.0001, max_qty = 9000,
    min_notional = 5 },
  ETHBTC = { base = "ETH", quote = "BTC", tick_size = 0.00001, step_size = 0.0001, min_qty = 0.0001, max_qty = 100000,
    min_notional = 0.0001 },
  BNBUSDT = { base = "BNB", quote = "USDT", tick_size = 0.01, step_size = 0.001, min_qty = 0.001, max_qty = 90000,
    min_notional = 5 },
  BNBBTC = { base = "BNB", quote = "BTC", tick_size = 0.000001, step_size = 0.001, min_qty = 0.001, max_qty = 90000,
    min_notional = 0.0001 },
  BNBETH = { base = "BNB", quote = "ETH", tick_size = 0.00001, step_size = 0.001, min_qty = 0.001, max_qty = 90000,
    min_notional = 0.001 },
  SOLUSDT = { base = "SOL", quote = "USDT", tick_size = 0.01, step_size = 0.001, min_qty = 0.001, max_qty = 90000,
    min_notional = 5 },
  SOLBTC = { base = "SOL", quote = "BTC", tick_size = 0.0000001, step_size = 0.001, min_qty = 0.001, max_qty = 90000,
    min_notional = 0.0001 },
}

P.balances = { BTC = 10, ETH = 100, USDT = 100000, BNB = 1000, SOL = 0 }

P.fair = { BTCUSDT = 60000, ETHUSDT = 3000, ETHBTC = 0.05, BNBUSDT = 600, BNBBTC = 0.01, BNBETH = 0.2,
  SOLUSDT = 150, SOLBTC = 0.0025 }

--- Quotes every market around its fair price, 1 bp either side, on the tick grid, with `qty_usdt` worth per side.
function P.quote_all(h, qty_usdt)
  local names = {}
  for s in pairs(P.fair) do
    names[#names + 1] = s
  end
  table.sort(names)
  for _, s in ipairs(names) do
    P.quote(h, s, P.fair[s], qty_usdt)
  end
end

local usdt_price = { BTC = 60000, ETH = 3000, BNB = 600, SOL = 150, USDT = 1 }

function P.quote(h, symbol, fair, qty_usdt)
  local info = P.infos[symbol]
  local bid = sizing.passive_price(fair * (1 - 1e-4), info.tick_size, "BUY")
  local ask = sizing.passive_price(fair * (1 + 1e-4), info.tick_size, "SELL")
  local qty = sizing.round_to_step((qty_usdt or 20000) / usdt_price[info.base], info.step_size)
  h:quote(symbol, bid, qty, ask, qty)
end

function P.host(fake_host, overrides)
  local opts = { infos = P.infos, balances = {} }
  for k, v in pairs(P.balances) do
    opts.balances[k] = v
  end
  for k, v in pairs(overrides or {}) do
    opts[k] = v
  end
  return fake_host.new(opts):install()
end

return P
