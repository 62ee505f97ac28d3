-- Sets one variable of a tenant or of one of its functions, atomically on
-- the tenant's slot, and bumps the tenant's `vars_v` (workers cache what
-- they read under it). Its name and stored form count in the tenant's stored
-- bytes (`mod_bytes`, with its modules), refused over max_stored_bytes.
-- KEYS: 1 variables hash, 2 tenant hash, 3 stored-bytes window, 4 the
--       function's hash (function scope; the tenant hash otherwise)
-- ARGV: 1 name, 2 stored form, 3 most variables per scope, 4 now ms,
--       5 record ttl s, 6 '1' for a function's variable
-- Returns {'ok', '1' created or '0' replaced}, {'no_function'},
-- {'full', limit} or {'quota', 'stored', ...} as deploy.lua.
if ARGV[6] == '1' and redis.call('EXISTS', KEYS[4]) == 0 then
  return {'no_function'}
end
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return {'full', ARGV[3]}
end
local delta
if old then delta = #ARGV[2] - #old else delta = #ARGV[1] + #ARGV[2] end
if delta > 0 then
  local refused = stored_refusal(KEYS[2], KEYS[3], ARGV[4], ARGV[5], delta)
  if refused then return refused end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], 'mod_bytes', delta)
redis.call('HINCRBY', KEYS[2], 'vars_v', 1)
if old then return {'ok', '0'} end
return {'ok', '1'}
