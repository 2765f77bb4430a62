-- Leases a slice of every shared pool a request needs, all or nothing, fairly under contention.
-- KEYS[1] epoch (a random id set when the shared state was created; gone after a
--         restart that lost it), KEYS[2] alive (heartbeats: process -> exchange ms),
--         KEYS[3] the budget's event channel,
--         then per pool: count of the window (units leased out), lowest limit announced,
--         back-off of the pool's scope (exchange ms until which nothing drawing on it is sent),
--         holders of the window (process -> units leased to it), hungry (process -> exchange ms
--         it was first turned away since it was last served), hungry lately (process -> exchange
--         ms it was last turned away).
-- ARGV[1] the epoch the caller knows, ARGV[2] exchange now (ms), ARGV[3] how long a
--         heartbeat counts (ms), ARGV[4] the calling process, then per pool: need, want, the
--         pool's limit, what the request's lane may fill it up to (the limit less the headroom
--         kept for orders), window ttl (ms), how long a hungry process's claim lasts unless it is
--         turned away again or renews it (ms),
--         whether a request waits for it (1; 0: the lease only runs low, and a process turned
--         away from such an ask is not hungry).
-- Returns {1, granted..., processes alive}, {0, index of the short pool, its count, its
--         limit}, {-1, current epoch or ''}, {-2, index of the backed-off pool, back-off end}.
--         The count of processes keeps the caller's share without Redis current to the last
--         lease, not the last tick.
--
-- Fairness: a process turned away from a pool while a request waited is hungry until it is
-- served. While another process has been hungry for longer, a process gets no more of the
-- window than its fair share (the cap divided by the processes alive). Without contention
-- anyone may take the whole window; under it, the longest hungry is served first, so asking
-- first at each window's start cannot take every window from the others.
local KEYS_PER_POOL, ARGS_PER_POOL = 6, 7
local epoch = redis.call('GET', KEYS[1])
if epoch ~= ARGV[1] then
  return {-1, epoch or ''}
end
local pools = (#KEYS - 3) / KEYS_PER_POOL
local now, process = tonumber(ARGV[2]), ARGV[4]
local alive = redis.call('ZCOUNT', KEYS[2], now - tonumber(ARGV[3]), '+inf')
local function key(i, n) return KEYS[3 + KEYS_PER_POOL * (i - 1) + n] end
local function arg(i, n) return tonumber(ARGV[4 + ARGS_PER_POOL * (i - 1) + n]) end

for i = 1, pools do
  local ban = tonumber(redis.call('GET', key(i, 3)) or '0')
  if ban > now then
    return {-2, i, ban}
  end
end

local counts, caps, was_hungry = {}, {}, {}
for i = 1, pools do
  local need, limit = arg(i, 1), arg(i, 3)
  local kept = limit - arg(i, 4)
  -- Two processes configured with different limits for one pool: the lower wins.
  local known = tonumber(redis.call('GET', key(i, 2)) or '0')
  if known > 0 and known < limit then
    limit = known
  else
    redis.call('SET', key(i, 2), limit, 'PX', 86400000)
  end
  local count = tonumber(redis.call('GET', key(i, 1)) or '0')
  local cap = limit - kept
  local hungry_key, seen_key = key(i, 5), key(i, 6)
  -- Who is hungry, and since when; a claim neither renewed nor turned away lately lapses (its
  -- request gave up, or its process is gone).
  local stale_before = now - arg(i, 6)
  local hungry = redis.call('ZRANGE', hungry_key, 0, -1, 'WITHSCORES')
  local since_self = nil
  for j = 1, #hungry, 2 do
    local p = hungry[j]
    if tonumber(redis.call('HGET', seen_key, p) or '0') < stale_before then
      redis.call('ZREM', hungry_key, p)
      redis.call('HDEL', seen_key, p)
    elseif p == process then
      since_self = tonumber(hungry[j + 1])
    end
  end
  local hungry_longer
  if since_self then
    hungry_longer = redis.call('ZCOUNT', hungry_key, '-inf', '(' .. since_self)
  else
    hungry_longer = redis.call('ZCARD', hungry_key)
  end
  local short = count + need > cap
  if not short and hungry_longer > 0 then
    local held = tonumber(redis.call('HGET', key(i, 4), process) or '0')
    short = held + need > math.floor(cap / math.max(alive, 1))
  end
  if short then
    if arg(i, 7) == 1 then
      redis.call('ZADD', hungry_key, 'NX', now, process)
      redis.call('HSET', seen_key, process, now)
      redis.call('PEXPIRE', hungry_key, arg(i, 5))
      redis.call('PEXPIRE', seen_key, arg(i, 5))
    end
    return {0, i, count, limit}
  end
  local hungry_self = since_self ~= nil
  counts[i], caps[i], was_hungry[i] = count, cap, hungry_self
end

local granted = {1}
local fed = false
for i = 1, pools do
  local give = math.min(arg(i, 2), caps[i] - counts[i])
  local ttl = arg(i, 5)
  redis.call('INCRBY', key(i, 1), give)
  redis.call('PEXPIRE', key(i, 1), ttl)
  redis.call('HINCRBY', key(i, 4), process, give)
  redis.call('PEXPIRE', key(i, 4), ttl)
  if was_hungry[i] then
    redis.call('ZREM', key(i, 5), process)
    redis.call('HDEL', key(i, 6), process)
    fed = true
  end
  granted[i + 1] = give
end
-- Those held back for a hungry process may ask again for what it left.
if fed then
  redis.call('PUBLISH', KEYS[3], 'credit')
end
granted[pools + 2] = alive
return granted
