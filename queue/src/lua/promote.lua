-- Moves one due retry from the delayed set back into its stream. The ZREM
-- gates it, so concurrent movers move it once.
-- KEYS: 1 delayed zset, 2 invocation record, 3 stream
-- ARGV: 1 member
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  return 0
end
local r = redis.call('HMGET', KEYS[2], 're', 'rp')
if not r[1] then
  return -1
end
redis.call('XADD', KEYS[3], '*', 'e', r[1], 'p', r[2] or '')
redis.call('HDEL', KEYS[2], 're', 'rp')
redis.call('HSET', KEYS[2], 'status', 'queued')
return 1
