-- luacheck settings for strategies and the standard library modules: `luacheck strategies stdlib`.
-- A strategy runs in the runner's sandbox (Lua 5.4): string, table, math, utf8, coroutine, a safe part of os,
-- and the runner's API below. See stdlib/runner.d.lua and docs/strategy-api.md.

std = "runner"
max_line_length = 120

stds.runner = {
  read_globals = {
    -- Lua 5.4 base functions the sandbox keeps (no dofile, loadfile, io, debug, package; print writes to the log).
    "assert", "error", "getmetatable", "ipairs", "load", "next", "pairs", "pcall", "print", "rawequal", "rawget",
    "rawlen", "rawset", "select", "setmetatable", "tonumber", "tostring", "type", "xpcall", "_VERSION", "_G",
    "collectgarbage", -- answers "count" only
    "string", "table", "math", "utf8", "coroutine",
    -- `require` loads from stdlib/ and the strategy's folder.
    "require",
    os = { fields = { "time", "clock", "date" } },
    -- The runner's API: tables the host provides; strategies call them, never replace them.
    market = { other_fields = true },
    orders = { other_fields = true },
    account = { other_fields = true },
    ledger = { other_fields = true },
    clock = { other_fields = true },
    timer = { other_fields = true },
    log = { fields = { "debug", "info", "warn", "error" } },
  },
  globals = {
    -- Kept across hot reloads and restarts: strategies write its fields.
    "state",
  },
}

-- LuaLS definitions of the API: declarations only, never run.
exclude_files = { "stdlib/runner.d.lua" }

-- The Lua tests run outside the sandbox (a plain Lua 5.4 with package.path) and install a fake host's globals.
files["stdlib/tests"] = { std = "lua54+runner", globals = { "market", "orders", "account", "ledger", "clock",
  "timer", "log", "state" } }
files["strategies/tests"] = { std = "lua54+runner", globals = { "market", "orders", "account", "ledger", "clock",
  "timer", "log", "state" } }
