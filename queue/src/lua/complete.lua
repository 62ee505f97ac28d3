-- Completes one delivered invocation, all or nothing: result, follow-ups (the
-- outbox: they exist only if the invocation succeeded), run count, retry or
-- dead letter, callbacks, XACK.
--
-- The XACK comes first and gates everything: if the entry is no longer pending
-- (another worker reclaimed and completed it), this completion is stale and
-- changes nothing. That makes completion exactly-once per delivery.
--
-- A run that is still its root alone has no record (KEYS 3) yet: the root's
-- record stands for it (see enqueue.lua). The record is created here when the
-- root first adds follow-ups; a root that ends without any ends its run with
-- no run record written at all.
--
-- KEYS: 1 stream, 2 invocation record, 3 run record, 4 delayed zset,
--       5 dead-letter stream, 6 callbacks stream, 7 tenant hash (its `pending`
--       counts accepted, unfinished invocations), 8 the function's stats hash,
--       then per follow-up i (0-based): 9+3i its stream, 10+3i its record,
--       11+3i its function hash
-- ARGV: 1 entry id, 2 group, 3 outcome ('ok' | 'retry' | 'fail' | 'dead'),
--       4 now ms, 5 ttl s, 6 outcome json (error, timings, logs, follow-up ids),
--       7 output, 8 output content type, 9 retry due ms, 10 delayed member,
--       11 envelope json (for a retry: the next attempt's), 12 payload,
--       13 error class, 14 error message, 15 number of follow-ups,
--       16 callback url, 17 invocation id, 18 run id, 19 attempt,
--       20 follow-up depth, 21 tenant, 22 reply channel ('' = none),
--       23 busy time of this attempt (us), 24 the attempt's traceparent
--       ('' = none; the parent of its callbacks' spans),
--       then per follow-up i: 25+4i envelope json, 26+4i payload, 27+4i id,
--       28+4i function
if redis.call('XACK', KEYS[1], ARGV[2], ARGV[1]) == 0 then
  return {'stale'}
end

local outcome = ARGV[3]
local now = ARGV[4]
local ttl = tonumber(ARGV[5])
local outcome_json = ARGV[6]
local class = ARGV[13]
local message = ARGV[14]
local nf = tonumber(ARGV[15])
local id = ARGV[17]

-- A root whose run has no record yet (see enqueue.lua): the run is this
-- invocation alone, and the root's record holds its limits and callback.
local lazy = id == ARGV[18] and redis.call('EXISTS', KEYS[3]) == 0

-- Run guards and follow-up targets are checked here, against the run as it
-- is now, so that they hold under any number of concurrent completions.
if outcome == 'ok' and nf > 0 then
  local run
  if lazy then
    local r = redis.call('HMGET', KEYS[2], 'max_depth', 'max_inv')
    run = {1, r[1], r[2]}
  else
    run = redis.call('HMGET', KEYS[3], 'total', 'max_depth', 'max_invocations')
  end
  local total = tonumber(run[1]) or 0
  local max_depth = tonumber(run[2]) or 0
  local max_inv = tonumber(run[3]) or 0
  local depth = tonumber(ARGV[20])
  for i = 0, nf - 1 do
    if redis.call('EXISTS', KEYS[11 + 3 * i]) == 0 then
      outcome = 'fail'
      class = 'unknown-function'
      message = 'emit to unknown function `' .. ARGV[28 + 4 * i] .. '`'
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
  if outcome ~= 'ok' then
    local decoded = cjson.decode(outcome_json)
    decoded['error'] = {class = class, message = message, retryable = false}
    decoded['follow_ups'] = nil
    outcome_json = cjson.encode(decoded)
  end
end

-- Every attempt counts towards the service time the controller plans with.
redis.call('HINCRBY', KEYS[8], 'done', 1)
redis.call('HINCRBY', KEYS[8], 'busy_us', tonumber(ARGV[23]) or 0)

local final = true
local run_field = nil
if outcome == 'ok' then
  redis.call('HSET', KEYS[2], 'status', 'succeeded', 'completed', now,
    'outcome', outcome_json, 'output', ARGV[7], 'ct', ARGV[8], 'attempt', ARGV[19])
  for i = 0, nf - 1 do
    local env = ARGV[25 + 4 * i]
    redis.call('XADD', KEYS[9 + 3 * i], '*', 'e', env, 'p', ARGV[26 + 4 * i])
    redis.call('HSET', KEYS[10 + 3 * i],
      'id', ARGV[27 + 4 * i], 'tenant', ARGV[21], 'function', ARGV[28 + 4 * i],
      'status', 'queued', 'run', ARGV[18], 'parent', id, 'depth', ARGV[20],
      'attempt', 1, 'completions', 0, 'created', now)
    redis.call('EXPIRE', KEYS[10 + 3 * i], ttl)
  end
  if nf > 0 then
    if lazy then
      -- The root fans out: its run gets a record of its own, holding the
      -- root alone so far.
      local r = redis.call('HMGET', KEYS[2], 'function', 'created', 'max_depth', 'max_inv',
        'run_cb')
      redis.call('HSET', KEYS[3],
        'id', ARGV[18], 'tenant', ARGV[21], 'function', r[1], 'status', 'running',
        'total', 1, 'outstanding', 1, 'succeeded', 0, 'failed', 0, 'dead', 0,
        'max_depth', r[3], 'max_invocations', r[4], 'created', r[2])
      if r[5] then
        redis.call('HSET', KEYS[3], 'callback', r[5])
      end
      lazy = false
    end
    -- New work keeps the run alive for another TTL (a run's record is
    -- otherwise refreshed only when it ends).
    redis.call('HINCRBY', KEYS[3], 'total', nf)
    redis.call('HINCRBY', KEYS[3], 'outstanding', nf)
    redis.call('EXPIRE', KEYS[3], ttl)
    redis.call('HINCRBY', KEYS[7], 'pending', nf)
  end
  run_field = 'succeeded'
elseif outcome == 'retry' then
  final = false
  redis.call('HSET', KEYS[2], 'status', 'retrying', 'attempt', ARGV[19],
    'outcome', outcome_json, 're', ARGV[11], 'rp', ARGV[12])
  redis.call('ZADD', KEYS[4], ARGV[9], ARGV[10])
else
  redis.call('HSET', KEYS[2], 'status', (outcome == 'dead') and 'dead' or 'failed',
    'completed', now, 'outcome', outcome_json, 'attempt', ARGV[19])
  redis.call('XADD', KEYS[5], '*', 'id', id, 'e', ARGV[11], 'p', ARGV[12],
    'class', class, 'error', message, 'status', (outcome == 'dead') and 'dead' or 'failed',
    'at', now)
  run_field = (outcome == 'dead') and 'dead' or 'failed'
  if class == 'run-limit' and not lazy then
    redis.call('HSETNX', KEYS[3], 'error', message)
  end
end
redis.call('EXPIRE', KEYS[2], ttl)

local run_status = 'running'
if final then
  redis.call('HINCRBY', KEYS[2], 'completions', 1)
  redis.call('HINCRBY', KEYS[7], 'pending', -1)
  if ARGV[22] ~= '' then
    -- The waiting request gets the finished record with the news (its
    -- fields as <length>:<bytes>), unless it is large: then just the id.
    local msg = id
    if #ARGV[7] + #outcome_json <= 65536 then
      local flat = redis.call('HGETALL', KEYS[2])
      local parts, size = {id, '\n'}, 0
      for i = 1, #flat do
        parts[#parts + 1] = #flat[i] .. ':' .. flat[i]
        size = size + #flat[i]
      end
      if size <= 131072 then
        msg = table.concat(parts)
      end
    end
    redis.call('PUBLISH', ARGV[22], msg)
  end
  if ARGV[16] ~= '' then
    redis.call('XADD', KEYS[6], '*', 'kind', 'invocation', 'id', id, 'url', ARGV[16], 'at', now,
      'tp', ARGV[24])
  end
  if lazy then
    -- The root ended without follow-ups, and so did its run: nothing to
    -- count (its record is the run's), only a callback to send.
    if run_field == 'succeeded' then
      run_status = 'succeeded'
    else
      run_status = 'failed'
    end
    local cb = redis.call('HGET', KEYS[2], 'run_cb')
    if cb then
      redis.call('XADD', KEYS[6], '*', 'kind', 'run', 'id', ARGV[18], 'url', cb, 'at', now,
        'tp', ARGV[24])
    end
  else
    local left = redis.call('HINCRBY', KEYS[3], 'outstanding', -1)
    if left > 0 then
      redis.call('HINCRBY', KEYS[3], run_field, 1)
    else
      -- The run ends here: its counts, status and TTL in one write.
      local r = redis.call('HMGET', KEYS[3], 'failed', 'dead', 'callback', run_field)
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
      redis.call('HSET', KEYS[3], run_field, (tonumber(r[4]) or 0) + 1,
        'status', run_status, 'completed', now)
      redis.call('EXPIRE', KEYS[3], ttl)
      if r[3] then
        redis.call('XADD', KEYS[6], '*', 'kind', 'run', 'id', ARGV[18], 'url', r[3], 'at', now,
          'tp', ARGV[24])
      end
    end
  end
end
local status = outcome
if outcome == 'ok' then status = 'succeeded' elseif outcome == 'fail' then status = 'failed' end
return {status, run_status}
