---@meta _
-- LuaLS definitions of the strategy API of `runner` (contract v1). Nothing here runs: the host provides these
-- globals. Point the language server at this file and at stdlib/ to get completion, hover docs and type checks
-- (strategies/.luarc.json does this when strategies/ is the workspace folder):
--
--   .luarc.json   { "runtime.version": "Lua 5.4", "workspace.library": ["<runner>/stdlib"],
--                   "runtime.builtin": { "io": "disable", "debug": "disable", "os": "disable", "package": "disable" } }
--
-- Calls that touch the exchange are *blocking from Lua's point of view*: the strategy's coroutine waits while the
-- host keeps running everything else. Every exchange request is first charged to the shared rate-limit ledger; the
-- cost of each call is given as "Cost:" below (REST weight of the 6000-per-minute IP pool, order pools).
--
-- Expected failures return `nil, err` (see `runner.Error`); programming mistakes (wrong argument types, an unknown
-- symbol, a bad side/type/tif) raise a Lua error.

error("runner.d.lua only describes the API for the language server; it is not meant to be loaded")

---------------------------------------------------------------------------------------------------------------------
-- Enumerations

---@alias runner.Side
---| "BUY"
---| "SELL"

---@alias runner.OrderType
---| "LIMIT"        # rests on the book at `price` (needs `price`; `tif` defaults to "GTC")
---| "MARKET"       # takes liquidity now (`quantity` in base, or `quote_quantity` in quote)
---| "LIMIT_MAKER"  # a LIMIT that is rejected instead of taking liquidity (post-only)
---| "STOP_LOSS"          # a MARKET order once the last price reaches `stop_price` (or trails by `trailing_delta`)
---| "STOP_LOSS_LIMIT"    # a LIMIT order at `price` once triggered (`tif` defaults to "GTC")
---| "TAKE_PROFIT"        # a MARKET order once the last price reaches `stop_price` in your favour
---| "TAKE_PROFIT_LIMIT"  # a LIMIT order at `price` once triggered in your favour

---@alias runner.TimeInForce
---| "GTC"  # good till cancelled (default for LIMIT)
---| "IOC"  # immediate or cancel: fill what can be filled now, expire the rest
---| "FOK"  # fill or kill: fill everything now or nothing

---@alias runner.SelfTradePrevention "NONE"|"EXPIRE_TAKER"|"EXPIRE_MAKER"|"EXPIRE_BOTH"|"DECREMENT"

---@alias runner.OrderStatus
---| "PENDING"           # sent; the outcome is not known yet
---| "PENDING_NEW"       # accepted as a leg of an order list that is not working yet
---| "NEW"               # accepted, resting on the book (or a stop order waiting for its trigger)
---| "PARTIALLY_FILLED"
---| "FILLED"
---| "CANCELED"
---| "REJECTED"
---| "EXPIRED"           # IOC/FOK remainder, or expired by the exchange
---| "EXPIRED_IN_MATCH"  # expired by self-trade prevention

---@alias runner.ErrorCode
---| "rate_limited"    # the budget would be exceeded and the call's wait deadline passed; nothing was sent
---| "backoff"         # the exchange asked everyone to wait (429); `retry_after_ms` says how long; nothing was sent
---| "banned"          # the IP is banned (418) until `retry_after_ms`; nothing was sent
---| "invalid_order"   # refused locally by a filter, a bad parameter or a risk limit; nothing was sent, no weight spent
---| "rejected"        # the exchange refused it; `exchange_code` holds its code (e.g. -2010)
---| "unknown_status"  # sent, but the outcome is not known yet (timeout, 5xx); `on_order` will tell
---| "network"         # could not reach the exchange; nothing is known to have arrived
---| "stopped"         # the runtime is shutting down
---| "unavailable"     # the exchange is failing and its circuit breaker is open; nothing was sent; `retry_after_ms` says when to try again

---@alias runner.StopReason
---| "shutdown"        # the process is stopping (Ctrl-C, signal)
---| "duration"        # `--duration` elapsed
---| "error"           # the strategy faulted too often and was stopped
---| "reload-removed"  # never sent: a removed file keeps running until it is back (kept so older scripts type-check)

---@alias runner.LedgerState
---| "normal"
---| "throttled"  # the exchange answered 429: nothing is sent until `resume_at`
---| "banned"     # the exchange answered 418: nothing is sent until `resume_at`

---@alias runner.PoolType
---| "REQUEST_WEIGHT"  # per IP, REST and WebSocket API together
---| "ORDERS"          # unfilled order count, per account
---| "RAW_REQUESTS"    # every request counts 1, per IP
---| "CONNECTIONS"     # WebSocket connection attempts, per IP

---@alias runner.Stream
---| "book"      # best bid/ask of each symbol -> on_book
---| "depth"     # the host-maintained local order book -> on_depth
---| "trade"     # every trade -> on_trade
---| "kline_1m"  # candles of that interval -> on_kline ("kline_1s", "kline_5m", "kline_1h", ... also accepted)
---| string

---------------------------------------------------------------------------------------------------------------------
-- Shapes

--- Best bid and ask. From the `book` stream (`on_book`, `market.quote`) or REST (`market.book_ticker`, which has
--- no `update_id`/`time`). An empty side reads as price 0 and quantity 0.
---@class runner.Quote
---@field symbol string
---@field bid number best bid price
---@field bid_qty number quantity at the best bid
---@field ask number best ask price
---@field ask_qty number quantity at the best ask
---@field update_id? integer the exchange's book update id (streamed quotes)
---@field time? integer exchange time in ms (streamed quotes)

--- One price level: `{price, qty}`.
---@class runner.Level
---@field [1] number price
---@field [2] number quantity

--- An order book. Bids best (highest) first, asks best (lowest) first.
---@class runner.Depth: runner.MarketAnswer
---@field symbol string
---@field update_id integer the exchange's last update id included
---@field bids runner.Level[]
---@field asks runner.Level[]

---@class runner.Ticker: runner.MarketAnswer
---@field symbol string
---@field price number last traded price

---@class runner.Trade
---@field symbol string
---@field id integer the exchange's trade id
---@field price number
---@field qty number
---@field time integer exchange time in ms
---@field buyer_maker boolean true when the buyer's order was resting (the trade was a sell into the bid)

--- A candle from `market.klines`.
---@class runner.Kline
---@field open_time integer ms
---@field open number
---@field high number
---@field low number
---@field close number
---@field volume number base asset volume
---@field close_time integer ms

--- A candle from a `kline_<interval>` stream (`on_kline`). Updates arrive while the candle forms; `closed` is true
--- on its final update.
---@class runner.KlineEvent: runner.Kline
---@field symbol string
---@field interval string e.g. "1m"
---@field closed boolean

--- A symbol's trading rules as numbers (from the cached exchange info). A zero `max_qty` or `min_notional` means
--- "no bound". Prices must be multiples of `tick_size`, quantities multiples of `step_size`.
---@class runner.SymbolInfo
---@field symbol string
---@field base string base asset, e.g. "BTC"
---@field quote string quote asset, e.g. "USDT"
---@field tick_size number price grid
---@field step_size number quantity grid
---@field min_qty number
---@field max_qty number
---@field min_notional number least price x quantity
---@field status string "TRADING", "HALT", "BREAK", ...
---@field min_price number PRICE_FILTER lower bound (0: none)
---@field max_price number PRICE_FILTER upper bound (0: none)
---@field max_notional number largest price x quantity (0: none)
---@field base_precision integer decimals the exchange uses for the base asset
---@field quote_precision integer decimals the exchange uses for the quote asset

--- Per-call options, passed as the last argument of a call that may wait for budget.
---@class runner.CallOptions
---@field wait_ms? integer how long this call may wait for ledger budget before failing with `rate_limited` (0: fail at once if the budget is not there now). Defaults to the strategy's `max_wait_ms` (market data) or `order_wait_ms` (orders).

--- Options of the REST market-data calls (`ticker`, `book_ticker`, `depth`, `klines`, `trades`).
---@class runner.MarketOptions: runner.CallOptions
---@field max_age_ms? number the runner's latest answer to the same request may be returned if at most this old (0 to 86400000); without it, the call sends its own request or shares an identical one in flight. When the budget is short, a kept answer is returned instead of waiting, whatever its age.
---@field stream? boolean answer from the process's live streams at weight 0 (`depth` from an in-sync local book within its depth, `book_ticker` from the latest streamed quote, `klines` from the candles a kline stream kept after a REST klines answer); default: the strategy's `stream_answers`

--- Where a market-data answer came from.
---@alias runner.AnswerSource "exchange"|"joined"|"cache"|"stale"|"stream"

--- What every REST market-data answer carries (on `klines` and `trades` arrays, through the array's metatable).
---@class runner.MarketAnswer
---@field age_ms integer milliseconds since the request behind the answer was started (0 from a stream)
---@field source runner.AnswerSource

--- What `orders.place{...}` takes.
---@class runner.OrderRequest
---@field symbol string
---@field side runner.Side
---@field type runner.OrderType
---@field quantity? number base quantity, on the step grid (`market.round_qty`); required except for MARKET with `quote_quantity`
---@field price? number limit price, on the tick grid (`market.round_price`); required for LIMIT and LIMIT_MAKER
---@field tif? runner.TimeInForce LIMIT, STOP_LOSS_LIMIT and TAKE_PROFIT_LIMIT only; default "GTC"
---@field stop_price? number stop and take-profit types: the trigger price, on the tick grid
---@field trailing_delta? integer stop and take-profit types: trigger after the price moves this many basis points from its best since placing (with or instead of `stop_price`; the simulator does not trail)
---@field stp? runner.SelfTradePrevention what the exchange does if the order would trade with your own (default: the symbol's)
---@field client_id? string your id for the order (1-36 of `A-Za-z0-9-_`, unique among your open orders); minted by the host when absent. Recorded before sending, so an order whose outcome is unknown can still be found.
---@field quote_quantity? number MARKET only: spend (BUY) or receive (SELL) this much of the quote asset
---@field wait_ms? integer budget wait for this call (default: the strategy's `order_wait_ms`)

--- An order of this strategy, as the host knows it.
---@class runner.Order
---@field id? integer the exchange's order id (nil until the exchange has acknowledged it)
---@field client_id string
---@field symbol string
---@field side runner.Side
---@field type runner.OrderType
---@field tif? runner.TimeInForce
---@field status runner.OrderStatus
---@field price number limit price (0 for MARKET)
---@field quantity number ordered base quantity
---@field filled_qty number cumulative filled base quantity
---@field filled_quote number cumulative filled quote amount (price x qty summed over fills)
---@field avg_price number average fill price (0 before the first fill)
---@field last_fill_qty number quantity of the latest fill (0 if the change was not a fill)
---@field last_fill_price number price of the latest fill
---@field commission number commission charged on the latest fill (0 if the change was not a fill)
---@field commission_asset? string the asset that commission was charged in
---@field reject_reason? string why the exchange rejected it
---@field time integer creation time, exchange ms
---@field update_time integer time of the latest change, exchange ms
---@field stop_price? number the trigger price of a stop or take-profit order
---@field list_id? integer the exchange's id of the order list the order is a leg of

--- An expected failure (the second return value of a failed call). `tostring(err)` gives `"<code>: <message>"`.
---@class runner.Error
---@field code runner.ErrorCode
---@field message string human-readable detail (for `invalid_order`: the filter and the nearest valid values)
---@field retry_after_ms? integer for `rate_limited`, `backoff`, `banned` and `unavailable`: how long until trying again makes sense
---@field exchange_code? integer for `rejected`: the exchange's error code (e.g. -2010)

---@class runner.Balance
---@field free number available
---@field locked number held by open orders

--- One pool of the shared ledger, in its current fixed window.
---@class runner.Pool
---@field type runner.PoolType
---@field interval "SECOND"|"MINUTE"|"HOUR"|"DAY" the window's unit
---@field interval_num integer the window's length in units: `{interval = "SECOND", interval_num = 10}` is 10 s
---@field limit integer
---@field used integer spent in the current window (by every strategy, and by anyone else the exchange reports)
---@field resets_at integer exchange time (ms) when the current window ends
---@field peak integer the highest `used` seen in any window since start
---@field scope string what the exchange counts the pool by: "ip0" (the egress IP) or "account0"
---@field scope_name? string with `[[ip_groups]]` configured: the name of the pool's IP group
---@field backoff "normal"|"throttled"|"banned" the back-off in force on the pool's scope (its IP group): nothing drawing on it is sent until `backoff_until`
---@field backoff_until? integer exchange time (ms) when that back-off ends
---@field backoff_http_status? integer why the scope is backed off: 429 (throttled) or 418 (banned); nil when normal
---@field backoff_secs_left? number seconds left until `backoff_until`; nil when normal (an account's ORDERS pools show "throttled"/429 while a -1015 "too many new orders" holds that account's new orders)
---@field lease? integer with a shared ledger (`--ledger redis://...`): the slice of the window this process holds; `used` is then this process's own use

--- How the ledger is shared with other processes on this IP (`--ledger redis://...`).
---@class runner.LedgerSharing
---@field backend string where the shared budget lives (URL without credentials)
---@field group string the budget's name (one per egress IP)
---@field connected boolean false while Redis is out of reach and this process spends only its share
---@field processes integer processes last seen alive on this budget, this one included

--- What this strategy spent in the current windows.
---@class runner.LedgerUsage
---@field weight integer request weight in the current window
---@field orders integer orders in the current window
---@field total_weight integer request weight since start
---@field total_orders integer orders since start

--- This strategy's events since start. A strategy that keeps up gets every event (`conflated` stays 0); one
--- that falls more than 4096 events behind gets the latest quote per symbol instead of a backlog.
---@class runner.EventCounts
---@field received integer market, order and timer events pushed to this strategy
---@field delivered integer events handed to its callbacks
---@field conflated integer quotes (and depth, candle and timer repeats) replaced by a newer one before delivery
--- A strategy's market-data calls since start and what asking the exchange once saved.
---@class runner.MarketSavings
---@field calls integer market-data calls answered (with data or an error)
---@field requests_sent integer calls that sent their own request (charged to the strategy)
---@field requests_saved integer calls answered without one (joined + cache_hits + stream_hits + stale_served)
---@field weight_saved integer the request weight those calls would have cost
---@field joined integer calls that shared an identical request in flight
---@field cache_hits integer calls answered by a kept answer within `max_age_ms`
---@field stream_hits integer calls answered from a live stream
---@field stale_served integer calls answered by a kept answer because the budget was short
---@field hit_rate number requests_saved / calls (0 with no calls)

--- A back-off in force on one scope: nothing drawing on its pools is sent until `until`; the other scopes go on.
---@class runner.ScopeBackoff
---@field scope string the scope stopped: "ip0" (the first egress IP group), "ip1", ..., or "account1" (new orders only)
---@field scope_name? string the IP group's or account's configured name
---@field state "throttled"|"banned" throttled after a 429, banned after a 418
---@field http_status integer why: 429 or 418
---@field until integer exchange time (ms) when it ends
---@field secs_left number seconds left until then

---@class runner.LedgerStatus
---@field state runner.LedgerState
---@field resume_at? integer exchange time (ms) when sending resumes (throttled or banned)
---@field pools runner.Pool[]
---@field backoffs runner.ScopeBackoff[] each scope (IP group, or an account whose new orders are held) a back-off stops now, once; empty when none
---@field mine runner.LedgerUsage
---@field throttled_count integer 429 answers received since start (should stay 0)
---@field banned_count integer 418 answers received since start (should stay 0)
---@field events runner.EventCounts this strategy's events since start
---@field breakers table<runner.EndpointClass, runner.Breaker> the exchange's circuit breakers, one per endpoint class

---@alias runner.EndpointClass
---| "market_data"     # prices, books, candles, trades, server time
---| "orders"          # placing, cancelling and looking up orders
---| "account"         # balances and the account's trades
---| "streams"         # WebSocket connections

--- A circuit breaker: opens when too many calls fail (5xx, internal errors, timeouts, very slow answers).
---@class runner.Breaker
---@field state "closed"|"open"|"half_open" open: calls fail at once with `unavailable`; half_open: the runner is probing
---@field retry_after_ms? integer while open: how long until the runner probes the exchange again
---@field calls integer calls in the breaker's current window
---@field failures integer failed calls among them
---@field times_opened integer times it opened since start
---@field refused integer calls refused (not sent) since start
---@field market_data runner.MarketSavings this strategy's
---@field market_data_total runner.MarketSavings every strategy's together
---@field shared? runner.LedgerSharing present when the ledger is shared through Redis

---------------------------------------------------------------------------------------------------------------------
-- The strategy table: what a strategy file returns. Every field is optional except what the strategy uses.

---@class runner.Strategy
---@field name? string default: the file name without `.lua`; unique within one process
---@field symbols? string[] the symbols this strategy trades or watches, e.g. `{ "BTCUSDT", "ETHBTC" }`
---@field streams? runner.Stream[] market streams for every symbol in `symbols`: "book", "depth", "trade", "kline_1m", ...
---@field max_wait_ms? integer how long market-data calls may wait for budget (default 5000)
---@field order_wait_ms? integer how long order calls may wait for budget (default 1000)
---@field stream_answers? boolean market-data calls may be answered from the process's live streams at weight 0 unless a call passes `stream = false` (default false)
---@field on_start? fun() called once after loading (not after a hot reload)
---@field on_book? fun(q: runner.Quote) best bid/ask changed (stream "book"); quotes coalesce per symbol when the strategy is busy: you always get the latest
---@field on_depth? fun(symbol: string) the local book of `symbol` changed (stream "depth"); pull it with `market.book(symbol, n)`
---@field on_trade? fun(t: runner.Trade) a trade printed (stream "trade")
---@field on_kline? fun(k: runner.KlineEvent) a candle updated (stream "kline_<interval>")
---@field on_order? fun(o: runner.Order) an order of THIS strategy changed; never dropped, in order
---@field on_timer? fun(name: string) a timer set with `timer.every` / `timer.after` fired
---@field on_reload? fun() called on the NEW version after a hot reload (instead of `on_start`); `state`, orders and timers are kept
---@field on_stop? fun(reason: runner.StopReason) the strategy is stopping

---------------------------------------------------------------------------------------------------------------------
-- state

--- A plain table the host keeps across hot reloads and restarts (saved as JSON under the state dir). Only numbers,
--- strings, booleans and nested tables are kept. Initialise defensively: `state.fills = state.fills or 0`.
--- Prefer string keys for maps (JSON objects) and dense 1..n arrays for lists.
---@type table<string, any>
state = {}

---------------------------------------------------------------------------------------------------------------------
-- market

--- Market data: REST calls (cost weight, may wait for budget) and the host's streamed views (free).
market = {}

--- Latest price of `symbol`.
---
--- Cost: REST, weight 2. Blocking; waits for budget up to `max_wait_ms`.
---@param symbol string
---@param opts? runner.MarketOptions
---@return runner.Ticker? ticker
---@return runner.Error? err
function market.ticker(symbol, opts) end

--- Best bid and ask of `symbol`, fetched now. Prefer `market.quote` (free) when the strategy streams "book".
---
--- Cost: REST, weight 2. Blocking; waits for budget up to `max_wait_ms`.
---@param symbol string
---@param opts? runner.MarketOptions
---@return runner.Quote? quote
---@return runner.Error? err
function market.book_ticker(symbol, opts) end

--- An order book snapshot of `symbol`, `limit` levels per side (default 100, at most 5000). Prefer `market.book`
--- (free) when the strategy streams "depth".
---
--- Cost: REST, weight by limit: 1-100: 5 · 101-500: 25 · 501-1000: 50 · 1001-5000: 250. Blocking; waits for budget up
--- to `max_wait_ms`.
---@param symbol string
---@param limit? integer
---@param opts? runner.MarketOptions
---@return runner.Depth? depth
---@return runner.Error? err
function market.depth(symbol, limit, opts) end

--- Candles of `symbol`, oldest first. `interval` is the exchange's: "1s", "1m", "3m", "5m", "15m", "30m", "1h",
--- "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M". `limit` default 100, at most 1000.
---
--- Cost: REST, weight 2. Blocking; waits for budget up to `max_wait_ms`.
---@param symbol string
---@param interval string
---@param limit? integer
---@param opts? runner.MarketOptions
---@return runner.Kline[]? klines
---@return runner.Error? err
function market.klines(symbol, interval, limit, opts) end

--- Recent trades of `symbol`, oldest first (`limit` default 100, at most 1000).
---
--- Cost: REST, weight 25. Blocking; waits for budget up to `max_wait_ms`.
---@param symbol string
---@param limit? integer
---@param opts? runner.MarketOptions
---@return runner.Trade[]? trades
---@return runner.Error? err
function market.trades(symbol, limit, opts) end

--- The latest streamed best bid/ask of `symbol` (same shape as `on_book`), or nil before the first event. Needs the
--- "book" stream for that symbol.
---
--- Cost: none (the host's state). Never blocks.
---@param symbol string
---@return runner.Quote?
function market.quote(symbol) end

--- The host's stream-maintained order book of `symbol`, `levels` per side (default 20), or nil while the
--- book is not in sync (start-up, after a sequence gap). Needs the "depth" stream for that symbol.
---
--- Cost: none (the host's state). Never blocks.
---@param symbol string
---@param levels? integer
---@return runner.Depth?
function market.book(symbol, levels) end

--- Trading rules of `symbol` (tick and step grids, minimums), as numbers.
---
--- Cost: none (cached exchange info). Never blocks.
---@param symbol string
---@return runner.SymbolInfo
function market.info(symbol) end

--- The nearest price to `price` on `symbol`'s tick grid (halfway goes up).
---
--- Cost: none. Never blocks.
---@param symbol string
---@param price number
---@return number
function market.round_price(symbol, price) end

--- The largest quantity on `symbol`'s step grid not above `qty` (rounds down: never more than you meant or hold).
---
--- Cost: none. Never blocks.
---@param symbol string
---@param qty number
---@return number
function market.round_qty(symbol, qty) end

--- `value` on the grid of `step` (any step, e.g. `info.step_size`), rounded by `mode`: `"down"` (the largest
--- multiple not above), `"up"` (the smallest not below) or `"nearest"` (halfway goes away from zero). Exact decimal
--- maths; the result is the double nearest the decimal multiple. A value within a few doubles of a grid point is
--- that point (`0.1 + 0.2` is three steps of 0.1). The `sizing` module rounds with this.
---
--- Cost: none. Never blocks.
---@param value number
---@param step number
---@param mode "down"|"up"|"nearest"
---@return number
function market.round_step(value, step, mode) end

--- The symbols the exchange lists (from the cached exchange info).
---
--- Cost: none. Never blocks.
---@return string[]
function market.symbols() end

---------------------------------------------------------------------------------------------------------------------
-- orders

--- This strategy's orders. Prices and quantities must be on the symbol's grid (float noise is tolerated and
--- converted exactly); an off-grid value is refused with `invalid_order` before anything is sent.
orders = {}

--- Places an order. Returns the order as the exchange acknowledged it (IOC/FOK and MARKET orders usually come back
--- final); later changes arrive in `on_order`.
---
--- ```lua
--- local o, err = orders.place{ symbol = "BTCUSDT", side = "BUY", type = "LIMIT", price = 60000, quantity = 0.001,
---                              tif = "IOC", client_id = "tri-42-1" }
--- if not o then log.warn("place failed: %s", tostring(err)) end
--- ```
---
--- Cost: order pools (+1 unfilled order) and REST weight 1 (0 when accepted). Blocking; waits for budget up to
--- `order_wait_ms` (or the request's `wait_ms`).
---@param request runner.OrderRequest
---@return runner.Order? order
---@return runner.Error? err
function orders.place(request) end

--- Cancels one order; `id` is the exchange's order id (integer) or your client id (string).
---
--- Cost: REST weight 1 (0 when accepted); cancels go first in the ledger. Blocking; waits for budget up to
--- `order_wait_ms`.
---@param symbol string
---@param id integer|string
---@param opts? runner.CallOptions
---@return runner.Order? order
---@return runner.Error? err
function orders.cancel(symbol, id, opts) end

--- Lowers the quantity of an open order, which keeps its place in the queue (amend keep-priority); `id` is the
--- exchange's order id (integer) or your client id (string). A quantity that is not lower is refused with
--- `invalid_order` and nothing is sent.
---
--- Cost: REST weight 4, no unfilled order. Blocking; waits for budget up to `order_wait_ms` (or `wait_ms`).
---@param request {symbol: string, id: integer|string, quantity: number, wait_ms?: integer}
---@return runner.Order? order
---@return runner.Error? err
function orders.amend(request) end

---@class runner.ListOrder one order of a list: an order's fields (see `orders.place`) without `symbol` and `stp`,
---which are the list's. `symbol`, when given, must be the list's.
---@field symbol? string
---@field side? "BUY"|"SELL" required, except in an OCO whose list gives it
---@field type "LIMIT"|"LIMIT_MAKER"|"STOP_LOSS"|"STOP_LOSS_LIMIT"|"TAKE_PROFIT"|"TAKE_PROFIT_LIMIT"|"MARKET"
---@field quantity? number required, except in an OCO whose list gives it
---@field price? number
---@field tif? "GTC"|"IOC"|"FOK"
---@field stop_price? number
---@field trailing_delta? integer
---@field client_id? string

---@class runner.ListRequest
---@field symbol string
---@field type "oco"|"oto"|"otoco"
---@field side? "BUY"|"SELL" an OCO pair's side (or give it on each order)
---@field quantity? number an OCO pair's quantity (or give it on each order)
---@field client_id? string the list's client id (`listClientOrderId`); minted when not given
---@field stp? "NONE"|"EXPIRE_TAKER"|"EXPIRE_MAKER"|"EXPIRE_BOTH"|"DECREMENT" every order's self-trade prevention
---@field above? runner.ListOrder OCO: the order above the market (LIMIT_MAKER or TAKE_PROFIT* to sell, STOP_LOSS* to buy)
---@field below? runner.ListOrder OCO: the order below the market (STOP_LOSS* to sell, LIMIT_MAKER or TAKE_PROFIT* to buy)
---@field working? runner.ListOrder OTO / OTOCO: the order placed at once (LIMIT or LIMIT_MAKER)
---@field pending? runner.ListOrder OTO: the order placed once the working order has filled
---@field pending_above? runner.ListOrder OTOCO: the pair placed once the working order has filled, as an OCO's `above`
---@field pending_below? runner.ListOrder OTOCO: as an OCO's `below`
---@field wait_ms? integer

---@class runner.PlacedList
---@field list_id integer the exchange's list id
---@field client_id string the list's client id
---@field orders runner.Order[] every order of the list, the working order first
---@field above? runner.Order
---@field below? runner.Order
---@field working? runner.Order
---@field pending? runner.Order
---@field pending_above? runner.Order
---@field pending_below? runner.Order

--- Places an order list: `"oco"` (one order above the market and one below; one working or trading ends the
--- other), `"oto"` (a working order and a pending one placed once it has filled) or `"otoco"` (a working order and
--- an OCO pair pending on it). Every order is checked first and the list is refused whole, nothing sent: an OCO
--- pair on the wrong sides of the market returns `invalid_order` with the exchange's code (-2010 `The relationship
--- of the prices for the orders is not correct.`, -1165/-1166/-1196..-1199 for a kind on the wrong side); an order of
--- another symbol or a missing order is an error. `on_order` is called for every order of the list, with `list_id`.
--- An unknown outcome is looked up order by order, never sent again.
---
--- Cost: order pools (+2 unfilled orders for an OCO or OTO, +3 for an OTOCO) and REST weight 1 (0 when accepted).
--- The operator's risk limits count every order as open and value the list by what can fill (an OCO's larger
--- order; an OTO's both; an OTOCO's working order and its pair's larger). A backtest refuses lists (`invalid_order`).
--- Blocking.
---@param request runner.ListRequest
---@return runner.PlacedList? list
---@return runner.Error? err
function orders.place_list(request) end

--- Cancels every open order of this strategy's list `list_id` (the exchange's list id, or the list's client id).
--- Returns the list's orders; each outcome also arrives in `on_order`.
---
--- Cost: REST weight 1 (0 when accepted). Blocking.
---@param request {symbol: string, list_id: integer|string, wait_ms?: integer}
---@return runner.Order[]? orders
---@return runner.Error? err
function orders.cancel_list(request) end

--- Cancels the order `cancel_id` and places a new one (the other fields, as for `orders.place`) in one request
--- (cancel-replace). `mode`: `"STOP_ON_FAILURE"` (default) places nothing if the cancel fails; `"ALLOW_FAILURE"`
--- places the new order anyway. Returns the new order; both orders' outcomes arrive in `on_order`. When either step
--- fails it returns `nil, err` with the exchange's code (-2021 partly failed, -2022 failed) and both outcomes in
--- `err.message`.
---
--- Cost: order pools (+1 unfilled order) and REST weight 1 (0 when accepted). Blocking.
---@param request runner.OrderRequest|{cancel_id: integer|string, mode?: "STOP_ON_FAILURE"|"ALLOW_FAILURE"}
---@return runner.Order? order
---@return runner.Error? err
function orders.replace(request) end

--- Cancels every open order of this strategy on `symbol`.
---
--- Cost: REST weight 1 (0 when accepted). Blocking; waits for budget up to `order_wait_ms`.
---@param symbol string
---@param opts? runner.CallOptions
---@return runner.Order[]? cancelled
---@return runner.Error? err
function orders.cancel_all(symbol, opts) end

--- One order of this strategy by exchange id or client id: from the host's own order state when it is current,
--- else from the exchange.
---
--- Cost: none when the host's state is current, else REST weight 4. May block (only when it asks the exchange).
---@param symbol string
---@param id integer|string
---@param opts? runner.CallOptions
---@return runner.Order? order
---@return runner.Error? err
function orders.get(symbol, id, opts) end

--- This strategy's open orders (on `symbol`, or on every symbol), from the host's order state.
---
--- Cost: none. Never blocks.
---@param symbol? string
---@return runner.Order[]
function orders.open(symbol) end

---------------------------------------------------------------------------------------------------------------------
-- account

account = {}

--- Balances by asset: `{ BTC = {free = 1.5, locked = 0.1}, ... }` of the account this strategy trades on (its
--- `[routes]` account, else the first), from the host's account state (kept current by that account's user-data stream).
---
--- Cost: none (REST weight 20 only when the host must resync). Never blocks in the normal case.
---@return table<string, runner.Balance>
function account.balances() end

---------------------------------------------------------------------------------------------------------------------
-- ledger

ledger = {}

--- The shared rate-limit ledger: backoff state, every pool's use in its current window, and what this strategy
--- spent. Use it to slow down before the budget runs out.
---
--- Cost: none. Never blocks.
---@return runner.LedgerStatus
function ledger.status() end

---------------------------------------------------------------------------------------------------------------------
-- clock

clock = {}

--- Now, in milliseconds since the epoch, on the exchange's clock (server-time offset applied). Use it to compare
--- with event and order times.
---
--- Cost: none. Never blocks.
---@return integer
function clock.now() end

---------------------------------------------------------------------------------------------------------------------
-- timer

--- Named timers, owned by the host: they survive hot reloads and fire `on_timer(name)` on the current version.
--- Registering a name again replaces the old timer.
timer = {}

--- Calls `on_timer(name)` every `ms` milliseconds.
---@param ms integer
---@param name string
function timer.every(ms, name) end

--- Calls `on_timer(name)` once, after `ms` milliseconds.
---@param ms integer
---@param name string
function timer.after(ms, name) end

--- Cancels the timer `name` (no error if there is none).
---@param name string
function timer.cancel(name) end

---------------------------------------------------------------------------------------------------------------------
-- log

--- The host's log, tagged with the strategy's name. Arguments are formatted like `string.format` when the first is
--- a string and there are more, else written like `print` (tostrings joined by tabs). `print` also writes to the log
--- (at info). A line longer than 8 KiB is cut and ends with `… [log line cut: N bytes in all]`.
log = {}

---@param fmt string
---@param ... any
function log.debug(fmt, ...) end

---@param fmt string
---@param ... any
function log.info(fmt, ...) end

---@param fmt string
---@param ... any
function log.warn(fmt, ...) end

---@param fmt string
---@param ... any
function log.error(fmt, ...) end

---------------------------------------------------------------------------------------------------------------------
-- The sandbox: only string, table, math, utf8, coroutine and this part of os exist. No io, no debug, no package,
-- no dofile/loadfile; load() accepts text chunks only.

--- The safe subset of `os`.
os = {}

--- Seconds since the epoch (local machine clock), or the time of a date table.
---@param t? table
---@return integer
function os.time(t) end

--- CPU seconds used by this process.
---@return number
function os.clock() end

--- Formats a time like C's strftime (`"!%Y-%m-%d %H:%M:%S"` for UTC), or returns a date table with `"*t"`/`"!*t"`.
---@param format? string
---@param time? integer
---@return string|osdate
function os.date(format, time) end

--- Loads a module by name from `stdlib/` or the strategy's own folder (names like `indicators` or `my.helpers`,
--- lower case, dots for sub-folders). Files a strategy requires are watched for hot reload too.
---@param modname string
---@return any
function require(modname) end
