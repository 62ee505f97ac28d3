-- Moves one due callback retry back into the callbacks stream; the ZREM
-- gates it so that concurrent movers move it once.
-- KEYS: 1 retry zset, 2 callbacks stream   ARGV: 1 member json
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  return 0
end
local m = cjson.decode(ARGV[1])
redis.call('XADD', KEYS[2], '*', 'kind', m['kind'], 'id', m['id'], 'url', m['url'],
  'at', tostring(m['at']), 'attempt', tostring(m['attempt']), 'tp', m['tp'] or '')
return 1
