-- Claims the due members of a due index (KEYS[1]): each is leased, its
-- score moved to the end of the lease, so that one visitor looks at a tenant
-- at a time and a visitor that dies leaves it to be looked at when the lease
-- ends.
-- ARGV: 1 now ms, 2 lease end ms, 3 at most this many
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[2], m)
end
return due
