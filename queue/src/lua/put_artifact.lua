-- Shares a module's compiled artifact, on the tenant's slot.
-- KEYS[1] the artifact hash, KEYS[2] the module's bytes key.
-- ARGV[1] engine key, ARGV[2] TTL (s), ARGV[3] "1": replace one present,
-- ARGV[4] the signature, ARGV[5..] the pieces.
-- Returns 1 stored, 0 not (the module is gone, or one is there already).
-- A module deleted meanwhile leaves nothing behind; a gateway redeploying
-- the same module does not rewrite it (a worker whose check failed does).
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1])
  return 0
end
local engine = ARGV[1]
if ARGV[3] ~= '1' and redis.call('HEXISTS', KEYS[1], engine) == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return 0
end
local args = { KEYS[1], engine, ARGV[4] }
for i = 5, #ARGV do
  args[#args + 1] = engine .. '.' .. (i - 5)
  args[#args + 1] = ARGV[i]
end
redis.call('HSET', unpack(args))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
