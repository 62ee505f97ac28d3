-- Removes a consumer from the group only if it holds no pending entries
-- (XGROUP DELCONSUMER would drop them from the PEL, and nobody could reclaim
-- them any more).
-- KEYS: 1 stream   ARGV: 1 group, 2 consumer
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #pending > 0 then
  return 0
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
