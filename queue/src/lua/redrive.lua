-- Puts one dead letter back into its stream as a fresh first attempt and
-- reopens its run. The XDEL gates it, so a dead letter is redriven once.
-- KEYS: 1 dead-letter stream, 2 invocation record, 3 run record, 4 stream,
--       5 tenant hash
-- ARGV: 1 dead-letter entry id, 2 envelope json (attempt reset), 3 payload,
--       4 status it had ('failed' | 'dead'), 5 ttl s
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('XADD', KEYS[4], '*', 'e', ARGV[2], 'p', ARGV[3])
redis.call('HINCRBY', KEYS[5], 'pending', 1)
redis.call('HSET', KEYS[2], 'status', 'queued', 'attempt', 1)
redis.call('HDEL', KEYS[2], 'completed')
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('HINCRBY', KEYS[3], ARGV[4], -1)
  redis.call('HINCRBY', KEYS[3], 'outstanding', 1)
  redis.call('HSET', KEYS[3], 'status', 'running')
  redis.call('HDEL', KEYS[3], 'completed')
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[5]))
end
return 1
