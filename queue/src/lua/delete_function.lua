-- Deletes a function: its versions, its stream, and every module no other
-- version of the tenant uses (its bytes leave the tenant's stored bytes).
-- KEYS: 1 function hash, 2 tenant's function set, 3 stream, 4 module refs
--       hash, 5 tenant hash, then one module key per version (as ARGV)
-- ARGV: 1 function name, then the sha256 of each version's module
-- Returns {removed (1 or 0), the sha256s freed...}, or {'changed'} when a
-- version was added since the caller read them (it reads them again).
local versions = 0
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, 2) == 'v:' then versions = versions + 1 end
end
if versions ~= #ARGV - 1 then
  return {'changed'}
end
local out = {redis.call('SREM', KEYS[2], ARGV[1])}
for i = 2, #ARGV do
  local sha = ARGV[i]
  if redis.call('HINCRBY', KEYS[4], sha, -1) <= 0 then
    redis.call('HDEL', KEYS[4], sha)
    local size = redis.call('STRLEN', KEYS[4 + i])
    if redis.call('DEL', KEYS[4 + i]) == 1 then
      redis.call('HINCRBY', KEYS[5], 'mod_bytes', -size)
      out[#out + 1] = sha
    end
  end
end
redis.call('DEL', KEYS[1], KEYS[3])
return out
