-- Ends a visit to a member of a due index (KEYS[1]). If nobody marked it
-- since the claim (its score is still the lease's end), the score becomes
-- the next time to look, or the member goes when nothing waits. If someone
-- did, their mark is lower than the lease (marks are at most a second
-- ahead) and the lower of theirs and ours stays: work written after the
-- visit looked is never dropped.
-- ARGV: 1 member, 2 lease end ms, 3 next time to look ('' = nothing waits)
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) == tonumber(ARGV[2]) then
  if ARGV[3] == '' then
    redis.call('ZREM', KEYS[1], ARGV[1])
  else
    redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  end
elseif ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[1], 'LT', ARGV[3], ARGV[1])
end
return 0
