"""The registry's Lua scripts: each is one atomic step in Redis (see :mod:`worker.state.registry`)."""

START = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'starting' or state == 'live' then
  return {0, redis.call('HGET', KEYS[1], 'job_id'), 0}
end
if state == 'draining' and redis.call('HGET', KEYS[1], 'stop_requested') ~= '1'
    and redis.call('HGET', KEYS[1], 'publisher_sealed') ~= '1' then
  -- The input dropped and came back while the stream still drains: resume the same job.
  local back = 'starting'
  if redis.call('HEXISTS', KEYS[1], 'live_at') == 1 then back = 'live' end
  redis.call('HDEL', KEYS[1], 'segments_final', 'ended_input_at', 'draining_at', 'reason', 'reader_connected_at')
  redis.call('HSET', KEYS[1], 'state', back, 'updated_at', ARGV[4], 'heartbeat_at', ARGV[4], 'source', ARGV[3])
  local n = redis.call('HINCRBY', KEYS[1], 'resumes', 1)
  return {2, redis.call('HGET', KEYS[1], 'job_id'), n}
end
-- A new stream: refused when ARGV[5] (> 0) streams are already active (ARGV[6]: the records' key prefix).
local cap = tonumber(ARGV[5])
if cap > 0 then
  local active = 0
  for _, sid in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    if sid ~= ARGV[1] then
      local st = redis.call('HGET', ARGV[6] .. sid, 'state')
      if st == 'starting' or st == 'live' or st == 'draining' then active = active + 1 end
    end
  end
  if active >= cap then return {3, '', active} end
end
local gen = tonumber(redis.call('HGET', KEYS[1], 'generation') or '0') + 1
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4])
redis.call('HSET', KEYS[1], 'stream_id', ARGV[1], 'state', 'starting', 'job_id', ARGV[2],
  'generation', gen, 'source', ARGV[3], 'created_at', ARGV[4], 'updated_at', ARGV[4])
redis.call('PERSIST', KEYS[1])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
return {1, ARGV[2], 0}
"""

# KEYS: record; ARGV: job_id, epoch (resumes when the run began), segments_final ('' for none), now,
# reason, then 'drain' or the final state. Refused when a re-publish resumed the stream meanwhile.
END_INPUT = """
if redis.call('HGET', KEYS[1], 'job_id') ~= ARGV[1] then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'resumes') or '0') ~= tonumber(ARGV[2]) then return 0 end
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'starting' and state ~= 'live' and state ~= 'draining' then return 0 end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'segments_final', ARGV[3], 'ended_input_at', ARGV[4]) end
redis.call('HSET', KEYS[1], 'reason', ARGV[5], 'updated_at', ARGV[4])
if ARGV[6] == 'drain' then
  if state ~= 'draining' then redis.call('HSET', KEYS[1], 'state', 'draining') end
  redis.call('HSETNX', KEYS[1], 'draining_at', ARGV[4])
else
  redis.call('HSET', KEYS[1], 'state', ARGV[6])
  redis.call('HSETNX', KEYS[1], 'ended_at', ARGV[4])
end
return 1
"""

# KEYS: record; ARGV: job_id. The publisher put out the last piece and ends: no resume after this.
SEAL = """
if redis.call('HGET', KEYS[1], 'job_id') ~= ARGV[1] then return 0 end
if redis.call('HEXISTS', KEYS[1], 'segments_final') == 0 then return 0 end
redis.call('HSET', KEYS[1], 'publisher_sealed', '1')
return 1
"""

# KEYS: record; ARGV: job_id, new_state, now, reason, allowed states (comma list), ts field
TRANSITION = """
if redis.call('HGET', KEYS[1], 'job_id') ~= ARGV[1] then return 0 end
local state = redis.call('HGET', KEYS[1], 'state')
if not string.find(',' .. ARGV[5] .. ',', ',' .. state .. ',', 1, true) then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'updated_at', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'reason', ARGV[4]) end
if ARGV[6] ~= '' then redis.call('HSETNX', KEYS[1], ARGV[6], ARGV[3]) end
return 1
"""

# KEYS: lease; ARGV: job_id, ttl_ms. Refresh only our own lease; take it when free.
LEASE = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# Write fields only into a record that exists (after a Redis restart without persistence, a worker
# must not recreate a half record).
SET = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

# Merge fields into one segment's JSON atomically (tasks update different fields concurrently);
# nested objects (timings_ms) are merged key by key.
APPLY = """
local function apply(obj, fields)
  for k, v in pairs(fields) do
    if type(v) == 'table' and type(obj[k]) == 'table' then
      for kk, vv in pairs(v) do obj[k][kk] = vv end  -- timings_ms: merge, don't replace
    else
      obj[k] = v
    end
  end
end
"""
MERGE = APPLY + """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local seg = cjson.decode(raw)
apply(seg, cjson.decode(ARGV[2]))
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(seg))
return 1
"""

# KEYS: record; ARGV: field, by. Count atomically, only in a record that exists; nil when there is none.
INCR = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
"""
