-- Deletes one variable, gives its bytes back to the tenant's stored bytes
-- and bumps the tenant's `vars_v`.
-- KEYS: 1 variables hash, 2 tenant hash
-- ARGV: 1 name
-- Returns 1 if it was there, else 0.
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[2], 'mod_bytes', -(#ARGV[1] + #old))
redis.call('HINCRBY', KEYS[2], 'vars_v', 1)
return 1
