-- Completes delivered invocations of one tenant, each all or nothing:
-- result, follow-ups (the outbox: they exist only if the invocation
-- succeeded), run count, retry or dead letter, callbacks, XACK. One call
-- takes a batch (the worker's group commit); the completions are applied
-- one after the other, exactly as separate calls would be, and only the
-- tenant's `pending` counter and the functions' stats are written once per
-- call with the sums.
--
-- The XACK comes first and gates each completion: if the entry is no longer
-- pending (another worker reclaimed and completed it), this completion is
-- stale and changes nothing. That makes completion exactly-once per
-- delivery.
--
-- A run that is still its root alone has no record yet: the root's record
-- stands for it (see enqueue.lua). The run's record is created here when the
-- root first adds follow-ups; a root that ends without any ends its run with
-- no run record written at all.
--
-- KEYS: 1 tenant hash (its `pending` counts accepted, unfinished
--       invocations), 2 delayed zset, 3 dead-letter stream, 4 callbacks
--       stream, 5 stored-bytes window, then per completion: +0 stream, +1 invocation record,
--       +2 run record, +3 the function's stats hash, then per follow-up i
--       (0-based): +4+3i its stream, +5+3i its record, +6+3i its function hash
-- ARGV: 1 group, 2 now ms, 3 ttl s, 4 tenant, then per completion:
--       +0 entry id, +1 outcome ('ok' | 'retry' | 'fail' | 'dead'),
--       +2 outcome json (error, timings, logs, follow-up ids), +3 output,
--       +4 output content type, +5 retry due ms, +6 delayed member,
--       +7 envelope json (for a retry: the next attempt's), +8 payload,
--       +9 error class, +10 error message, +11 number of follow-ups,
--       +12 callback url, +13 invocation id, +14 run id, +15 attempt,
--       +16 follow-up depth, +17 reply channel ('' = none), +18 busy time
--       of this attempt (us), +19 the attempt's traceparent ('' = none; the
--       parent of its callbacks' spans), +20 '1' = refresh the record's TTL
--       on success (an old record; a young one keeps the TTL it got when
--       it was queued), +21 '1' = the envelope says the run has no record
--       yet (a root enqueued without one: no need to look), +22 then the
--       run's callback url ('' = none), then per follow-up i: +23+4i
--       envelope json, +24+4i payload, +25+4i id, +26+4i function
-- Returns one {status, run status, '1' if it queued a callback else '',
-- when its retry is due ('' for none)} per completion; status is 'stale'
-- when the delivery had been completed already, 'retry' also for an
-- invocation whose follow-ups wait for room under the tenant's max_pending. The caller marks the due indexes (retries, callbacks): they are
-- global keys, another slot on a cluster.
-- (The TTL stays the string it came as: a Lua number would be formatted
-- back on every call.)
local group, now, ttl, tenant = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local pending_delta = 0
-- Bytes this call writes that live for the record TTL, and the tenant's
-- stored bytes before it (read once, when the tenant has a maximum).
local stored_delta = 0
local max_stored, stored_before = nil, 0

-- Whether `size` more bytes fit under the tenant's max_stored_bytes.
local function fits(size)
  if max_stored == nil then
    local q = redis.call('HMGET', KEYS[1], 'max_stored_bytes', 'mod_bytes')
    max_stored = tonumber(q[1]) or 0
    if max_stored > 0 then
      stored_before = stored_window(KEYS[5], now, ttl) + (tonumber(q[2]) or 0)
    end
  end
  return max_stored == 0 or stored_before + stored_delta + size <= max_stored
end

-- An outcome without its logs (kept when the tenant has no room for them).
local function without_logs(json)
  local decoded = cjson.decode(json)
  if decoded['logs'] == nil or next(decoded['logs']) == nil then
    return json
  end
  decoded['logs'] = nil
  decoded['logs_dropped'] = true
  return cjson.encode(decoded)
end
local stats, stats_order = {}, {}

-- How many times an invocation whose follow-ups find the tenant at its
-- max_pending waits for room before it fails (1, 2 and 4 s): long enough
-- for a burst to pass, short enough that runs which cannot fit (every
-- pending invocation waiting for room) fail within seconds, visibly.
local MAX_WAITS = 3

-- Dead letters kept per tenant: the newest, older ones trimmed (a bound on
-- what a tenant's failures can hold in Redis; redrive or read them sooner).
local DEAD_LETTERS = 10000

local function complete(k, a)
  local id = ARGV[a + 13]
  local wait_due
  if redis.call('XACK', KEYS[k], group, ARGV[a]) == 0 then
    return {'stale'}
  end
  local record, run_key = KEYS[k + 1], KEYS[k + 2]
  local outcome = ARGV[a + 1]
  local outcome_json = ARGV[a + 2]
  local class = ARGV[a + 9]
  local message = ARGV[a + 10]
  local nf = tonumber(ARGV[a + 11])
  local run_id = ARGV[a + 14]

  -- A root whose run has no record yet (see enqueue.lua): the run is this
  -- invocation alone, and the root's record holds its limits and callback.
  local known = ARGV[a + 21] == '1'
  local lazy = id == run_id and (known or redis.call('EXISTS', run_key) == 0)

  -- Run guards and follow-up targets are checked here, against the run as
  -- it is now, so that they hold under any number of concurrent completions.
  if outcome == 'ok' and nf > 0 then
    local run
    if lazy then
      local r = redis.call('HMGET', record, 'max_depth', 'max_inv')
      run = {1, r[1], r[2]}
    else
      run = redis.call('HMGET', run_key, 'total', 'max_depth', 'max_invocations')
    end
    local total = tonumber(run[1]) or 0
    local max_depth = tonumber(run[2]) or 0
    local max_inv = tonumber(run[3]) or 0
    local depth = tonumber(ARGV[a + 16])
    for i = 0, nf - 1 do
      if redis.call('EXISTS', KEYS[k + 6 + 3 * i]) == 0 then
        outcome = 'fail'
        class = 'unknown-function'
        message = 'emit to unknown function `' .. ARGV[a + 26 + 4 * i] .. '`'
        break
      end
    end
    if outcome == 'ok' and depth > max_depth then
      outcome = 'fail'
      class = 'run-limit'
      message = 'run depth limit: a follow-up at depth ' .. depth ..
        ' exceeds the maximum depth of ' .. max_depth
    elseif outcome == 'ok' and total + nf > max_inv then
      outcome = 'fail'
      class = 'run-limit'
      message = 'run size limit: ' .. nf .. ' more follow-ups would exceed the maximum of ' ..
        max_inv .. ' invocations in the run (' .. total .. ' so far)'
    end
    if outcome == 'ok' then
      -- Follow-ups count toward the tenant's cap on outstanding work, as
      -- direct invocations do. Over it, the invocation waits (back to the
      -- delayed set, its attempt unchanged, to run again with its emits
      -- when there is room), with backoff, at most MAX_WAITS times; then,
      -- or at once when its emits alone exceed the cap, it fails visibly.
      local q = redis.call('HMGET', KEYS[1], 'max_pending', 'pending')
      local max_pending = tonumber(q[1]) or 0
      local pending_now = (tonumber(q[2]) or 0) + pending_delta
      if max_pending > 0 and pending_now - 1 + nf > max_pending then
        local waits = tonumber(redis.call('HGET', record, 'qwaits') or '0') or 0
        if nf > max_pending then
          outcome = 'fail'
          class = 'quota'
          message = 'pending quota: ' .. nf .. ' follow-ups are more than the tenant\'s ' ..
            'max_pending of ' .. max_pending
        elseif waits >= MAX_WAITS then
          outcome = 'fail'
          class = 'quota'
          message = 'pending quota: ' .. nf .. ' follow-ups found no room under the tenant\'s ' ..
            'max_pending of ' .. max_pending .. ' in ' .. waits .. ' waits'
        else
          outcome = 'wait'
          wait_due = tonumber(now) + 1000 * 2 ^ waits
          local decoded = cjson.decode(outcome_json)
          decoded['error'] = {class = 'quota', retryable = true,
            message = 'pending quota: waiting for room for ' .. nf .. ' follow-ups (' ..
              pending_now .. ' of the tenant\'s max_pending of ' .. max_pending .. ' pending)'}
          decoded['follow_ups'] = nil
          outcome_json = cjson.encode(decoded)
        end
      end
    end
  end
  if outcome == 'ok' then
    -- The output is kept for the record TTL: within the tenant's stored
    -- bytes, or the invocation fails visibly instead of storing it.
    if not fits(#ARGV[a + 3] + #outcome_json) then
      outcome = 'fail'
      class = 'quota'
      message = 'stored-bytes quota: an output of ' .. #ARGV[a + 3] .. ' bytes would take ' ..
        'the tenant over its max_stored_bytes of ' .. string.format('%d', max_stored) ..
        ' (' .. string.format('%d', stored_before + stored_delta) .. ' stored)'
    end
  end
  if outcome == 'fail' and ARGV[a + 1] == 'ok' then
    local decoded = cjson.decode(outcome_json)
    decoded['error'] = {class = class, message = message, retryable = false}
    decoded['follow_ups'] = nil
    outcome_json = cjson.encode(decoded)
  end
  if outcome ~= 'ok' and not fits(#outcome_json) then
    -- Over the tenant's stored bytes, a failure keeps its error, not its
    -- logs (what a hostile tenant's failures may hold stays bounded).
    outcome_json = without_logs(outcome_json)
  end

  -- Every attempt counts towards the service time the controller plans
  -- with (summed per function, written once per call).
  local skey = KEYS[k + 3]
  local s = stats[skey]
  if not s then
    s = {0, 0}
    stats[skey] = s
    stats_order[#stats_order + 1] = skey
  end
  s[1] = s[1] + 1
  s[2] = s[2] + (tonumber(ARGV[a + 18]) or 0)

  local final = true
  local run_field = nil
  local refresh = true
  local kept = 0
  if outcome == 'ok' then
    kept = #ARGV[a + 3]
    redis.call('HSET', record, 'status', 'succeeded', 'completed', now,
      'outcome', outcome_json, 'output', ARGV[a + 3], 'ct', ARGV[a + 4], 'attempt', ARGV[a + 15])
    refresh = ARGV[a + 20] == '1'
    for i = 0, nf - 1 do
      local fk, fa = k + 4 + 3 * i, a + 23 + 4 * i
      redis.call('XADD', KEYS[fk], '*', 'e', ARGV[fa], 'p', ARGV[fa + 1])
      -- A follow-up's record leaves out its id and tenant (the key),
      -- attempt 1 and no completions yet (see enqueue.lua).
      redis.call('HSET', KEYS[fk + 1],
        'function', ARGV[fa + 3], 'status', 'queued', 'run', run_id, 'parent', id,
        'depth', ARGV[a + 16], 'created', now)
      redis.call('EXPIRE', KEYS[fk + 1], ttl)
    end
    if nf > 0 then
      if lazy then
        -- The root fans out: its run gets a record of its own, holding the
        -- root alone so far.
        local r = redis.call('HMGET', record, 'function', 'created', 'max_depth', 'max_inv',
          'run_cb')
        redis.call('HSET', run_key,
          'id', run_id, 'tenant', tenant, 'function', r[1], 'status', 'running',
          'total', 1, 'outstanding', 1, 'succeeded', 0, 'failed', 0, 'dead', 0,
          'max_depth', r[3], 'max_invocations', r[4], 'created', r[2])
        if r[5] then
          redis.call('HSET', run_key, 'callback', r[5])
        end
        lazy = false
      end
      -- New work keeps the run alive for another TTL (a run's record is
      -- otherwise refreshed only when it ends).
      redis.call('HINCRBY', run_key, 'total', nf)
      redis.call('HINCRBY', run_key, 'outstanding', nf)
      redis.call('EXPIRE', run_key, ttl)
      pending_delta = pending_delta + nf
    end
    run_field = 'succeeded'
  elseif outcome == 'retry' then
    final = false
    redis.call('HSET', record, 'status', 'retrying', 'attempt', ARGV[a + 15],
      'outcome', outcome_json, 're', ARGV[a + 7], 'rp', ARGV[a + 8])
    redis.call('ZADD', KEYS[2], ARGV[a + 5], ARGV[a + 6])
    kept = #ARGV[a + 7] + #ARGV[a + 8]
  elseif outcome == 'wait' then
    kept = #ARGV[a + 7] + #ARGV[a + 8]
    final = false
    redis.call('HSET', record, 'status', 'retrying', 'attempt', ARGV[a + 15],
      'outcome', outcome_json, 're', ARGV[a + 7], 'rp', ARGV[a + 8])
    redis.call('HINCRBY', record, 'qwaits', 1)
    redis.call('ZADD', KEYS[2], wait_due, ARGV[a + 6])
  else
    redis.call('HSET', record, 'status', (outcome == 'dead') and 'dead' or 'failed',
      'completed', now, 'outcome', outcome_json, 'attempt', ARGV[a + 15])
    local env, payload = ARGV[a + 7], ARGV[a + 8]
    if env == '' then
      -- A success failed here (its output over the stored-bytes quota) was
      -- sent without its envelope: the entry, acknowledged above but not
      -- trimmed yet, still holds it, for a redrive.
      local entry = redis.call('XRANGE', KEYS[k], ARGV[a], ARGV[a])[1]
      if entry then
        local f = entry[2]
        for i = 1, #f, 2 do
          if f[i] == 'e' then env = f[i + 1] elseif f[i] == 'p' then payload = f[i + 1] end
        end
      end
    end
    -- Over the tenant's stored bytes, the dead letter keeps no payload (it
    -- says so, and cannot be redriven).
    local dropped = ''
    if not fits(#outcome_json + #env + #payload) then
      payload, dropped = '', '1'
    end
    kept = #env + #payload
    -- The newest DEAD_LETTERS, and only those of the last record TTL (their
    -- records are gone after it, and the stored-bytes window counts that
    -- long); `~` trims whole nodes.
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', DEAD_LETTERS, '*', 'id', id, 'e', env, 'p', payload,
      'class', class, 'error', message, 'status', (outcome == 'dead') and 'dead' or 'failed',
      'at', now, 'dropped', dropped)
    redis.call('XTRIM', KEYS[3], 'MINID', '~', string.format('%d', tonumber(now) - 1000 * tonumber(ttl)))
    run_field = (outcome == 'dead') and 'dead' or 'failed'
    if class == 'run-limit' and not lazy then
      redis.call('HSETNX', run_key, 'error', message)
    end
  end
  if refresh then
    redis.call('EXPIRE', record, ttl)
  end
  -- What lives for the record TTL: the outcome, and the output, the retry's
  -- payload or the dead letter.
  stored_delta = stored_delta + #outcome_json + kept

  local run_status = 'running'
  local queued_cb = ''
  if final then
    redis.call('HINCRBY', record, 'completions', 1)
    pending_delta = pending_delta - 1
    local reply = ARGV[a + 17]
    if reply ~= '' then
      -- The waiting request gets the finished record with the news (its
      -- fields as <length>:<bytes>), unless it is large: then just the id.
      local msg = id
      if #ARGV[a + 3] + #outcome_json <= 65536 then
        local flat = redis.call('HGETALL', record)
        local parts, size = {id, '\n'}, 0
        for i = 1, #flat do
          parts[#parts + 1] = #flat[i] .. ':' .. flat[i]
          size = size + #flat[i]
        end
        if size <= 131072 then
          msg = table.concat(parts)
        end
      end
      redis.call('PUBLISH', reply, msg)
    end
    local tp = ARGV[a + 19]
    if ARGV[a + 12] ~= '' then
      queued_cb = '1'
      redis.call('XADD', KEYS[4], '*', 'kind', 'invocation', 'id', id, 'url', ARGV[a + 12],
        'at', now, 'tp', tp)
    end
    if lazy then
      -- The root ended without follow-ups, and so did its run: nothing to
      -- count (its record is the run's), only a callback to send.
      if run_field == 'succeeded' then
        run_status = 'succeeded'
      else
        run_status = 'failed'
      end
      local cb
      if known then
        cb = ARGV[a + 22]
        if cb == '' then cb = nil end
      else
        cb = redis.call('HGET', record, 'run_cb')
      end
      if cb then
        queued_cb = '1'
        redis.call('XADD', KEYS[4], '*', 'kind', 'run', 'id', run_id, 'url', cb, 'at', now,
          'tp', tp)
      end
    else
      local left = redis.call('HINCRBY', run_key, 'outstanding', -1)
      if left > 0 then
        redis.call('HINCRBY', run_key, run_field, 1)
      else
        -- The run ends here: its counts, status and TTL in one write.
        local r = redis.call('HMGET', run_key, 'failed', 'dead', 'callback', run_field)
        local failed, dead = tonumber(r[1]) or 0, tonumber(r[2]) or 0
        if run_field == 'failed' then
          failed = failed + 1
        elseif run_field == 'dead' then
          dead = dead + 1
        end
        if failed + dead > 0 then
          run_status = 'failed'
        else
          run_status = 'succeeded'
        end
        redis.call('HSET', run_key, run_field, (tonumber(r[4]) or 0) + 1,
          'status', run_status, 'completed', now)
        redis.call('EXPIRE', run_key, ttl)
        if r[3] then
          queued_cb = '1'
          redis.call('XADD', KEYS[4], '*', 'kind', 'run', 'id', run_id, 'url', r[3], 'at', now,
            'tp', tp)
        end
      end
    end
  end
  local status, due = outcome, ''
  if outcome == 'ok' then
    status = 'succeeded'
  elseif outcome == 'fail' then
    status = 'failed'
  elseif outcome == 'retry' then
    due = ARGV[a + 5]
  elseif outcome == 'wait' then
    status = 'retry'
    due = string.format('%d', wait_due)
  end
  return {status, run_status, queued_cb, due}
end

local out = {}
local k, a = 6, 5
while k <= #KEYS do
  local nf = tonumber(ARGV[a + 11])
  out[#out + 1] = complete(k, a)
  k = k + 4 + 3 * nf
  a = a + 23 + 4 * nf
end
if pending_delta ~= 0 then
  redis.call('HINCRBY', KEYS[1], 'pending', pending_delta)
end
stored_add(KEYS[5], now, ttl, stored_delta)
for _, skey in ipairs(stats_order) do
  local s = stats[skey]
  redis.call('HINCRBY', skey, 'done', s[1])
  redis.call('HINCRBY', skey, 'busy_us', s[2])
end
return out
