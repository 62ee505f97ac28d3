-- What one tenant has waiting, for the due indexes' audit (which repairs a
-- mark lost to a crash between a write and its mark): the earliest retry,
-- and when its callbacks need a look; '' for nothing.
-- KEYS: 1 delayed zset, 2 callback retry zset, 3 callbacks stream
-- ARGV: 1 now ms
local r = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local c = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local cb = c[2] or ''
if redis.call('XLEN', KEYS[3]) > 0 then
  cb = ARGV[1]
end
return {r[2] or '', cb}
