-- Pausing a strategy after a budget error. `rate_limited`, `backoff` and `banned` mean nothing was sent, and calling
-- again before the wait is over only spends more budget (or prolongs a ban); the error's `retry_after_ms` says how
-- long to wait.
--
--   local pause = require("pause")
--   state.paused_until = state.paused_until or 0   -- kept in `state`, so a reload keeps the pause
--   local o, err = orders.place(...)
--   if not o then pause.on_error(state, "place", err, 5000) end
--   ...
--   if clock.now() < state.paused_until then return end

local M = {}

local BUDGET_ERRORS = { rate_limited = true, backoff = true, banned = true }

--- Logs a failed call as a warning (`what: err`). A budget error also pauses: `holder.paused_until` moves to at
--- least now + the error's `retry_after_ms` (or `default_ms` when it gives none).
---@param holder { paused_until?: integer } usually the strategy's `state`
---@param what string what was being done, for the log
---@param err runner.Error
---@param default_ms integer pause when a budget error gives no retry_after_ms
---@return integer? wait_ms the pause started, nil for other errors
function M.on_error(holder, what, err, default_ms)
  if not BUDGET_ERRORS[err.code] then
    log.warn("%s: %s", what, tostring(err))
    return nil
  end
  local wait = err.retry_after_ms or default_ms
  holder.paused_until = math.max(holder.paused_until or 0, clock.now() + wait)
  log.warn("%s: %s; pausing %d ms", what, tostring(err), wait)
  return wait
end

return M
