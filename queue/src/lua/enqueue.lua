-- Accepts one root invocation: function check, quota, idempotency, stream
-- entry, record (which stands for its run until the run fans out). Atomic: either all of it happened, or none.
-- KEYS: 1 stream, 2 invocation record, 3 run record (not written here),
--       4 idempotency key,
--       5 function hash, 6 tenant hash, 7 rate-window counter
-- ARGV: 1 envelope json, 2 payload, 3 id, 4 function, 5 now ms, 6 ttl s,
--       7 idempotency key ('' = none), 8 tenant, 9 max depth, 10 max invocations,
--       11 version, 12 run callback url ('' = none), 13 '1' = no run record
--       until the root fans out
if redis.call('EXISTS', KEYS[5]) == 0 then
  return {'no-function'}
end
local ttl = tonumber(ARGV[6])
if ARGV[7] ~= '' then
  local existing = redis.call('GET', KEYS[4])
  if existing then
    return {'duplicate', existing}
  end
end
-- Quotas: pending invocations of the tenant, and invocations per second.
local quota = redis.call('HMGET', KEYS[6], 'max_pending', 'rate_per_sec', 'pending')
local max_pending = tonumber(quota[1])
if max_pending and max_pending > 0 and (tonumber(quota[3]) or 0) >= max_pending then
  return {'quota', 'pending', tostring(max_pending)}
end
local rate = tonumber(quota[2])
if rate and rate > 0 then
  local used = redis.call('INCR', KEYS[7])
  if used == 1 then
    redis.call('PEXPIRE', KEYS[7], 2000)
  end
  if used > rate then
    return {'quota', 'rate', tostring(rate)}
  end
end
if ARGV[7] ~= '' then
  redis.call('SET', KEYS[4], ARGV[3], 'EX', ttl)
end
local entry = redis.call('XADD', KEYS[1], '*', 'e', ARGV[1], 'p', ARGV[2])
redis.call('HINCRBY', KEYS[6], 'pending', 1)
-- The run of a root invocation is the root alone until it fans out: its
-- limits and callback wait in the root's record, and the completion script
-- creates the run's own record only when the first follow-ups are added
-- (most invocations never emit, and then no run record is ever written).
-- Unless ARGV[13] is not '1' (a live worker predates this): then the run's
-- record is written now, as before.
redis.call('HSET', KEYS[2],
  'id', ARGV[3], 'tenant', ARGV[8], 'function', ARGV[4], 'version', ARGV[11],
  'status', 'queued', 'run', ARGV[3], 'depth', 0, 'attempt', 1,
  'completions', 0, 'created', ARGV[5], 'max_depth', ARGV[9], 'max_inv', ARGV[10])
if ARGV[12] ~= '' then
  redis.call('HSET', KEYS[2], 'run_cb', ARGV[12])
end
redis.call('EXPIRE', KEYS[2], ttl)
if ARGV[13] ~= '1' then
  redis.call('HSET', KEYS[3],
    'id', ARGV[3], 'tenant', ARGV[8], 'function', ARGV[4], 'status', 'running',
    'total', 1, 'outstanding', 1, 'succeeded', 0, 'failed', 0, 'dead', 0,
    'max_depth', ARGV[9], 'max_invocations', ARGV[10], 'created', ARGV[5])
  if ARGV[12] ~= '' then
    redis.call('HSET', KEYS[3], 'callback', ARGV[12])
  end
  redis.call('EXPIRE', KEYS[3], ttl)
end
return {'ok', entry}
