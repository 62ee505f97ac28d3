-- Schedules the next delivery attempt of a callback, or dead-letters it,
-- and acknowledges the delivered entry. Atomic, gated on the XACK.
-- KEYS: 1 callbacks stream, 2 retry zset, 3 callback dead-letter stream
-- ARGV: 1 group, 2 entry id, 3 'retry' | 'dead', 4 due ms, 5 member json,
--       6 kind, 7 id, 8 url, 9 first attempt at ms, 10 attempts, 11 error, 12 now
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
if ARGV[3] == 'retry' then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
else
  -- The newest 10,000 dead callbacks are kept (about), as dead letters.
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', 10000, '*', 'kind', ARGV[6], 'id', ARGV[7], 'url', ARGV[8],
    'at', ARGV[9], 'attempts', ARGV[10], 'error', ARGV[11], 'dead_at', ARGV[12])
end
return 1
