local T = require("assert")
local fake_host = require("fake_host")
local pause = require("pause")

local function host()
  return fake_host.new({ infos = {}, now = 1000 }):install()
end

return T.run("pause", {
  budget_errors_pause_for_their_retry_after = function()
    local h = host()
    local holder = { paused_until = 0 }
    local wait = pause.on_error(holder, "place", fake_host.err("backoff", "429", { retry_after_ms = 3000 }), 5000)
    T.eq(wait, 3000)
    T.eq(holder.paused_until, 4000)
    T.eq(h:log_lines("warn")[1], "place: backoff: 429; pausing 3000 ms")
  end,

  without_retry_after_the_default_applies = function()
    host()
    local holder = {}
    T.eq(pause.on_error(holder, "cancel", fake_host.err("rate_limited"), 5000), 5000)
    T.eq(holder.paused_until, 6000)
  end,

  a_shorter_pause_never_cuts_a_longer_one = function()
    host()
    local holder = { paused_until = 9000 }
    pause.on_error(holder, "place", fake_host.err("banned", "418", { retry_after_ms = 10 }), 5000)
    T.eq(holder.paused_until, 9000)
  end,

  other_errors_are_logged_without_a_pause = function()
    local h = host()
    local holder = { paused_until = 0 }
    T.is_nil(pause.on_error(holder, "place", fake_host.err("rejected", "insufficient balance"), 5000))
    T.eq(holder.paused_until, 0)
    T.eq(h:log_lines("warn")[1], "place: rejected: insufficient balance")
  end,
})
