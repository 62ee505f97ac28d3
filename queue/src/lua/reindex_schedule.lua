-- Moves a schedule in the due index from the tick its firer read there to
-- its next one (or out, for 0), unless someone moved it meanwhile: an owner
-- that replaced the schedule indexed its new first tick, which must stand.
-- KEYS: 1 the due index
-- ARGV: 1 member, 2 the score read, 3 the next tick (0: remove)
-- Returns 1 when moved, else 0.
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not cur or tonumber(cur) ~= tonumber(ARGV[2]) then
  return 0
end
if ARGV[3] == '0' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
return 1
