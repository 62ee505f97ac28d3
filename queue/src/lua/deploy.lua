-- Stores a new version of a function and makes it current, atomically on
-- the tenant's slot: the module (once per tenant and sha256, counted in the
-- tenant's stored bytes and refused over its max_stored_bytes), one more
-- reference to it, the version, the current pointer and its spec copy, the
-- tenant's function index.
-- KEYS: 1 module, 2 module refs hash, 3 function hash, 4 tenant's function
--       set, 5 tenant hash, 6 stored-bytes window
-- ARGV: 1 module bytes, 2 sha256, 3 spec json with the version number
--       4294967295 (replaced here by the next one), 4 function name,
--       5 now ms, 6 record ttl s
-- Returns {'ok', version} or
-- {'quota', 'stored', limit, stored bytes, seconds until some expire,
-- bytes asked for}.
local size = #ARGV[1]
local at = string.find(ARGV[3], '"version":4294967295', 1, true)
if not at then
  return redis.error_reply('deploy: the spec has no version placeholder')
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  local refused = stored_refusal(KEYS[5], KEYS[6], ARGV[5], ARGV[6], size)
  if refused then return refused end
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('HINCRBY', KEYS[5], 'mod_bytes', size)
end
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
local version = redis.call('HINCRBY', KEYS[3], 'latest', 1)
local json = string.sub(ARGV[3], 1, at - 1) .. '"version":' .. version ..
  string.sub(ARGV[3], at + 20)
redis.call('HSET', KEYS[3], 'v:' .. version, json, 'current', version, 'spec', json)
redis.call('SADD', KEYS[4], ARGV[4])
return {'ok', version}
