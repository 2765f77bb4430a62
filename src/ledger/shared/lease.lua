-- Leases a slice of every shared pool a request needs, all or nothing.
-- KEYS[1] epoch (a random id set when the shared state was created; gone after a
--         restart that lost it), KEYS[2] alive (heartbeats: process -> exchange ms),
--         then per pool: count of the window (units leased out), lowest limit announced,
--         back-off of the pool's scope (exchange ms until which nothing drawing on it is sent).
-- ARGV[1] the epoch the caller knows, ARGV[2] exchange now (ms), ARGV[3] how long a
--         heartbeat counts (ms), then per pool: need, want, the pool's limit, what the
--         request's lane may fill it up to (the limit less the headroom kept for orders),
--         window ttl (ms).
-- Returns {1, granted..., processes alive}, {0, index of the short pool, its count, its
--         limit}, {-1, current epoch or ''}, {-2, index of the backed-off pool, back-off end}.
--         The count of processes keeps the caller's share without Redis current to the last
--         lease, not the last tick.
local epoch = redis.call('GET', KEYS[1])
if epoch ~= ARGV[1] then
  return {-1, epoch or ''}
end
local pools = (#KEYS - 2) / 3
local now = tonumber(ARGV[2])
for i = 1, pools do
  local ban = tonumber(redis.call('GET', KEYS[2 + 3 * i]) or '0')
  if ban > now then
    return {-2, i, ban}
  end
end
local counts, limits = {}, {}
for i = 1, pools do
  local count_key, limit_key = KEYS[3 * i], KEYS[1 + 3 * i]
  local base = 3 + 5 * (i - 1)
  local need, limit = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 3])
  local kept = limit - tonumber(ARGV[base + 4])
  -- Two processes configured with different limits for one pool: the lower wins.
  local known = tonumber(redis.call('GET', limit_key) or '0')
  if known > 0 and known < limit then
    limit = known
  else
    redis.call('SET', limit_key, limit, 'PX', 86400000)
  end
  local count = tonumber(redis.call('GET', count_key) or '0')
  local cap = limit - kept
  if count + need > cap then
    return {0, i, count, limit}
  end
  counts[i], limits[i] = count, cap
end
local granted = {1}
for i = 1, pools do
  local base = 3 + 5 * (i - 1)
  local want, ttl = tonumber(ARGV[base + 2]), tonumber(ARGV[base + 5])
  local give = math.min(want, limits[i] - counts[i])
  local count_key = KEYS[3 * i]
  redis.call('INCRBY', count_key, give)
  redis.call('PEXPIRE', count_key, ttl)
  granted[i + 1] = give
end
granted[pools + 2] = redis.call('ZCOUNT', KEYS[2], now - tonumber(ARGV[3]), '+inf')
return granted
