-- Ends a visit to a member of a due index (KEYS[1]). If nobody marked it
-- since the claim (its score is still the lease's end) and the lease has
-- more than a mark's horizon left, the score becomes the next time to look,
-- or the member goes when nothing waits. Otherwise someone may have marked
-- it (a mark is at most the horizon ahead of its writer, so it is below a
-- lease that still has that much left, and a lower score shows it): the
-- member stays, at the lower of its score and ours (now when nothing
-- waits, so that the next visit decides). Work written after the visit
-- looked is never dropped.
-- ARGV: 1 member, 2 lease end ms, 3 next time to look ('' = nothing waits),
--       4 now ms, 5 the marks' horizon ms
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
local lease = tonumber(ARGV[2])
if s and tonumber(s) == lease and tonumber(ARGV[4]) + tonumber(ARGV[5]) < lease then
  if ARGV[3] == '' then
    redis.call('ZREM', KEYS[1], ARGV[1])
  else
    redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  end
else
  local nxt = ARGV[3]
  if nxt == '' then
    nxt = ARGV[4]
  end
  if s and tonumber(s) == lease then
    redis.call('ZADD', KEYS[1], nxt, ARGV[1])
  else
    redis.call('ZADD', KEYS[1], 'LT', nxt, ARGV[1])
  end
end
return 0
