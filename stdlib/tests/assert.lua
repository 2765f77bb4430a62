-- A tiny assertion library for the stdlib's Lua tests. Each failing check raises with the caller's file:line, and
-- run() executes every case, then fails once listing all the cases that failed.

local T = {}

local function show(v)
  if type(v) == "string" then
    return string.format("%q", v)
  end
  return tostring(v)
end

local function fail(msg, detail)
  error((msg and (msg .. ": ") or "") .. detail, 3)
end

--- actual == expected (raw equality; numbers compare exactly).
function T.eq(actual, expected, msg)
  if actual ~= expected then
    fail(msg, string.format("expected %s, got %s", show(expected), show(actual)))
  end
end

--- |actual - expected| <= tol (default 1e-9), and actual is a number.
function T.near(actual, expected, tol, msg)
  tol = tol or 1e-9
  if type(actual) ~= "number" or math.abs(actual - expected) > tol then
    fail(msg, string.format("expected %.12g (+/- %g), got %s", expected, tol, show(actual)))
  end
end

function T.is_nil(v, msg)
  if v ~= nil then
    fail(msg, "expected nil, got " .. show(v))
  end
end

function T.truthy(v, msg)
  if not v then
    fail(msg, "expected a true value, got " .. show(v))
  end
end

--- fn() must raise an error whose message contains `fragment` (plain text).
function T.raises(fn, fragment, msg)
  local ok, err = pcall(fn)
  if ok then
    fail(msg, "expected an error containing " .. show(fragment) .. ", but the call succeeded")
  end
  if fragment and not string.find(tostring(err), fragment, 1, true) then
    fail(msg, "expected an error containing " .. show(fragment) .. ", got " .. show(tostring(err)))
  end
end

--- Runs `cases` ({name = function, ...}) in name order; raises one error listing every failure.
function T.run(suite, cases)
  local names = {}
  for name in pairs(cases) do
    names[#names + 1] = name
  end
  table.sort(names)
  local failures = {}
  for _, name in ipairs(names) do
    local ok, err = pcall(cases[name])
    if not ok then
      failures[#failures + 1] = string.format("  %s.%s: %s", suite, name, tostring(err))
    end
  end
  if #failures > 0 then
    error(string.format("%d of %d %s tests failed:\n%s", #failures, #names, suite, table.concat(failures, "\n")), 0)
  end
  return #names
end

return T
