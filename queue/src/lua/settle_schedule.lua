-- Records a fired tick: the schedule's new state replaces the one the
-- firer read, unless it changed meanwhile (another firer settled it, or
-- its owner replaced the schedule) or the schedule is gone.
-- KEYS: 1 schedules hash, 2 states hash
-- ARGV: 1 name, 2 the state read, 3 the new state
-- Returns 1 when settled, else 0.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
