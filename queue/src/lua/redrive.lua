-- Puts one dead letter back into its stream as a fresh first attempt and
-- reopens its run. The XDEL gates it, so a dead letter is redriven once.
-- The tenant's quotas hold as for a new invocation (see enqueue.lua).
-- KEYS: 1 dead-letter stream, 2 invocation record, 3 run record, 4 stream,
--       5 tenant hash, 6 rate-window counter, 7 stored-bytes window
-- ARGV: 1 dead-letter entry id, 2 envelope json (attempt reset), 3 payload,
--       4 status it had ('failed' | 'dead'), 5 ttl s, 6 now ms
-- Returns 1 (redriven), 0 (no such dead letter) or a quota refusal as
-- enqueue.lua's.
local quota = redis.call('HMGET', KEYS[5], 'max_pending', 'rate_per_sec', 'pending',
  'max_stored_bytes', 'mod_bytes')
local max_pending = tonumber(quota[1]) or 0
local rate = tonumber(quota[2]) or 0
if max_pending > 0 and (tonumber(quota[3]) or 0) >= max_pending then
  return {'quota', 'pending', string.format('%d', max_pending)}
end
if (tonumber(quota[4]) or 0) > 0 then
  local window, after = stored_window(KEYS[7], ARGV[6], ARGV[5])
  local stored = window + (tonumber(quota[5]) or 0)
  if stored + #ARGV[3] > tonumber(quota[4]) then
    return {'quota', 'stored', quota[4], string.format('%d', stored), string.format('%d', after),
      tostring(#ARGV[3])}
  end
end
if rate > 0 then
  local used = redis.call('INCR', KEYS[6])
  if used == 1 then
    redis.call('PEXPIRE', KEYS[6], 2000)
  end
  if used > rate then
    return {'quota', 'rate', string.format('%d', rate)}
  end
end
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('XADD', KEYS[4], '*', 'e', ARGV[2], 'p', ARGV[3])
redis.call('HINCRBY', KEYS[5], 'pending', 1)
redis.call('HSET', KEYS[2], 'status', 'queued', 'attempt', 1)
-- A fresh start: the waits for room under max_pending start over too.
redis.call('HDEL', KEYS[2], 'completed', 'qwaits')
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('HINCRBY', KEYS[3], ARGV[4], -1)
  redis.call('HINCRBY', KEYS[3], 'outstanding', 1)
  redis.call('HSET', KEYS[3], 'status', 'running')
  redis.call('HDEL', KEYS[3], 'completed')
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[5]))
end
return 1
