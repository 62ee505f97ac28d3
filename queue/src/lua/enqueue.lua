-- Accepts root invocations of one tenant, in order, each all or nothing:
-- function check, idempotency key, quotas, stream entry, record (which
-- stands for its run until the run fans out). One call takes a batch (the
-- gateway's group commit, or a chunk of a bulk load): the tenant's quota
-- and each function's existence are read once per call and `pending` is
-- written once, as if the invocations had come one after the other.
-- KEYS: 1 tenant hash, 2 rate-window counter, 3 stored-bytes window,
--       then per invocation i (0-based): 4+4i stream, 5+4i record,
--       6+4i idempotency key, 7+4i function hash
-- ARGV: 1 now ms, 2 ttl s, 3 wake channel ('' = none: someone waits
--       for these invocations, so the workers reading their streams are told
--       at once with `!<stream>` instead of finding them on their next read),
--       then per invocation i: 4+9i envelope json, 5+9i payload, 6+9i id,
--       7+9i function, 8+9i the payload's fingerprint when an idempotency
--       key is given ('' = none), 9+9i max depth, 10+9i max invocations,
--       11+9i version, 12+9i run callback url ('' = none)
-- Returns one reply per invocation: {'ok', entry} | {'duplicate', id} |
-- {'idempotency-mismatch', id} |
-- {'no-function'} | {'quota', 'pending' | 'rate', limit} |
-- {'quota', 'stored', limit, stored bytes, seconds until some expire,
-- bytes asked for}.
-- (The TTL goes to Redis as the string it came as: a Lua number would be
-- formatted back on every call.)
local now, wake = ARGV[1], ARGV[3]
local n = (#KEYS - 3) / 4

-- Quotas: pending invocations of the tenant, invocations per second, and
-- stored bytes (an invocation is taken only if its payload, as an output or a
-- dead letter, would fit: the least it may come to keep).
local quota = redis.call('HMGET', KEYS[1], 'max_pending', 'rate_per_sec', 'pending',
  'max_stored_bytes', 'mod_bytes')
local max_pending = tonumber(quota[1]) or 0
local rate = tonumber(quota[2]) or 0
local pending = tonumber(quota[3]) or 0
local max_stored = tonumber(quota[4]) or 0
local stored, stored_after = nil, 0
local rate_used = nil
local rate_counted = 0
local added = 0
local exists = {}

local function accept(k, a)
  local fkey = KEYS[k + 3]
  local known = exists[fkey]
  if known == nil then
    known = redis.call('EXISTS', fkey) == 1
    exists[fkey] = known
  end
  if not known then
    return {'no-function'}
  end
  local id, idem = ARGV[a + 2], ARGV[a + 4]
  if idem ~= '' then
    -- `<id> <payload fingerprint>`: the same key with another payload is a
    -- client's mistake, not a retry.
    local existing = redis.call('GET', KEYS[k + 2])
    if existing then
      local first, fp = string.match(existing, '^(%S+) (%S+)$')
      if first and fp ~= idem then
        return {'idempotency-mismatch', first}
      end
      return {'duplicate', first or existing}
    end
  end
  if max_stored > 0 then
    if stored == nil then
      local window
      window, stored_after = stored_window(KEYS[3], now, ARGV[2])
      stored = window + (tonumber(quota[5]) or 0)
    end
    if stored + #ARGV[a + 1] > max_stored then
      return {'quota', 'stored', quota[4], string.format('%d', stored), string.format('%d', stored_after),
        tostring(#ARGV[a + 1])}
    end
  end
  if max_pending > 0 and pending + added >= max_pending then
    return {'quota', 'pending', string.format('%d', max_pending)}
  end
  if rate > 0 then
    -- Counted like an INCR per attempt, refused ones included.
    if rate_used == nil then
      rate_used = tonumber(redis.call('GET', KEYS[2])) or 0
    end
    rate_counted = rate_counted + 1
    if rate_used + rate_counted > rate then
      return {'quota', 'rate', string.format('%d', rate)}
    end
  end
  if idem ~= '' then
    redis.call('SET', KEYS[k + 2], id .. ' ' .. idem, 'EX', ARGV[2])
  end
  local entry = redis.call('XADD', KEYS[k], '*', 'e', ARGV[a], 'p', ARGV[a + 1])
  added = added + 1
  if wake ~= '' then
    redis.call('PUBLISH', wake, '!' .. KEYS[k])
  end
  -- The run of a root invocation is the root alone until it fans out: its
  -- limits and callback wait in the root's record, and the completion
  -- script creates the run's own record only when the first follow-ups are
  -- added (most invocations never emit, and then no run record is ever
  -- written). A record leaves out what readers take as given for a root:
  -- its id and tenant (the key), its run (itself), depth 0, attempt 1 and
  -- no completions yet.
  local cb = ARGV[a + 8]
  if cb ~= '' then
    redis.call('HSET', KEYS[k + 1], 'status', 'queued', 'function', ARGV[a + 3],
      'version', ARGV[a + 7], 'created', now, 'max_depth', ARGV[a + 5],
      'max_inv', ARGV[a + 6], 'run_cb', cb)
  else
    redis.call('HSET', KEYS[k + 1], 'status', 'queued', 'function', ARGV[a + 3],
      'version', ARGV[a + 7], 'created', now, 'max_depth', ARGV[a + 5],
      'max_inv', ARGV[a + 6])
  end
  redis.call('EXPIRE', KEYS[k + 1], ARGV[2])
  return {'ok', entry}
end

local out = {}
for i = 0, n - 1 do
  out[i + 1] = accept(4 + 4 * i, 4 + 9 * i)
end
if added > 0 then
  redis.call('HINCRBY', KEYS[1], 'pending', added)
end
if rate_counted > 0 then
  if redis.call('INCRBY', KEYS[2], rate_counted) == rate_counted then
    redis.call('PEXPIRE', KEYS[2], 2000)
  end
end
return out
