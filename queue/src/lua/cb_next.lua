-- After a visit to a tenant's callbacks: trims the entries every deliverer
-- is done with (all before the oldest unacknowledged one, or everything
-- delivered when none is), and says when to look next: now if some entry
-- was never delivered, after the reclaim idle time if some delivery is
-- unacknowledged (its deliverer may die), at the earliest retry; '' when
-- nothing waits.
-- KEYS: 1 callbacks stream, 2 callback retry zset
-- ARGV: 1 group, 2 now ms, 3 reclaim idle ms
local function id_parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local nxt
local c = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if c[2] then
  nxt = tonumber(c[2])
end
local function sooner(t)
  if not nxt or t < nxt then
    nxt = t
  end
end
local p = redis.pcall('XPENDING', KEYS[1], ARGV[1])
if type(p) == 'table' and not p.err then
  local last
  local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
  for _, g in ipairs(groups) do
    local name, delivered
    for i = 1, #g, 2 do
      if g[i] == 'name' then
        name = g[i + 1]
      elseif g[i] == 'last-delivered-id' then
        delivered = g[i + 1]
      end
    end
    if name == ARGV[1] then
      last = delivered
    end
  end
  local floor
  if p[1] > 0 then
    floor = p[2]
    sooner(tonumber(ARGV[2]) + tonumber(ARGV[3]))
  elseif last then
    local ms, seq = id_parts(last)
    floor = string.format('%d-%d', ms, seq + 1)
  end
  if floor then
    redis.call('XTRIM', KEYS[1], 'MINID', floor)
  end
  local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
  if newest and last then
    local nm, ns = id_parts(newest[1])
    local lm, ls = id_parts(last)
    if nm > lm or (nm == lm and ns > ls) then
      sooner(tonumber(ARGV[2]))
    end
  end
end
if nxt then
  return string.format('%d', nxt)
end
return ''
