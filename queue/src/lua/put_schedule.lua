-- Sets one schedule of a tenant, atomically on the tenant's slot: its spec,
-- and where it stands (the caller's new state, kept only if the state is
-- still the one it read: a firing that settled meanwhile makes it read
-- again). Name plus spec count in the tenant's stored bytes, refused over
-- max_stored_bytes.
-- KEYS: 1 schedules hash, 2 states hash, 3 tenant hash, 4 stored-bytes
--       window, 5 the function's hash
-- ARGV: 1 name, 2 spec JSON, 3 state JSON, 4 the state read ('' for none),
--       5 most schedules per tenant, 6 now ms, 7 record ttl s
-- Returns {'ok', '1' created or '0' replaced}, {'no_function'},
-- {'full', limit}, {'stale'} or {'quota', 'stored', ...} as deploy.lua.
if redis.call('EXISTS', KEYS[5]) == 0 then
  return {'no_function'}
end
local state = redis.call('HGET', KEYS[2], ARGV[1]) or ''
if state ~= ARGV[4] then
  return {'stale'}
end
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then
  return {'full', ARGV[5]}
end
local delta
if old then delta = #ARGV[2] - #old else delta = #ARGV[1] + #ARGV[2] end
if delta > 0 then
  local refused = stored_refusal(KEYS[3], KEYS[4], ARGV[6], ARGV[7], delta)
  if refused then return refused end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HINCRBY', KEYS[3], 'mod_bytes', delta)
if old then return {'ok', '0'} end
return {'ok', '1'}
