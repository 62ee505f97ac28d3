-- Stored bytes of a tenant (prepended to the scripts that count or check
-- them; see `stored.rs` for the same arithmetic in Rust):
-- * modules and variables: exact, the tenant hash's `mod_bytes` (deploy adds
--   a module the tenant did not have, the delete of its last version
--   subtracts it; a variable counts its name and stored form);
-- * what invocations wrote that lives for the record TTL (outputs, outcomes
--   with their logs and errors, retry payloads, dead letters): bytes written
--   per slot of TTL/24 in a hash slot number -> bytes. What slot s wrote has
--   expired by the end of slot s + 24, so the slots from now - 24 on are an
--   upper bound of what is still kept, and the oldest of them says when the
--   bound next drops.
-- Queued payloads are not counted: `max_pending` times the payload limit
-- bounds them, and they leave as the work is done.
local STORED_SLOTS = 24

local function stored_slot(now_ms, ttl)
  local len = math.max(1, math.ceil(tonumber(ttl) / STORED_SLOTS))
  return math.floor(tonumber(now_ms) / 1000 / len), len
end

-- The window's bytes, and seconds until its oldest slot leaves it (0 when
-- nothing will). Drops slots that left the window.
local function stored_window(key, now_ms, ttl)
  local cur, len = stored_slot(now_ms, ttl)
  local all = redis.call('HGETALL', key)
  local sum, oldest = 0, nil
  for i = 1, #all, 2 do
    local s = tonumber(all[i])
    if s and s >= cur - STORED_SLOTS then
      sum = sum + (tonumber(all[i + 1]) or 0)
      if not oldest or s < oldest then oldest = s end
    else
      redis.call('HDEL', key, all[i])
    end
  end
  local after = 0
  if oldest then
    after = math.max(1, (oldest + STORED_SLOTS + 1) * len - math.floor(tonumber(now_ms) / 1000))
  end
  return sum, after
end

-- Counts n bytes written now. The first write of a slot sets the key's TTL
-- (an idle tenant's window goes with it) and drops slots that left.
local function stored_add(key, now_ms, ttl, n)
  if n <= 0 then return end
  local cur, len = stored_slot(now_ms, ttl)
  if redis.call('HINCRBY', key, cur, n) == n then
    redis.call('EXPIRE', key, (STORED_SLOTS + 2) * len)
    if redis.call('HLEN', key) > STORED_SLOTS + 1 then
      stored_window(key, now_ms, ttl)
    end
  end
end

-- The quota reply when n more bytes of modules or variables would take the
-- tenant (hash tenant_key) over its max_stored_bytes, else nil.
local function stored_refusal(tenant_key, window_key, now_ms, ttl, n)
  local q = redis.call('HMGET', tenant_key, 'max_stored_bytes', 'mod_bytes')
  local max_stored = tonumber(q[1]) or 0
  if max_stored <= 0 then return nil end
  local window, after = stored_window(window_key, now_ms, ttl)
  local stored = window + (tonumber(q[2]) or 0)
  if stored + n > max_stored then
    return {'quota', 'stored', q[1], string.format('%d', stored), string.format('%d', after),
      tostring(n)}
  end
  return nil
end
