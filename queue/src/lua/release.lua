-- Gives a delivered but not started entry back to the group at once (used
-- when draining): a copy goes to the end of the stream and the original is
-- acknowledged, atomically, so no other worker has to wait for a lease.
-- KEYS: 1 stream   ARGV: 1 group, 2 entry id, 3 envelope json, 4 payload
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('XADD', KEYS[1], '*', 'e', ARGV[3], 'p', ARGV[4])
return 1
