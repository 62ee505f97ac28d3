-- Replaces a sealed value with its reseal, unless it changed since it was
-- read (a set in between wins).
-- KEYS: 1 variables hash, 2 tenant hash
-- ARGV: 1 name, 2 the stored form read, 3 the new one
-- Returns 1 if replaced, else 0.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HINCRBY', KEYS[2], 'mod_bytes', #ARGV[3] - #ARGV[2])
redis.call('HINCRBY', KEYS[2], 'vars_v', 1)
return 1
