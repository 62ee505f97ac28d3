-- Deletes a function: its versions, its stream, its variables, and every
-- module no other version of the tenant uses (module and variable bytes
-- leave the tenant's stored bytes).
-- KEYS: 1 function hash, 2 tenant's function set, 3 stream, 4 module refs
--       hash, 5 tenant hash, 6 the function's variables hash, then the
--       module key of each version (as ARGV)
-- ARGV: 1 function name, then per version: its number, its module's sha256
-- Returns {removed (1 or 0), the sha256s freed...}, or {'changed'} when the
-- versions are not the ones the caller read (it reads them again): only the
-- references of the versions deleted here are dropped.
local n = (#ARGV - 1) / 2
local versions = 0
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, 2) == 'v:' then versions = versions + 1 end
end
if versions ~= n then
  return {'changed'}
end
for j = 1, n do
  local spec = redis.call('HGET', KEYS[1], 'v:' .. ARGV[2 * j])
  if not spec or not string.find(spec, '"sha256":"' .. ARGV[2 * j + 1] .. '"', 1, true) then
    return {'changed'}
  end
end
local out = {redis.call('SREM', KEYS[2], ARGV[1])}
for j = 1, n do
  local sha = ARGV[2 * j + 1]
  if redis.call('HINCRBY', KEYS[4], sha, -1) <= 0 then
    redis.call('HDEL', KEYS[4], sha)
    local size = redis.call('STRLEN', KEYS[6 + j])
    if redis.call('DEL', KEYS[6 + j]) == 1 then
      redis.call('HINCRBY', KEYS[5], 'mod_bytes', -size)
      out[#out + 1] = sha
    end
  end
end
local vars = redis.call('HGETALL', KEYS[6])
local var_bytes = 0
for i = 1, #vars do var_bytes = var_bytes + #vars[i] end
if var_bytes > 0 then
  redis.call('HINCRBY', KEYS[5], 'mod_bytes', -var_bytes)
  redis.call('HINCRBY', KEYS[5], 'vars_v', 1)
end
redis.call('DEL', KEYS[1], KEYS[3], KEYS[6])
return out
