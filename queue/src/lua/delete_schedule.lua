-- Deletes one schedule of a tenant and gives its bytes back.
-- KEYS: 1 schedules hash, 2 states hash, 3 tenant hash
-- ARGV: 1 name
-- Returns 1, or 0 when there was none.
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'mod_bytes', -(#ARGV[1] + #old))
return 1
