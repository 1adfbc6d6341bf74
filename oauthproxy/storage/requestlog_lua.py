"""The Lua scripts of the request log on Redis (see :mod:`oauthproxy.storage.requestlog`).

The log is stored in **segments**: one hash ``<p>seg:<id>`` per group of records written
together (ids from ``INCR <p>seq``), with the fields

- ``r``: the records as one JSON array of rows (field order of
  :class:`~oauthproxy.requestlog.record.RequestRecord`), oldest first, without the
  time (``T`` has it), the duration in seconds (older segments have it in whole
  microseconds, and the oldest the time first: readers take all three);
- ``T``: their times, packed little-endian doubles (``struct`` ``<d``), ascending;
- ``s``: how many of the oldest rows the count cap has trimmed away (they are skipped);
- one field per index key the segment belongs to (``<p>idx:<index>:<value>``): the
  index's running total after this segment (a ``<d``), then the row positions that
  belong to the index (``<H`` each).

Each index key is a sorted set of segment ids scored by the segment's newest time;
``<p>cum`` holds every index's running total.  A count over a window is then the
difference of two running totals, corrected at the two edge segments by binary
searches over their positions: no record is decoded and no per-record key exists.
Segments span at most ``span`` seconds (the store splits them), so a segment that
holds records up to ``until`` has a score of at most ``until + span``.

Every script gets the key prefix ``<p>`` in ``ARGV[1]`` and derives segment keys from
it: segment ids are made by the write script itself.
"""

#: helpers every script starts with
_COMMON = """
local p = ARGV[1]
local function time_at(T, q) return (struct.unpack('<d', T, q * 8 + 1)) end
local function pos_at(P, i) return (struct.unpack('<H', P, i * 2 + 9)) end
local function size(P) return (#P - 8) / 2 end
local function cum(P) return (struct.unpack('<d', P)) end
-- the smallest i in [0, n] for which pred(i) holds (pred is monotone; n if never)
local function first(n, pred)
  local lo, hi = 0, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if pred(mid) then hi = mid else lo = mid + 1 end
  end
  return lo
end
-- rows of an index field P (past the s trimmed ones) whose time is in [since, till]
local function in_window(T, P, s, since, till)
  local n = size(P)
  local a = first(n, function(i)
    local q = pos_at(P, i)
    return q >= s and time_at(T, q) >= since
  end)
  local b = first(n, function(i) return time_at(T, pos_at(P, i)) > till end)
  if b > a then return b - a end
  return 0
end
-- calls fn(id) over the ids of key scored in [lo, hi] (descending if reverse) until it
-- returns true
local function walk(key, lo, hi, reverse, fn)
  local offset = 0
  while true do
    local ids
    if reverse then
      ids = redis.call('ZREVRANGEBYSCORE', key, hi, lo, 'LIMIT', offset, 100)
    else
      ids = redis.call('ZRANGEBYSCORE', key, lo, hi, 'LIMIT', offset, 100)
    end
    for _, id in ipairs(ids) do
      if fn(id) then return true end
    end
    if #ids < 100 then return false end
    offset = offset + 100
  end
end
"""

#: ARGV: prefix, retention, horizon, max records, then per segment: newest time, rows
#: JSON, packed times, index count n, n times (index key, packed positions), visitor key
#: count v, v times (key, ip count k, k ips), host count h, h times (host, newest time)
WRITE = (
    _COMMON
    + """
local retention, horizon, max_records = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local all = p .. 'idx:all:'
local touched = {}
local a = 5
while a <= #ARGV do
  local newest, rows, times, n_idx = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  a = a + 4
  local id = redis.call('INCR', p .. 'seq')
  local seg = p .. 'seg:' .. id
  redis.call('HSET', seg, 'r', rows, 'T', times, 's', 0)
  for i = 1, n_idx do
    local key, positions = ARGV[a], ARGV[a + 1]
    a = a + 2
    local total = redis.call('HINCRBY', p .. 'cum', key, #positions / 2)
    redis.call('HSET', seg, key, struct.pack('<d', total) .. positions)
    redis.call('ZADD', key, newest, id)
    touched[key] = true
  end
  redis.call('EXPIRE', seg, retention)
  local n_vis = tonumber(ARGV[a])
  a = a + 1
  for i = 1, n_vis do
    local key, k = ARGV[a], tonumber(ARGV[a + 1])
    redis.call('PFADD', key, unpack(ARGV, a + 2, a + 1 + k))
    redis.call('EXPIRE', key, retention + 86400)
    a = a + 2 + k
  end
  local n_hosts = tonumber(ARGV[a])
  a = a + 1
  for i = 1, n_hosts do
    redis.call('ZADD', p .. 'hosts', 'GT', ARGV[a + 1], ARGV[a])
    a = a + 2
  end
end
-- a segment leaves every index it is in, then goes
local function drop(id)
  local seg = p .. 'seg:' .. id
  for _, name in ipairs(redis.call('HKEYS', seg)) do
    if string.sub(name, 1, #p) == p then redis.call('ZREM', name, id) end
  end
  redis.call('ZREM', all, id)
  redis.call('DEL', seg)
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', all, '-inf', '(' .. horizon)) do drop(id) end
-- past max_records: whole oldest segments go, then the oldest rows of the next one
local total = tonumber(redis.call('HGET', p .. 'cum', all) or '0')
while true do
  local oldest = redis.call('ZRANGE', all, 0, 0)[1]
  if not oldest then break end
  local f = redis.call('HMGET', p .. 'seg:' .. oldest, all, 's')
  if not f[1] then
    redis.call('ZREM', all, oldest)  -- evicted under memory pressure
  else
    local n, s = size(f[1]), tonumber(f[2])
    local excess = total - (cum(f[1]) - n) - s - max_records
    if excess <= 0 then break end
    if n - s <= excess then
      drop(oldest)
    else
      redis.call('HSET', p .. 'seg:' .. oldest, 's', s + excess)
      break
    end
  end
end
for key in pairs(touched) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. horizon)
  redis.call('EXPIRE', key, retention)
end
redis.call('ZREMRANGEBYSCORE', p .. 'hosts', '-inf', '(' .. horizon)
for _, key in ipairs({p .. 'hosts', p .. 'cum', p .. 'seq'}) do
  redis.call('EXPIRE', key, retention)
end
return 0
"""
)

#: KEYS: the index key.  ARGV: prefix, since, until, until + span.  Returns the count.
COUNT = (
    _COMMON
    + """
local key = KEYS[1]
local since, till = tonumber(ARGV[2]), tonumber(ARGV[3])
local lo, hi = ARGV[2], ARGV[4]
-- a segment of the index with rows in the window: id, its index field, those rows
local function probe(id)
  local f = redis.call('HMGET', p .. 'seg:' .. id, key, 'T', 's')
  if f[1] then
    local m = in_window(f[2], f[1], tonumber(f[3]), since, till)
    if m > 0 then return tonumber(id), f[1], m end
  end
end
local first_id, first_P, first_m, last_id, last_P, last_m
walk(key, lo, hi, false, function(id)
  first_id, first_P, first_m = probe(id)
  return first_id ~= nil
end)
if not first_id then return 0 end
walk(key, lo, hi, true, function(id)
  last_id, last_P, last_m = probe(id)
  return last_id ~= nil
end)
if first_id == last_id then return first_m end
if first_id > last_id then
  -- segments out of time order (the clock went back): add them up one by one
  local total = 0
  walk(key, lo, hi, false, function(id)
    local i, P, m = probe(id)
    if i then total = total + m end
  end)
  return total
end
return cum(last_P) - (cum(first_P) - size(first_P)) - (size(last_P) - last_m)
  - (size(first_P) - first_m)
"""
)

#: KEYS: the index key.  ARGV: prefix, since, until, until + span, offset, count.
#: Returns {rows JSON, packed times, trimmed rows, matches to skip, ...} per segment,
#: newest first.
FIND = (
    _COMMON
    + """
local key = KEYS[1]
local since, till = tonumber(ARGV[2]), tonumber(ARGV[3])
local skip, want = tonumber(ARGV[5]), tonumber(ARGV[6])
local out, got = {}, 0
if want <= 0 then return out end
walk(key, ARGV[2], ARGV[4], true, function(id)
  local seg = p .. 'seg:' .. id
  local f = redis.call('HMGET', seg, key, 'T', 's')
  if not f[1] then return false end
  local m = in_window(f[2], f[1], tonumber(f[3]), since, till)
  if m == 0 then return false end
  if skip >= m then
    skip = skip - m
    return false
  end
  table.insert(out, redis.call('HGET', seg, 'r'))
  table.insert(out, f[2])
  table.insert(out, tonumber(f[3]))
  table.insert(out, skip)
  got = got + m - skip
  skip = 0
  return got >= want
end)
return out
"""
)

#: KEYS: the ``all`` index.  ARGV: prefix, time the record cannot be older than,
#: the correlation id as JSON.  Returns {rows JSON, packed times, trimmed rows, ...} of
#: (at most 8) segments that contain that text.
GET = (
    _COMMON
    + """
local out = {}
walk(KEYS[1], ARGV[2], '+inf', false, function(id)
  local f = redis.call('HMGET', p .. 'seg:' .. id, 'r', 's', 'T')
  if f[1] and string.find(f[1], ARGV[3], 1, true) then
    table.insert(out, f[1])
    table.insert(out, f[3])
    table.insert(out, tonumber(f[2]))
  end
  return #out >= 24
end)
return out
"""
)

#: KEYS: the ``all`` index.  ARGV: prefix, count, then the cursor's segment id and row
#: (none: the newest ``count`` rows).  Returns {next segment id, next row,
#: rows JSON, packed times, first row, end row, ...}: slices of segments, oldest first.
RECENT = (
    _COMMON
    + """
local want = tonumber(ARGV[2])
local seq = tonumber(redis.call('GET', p .. 'seq') or '0')
local out = {}
local got = 0
local function slice(seg)
  local f = redis.call('HMGET', seg, 'r', 's', 'T')
  if not f[1] then return nil end
  return f[1], tonumber(f[2]), #f[3] / 8, f[3]
end
if not ARGV[3] then
  local newest = {}
  walk(KEYS[1], '-inf', '+inf', true, function(id)
    if got >= want then return true end
    local rows, s, n, T = slice(p .. 'seg:' .. id)
    if rows then
      local take = math.min(n - s, want - got)
      if take > 0 then
        table.insert(newest, {rows, T, n - take, n})
        got = got + take
      end
    end
    return got >= want
  end)
  out = {seq + 1, 0}
  for i = #newest, 1, -1 do
    for _, v in ipairs(newest[i]) do table.insert(out, v) end
  end
  return out
end
local id, row = tonumber(ARGV[3]), tonumber(ARGV[4])
if id > seq + 1 then id, row = seq + 1, 0 end  -- a cursor from before the log restarted
local oldest = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0)[1] or '0')
if oldest > id then id, row = oldest, 0 end
while id <= seq and got < want do
  local rows, s, n, T = slice(p .. 'seg:' .. id)
  if rows then
    local start = math.max(row, s)
    local take = math.min(n - start, want - got)
    if take > 0 then
      for _, v in ipairs({rows, T, start, start + take}) do table.insert(out, v) end
      got = got + take
    end
    if start + take < n then return {id, start + take, unpack(out)} end
  end
  id, row = id + 1, 0
end
return {id, row, unpack(out)}
"""
)

#: KEYS: the minutes index, then one noise hash per count.  ARGV: retention, horizon,
#: then per count: minute, field, n
COUNT_NOISE = """
local minutes, retention, horizon = KEYS[1], tonumber(ARGV[1]), ARGV[2]
local a = 3
for k = 2, #KEYS do
  redis.call('HINCRBY', KEYS[k], ARGV[a + 1], ARGV[a + 2])
  redis.call('EXPIRE', KEYS[k], retention)
  redis.call('ZADD', minutes, ARGV[a], ARGV[a])
  a = a + 3
end
redis.call('ZREMRANGEBYSCORE', minutes, '-inf', '(' .. horizon)
redis.call('EXPIRE', minutes, retention)
return 0
"""

#: KEYS: the minutes index.  ARGV: since, until, noise key prefix.
#: Returns {minute, {field, n, ...}, ...}
READ_NOISE = """
local out = {}
for _, minute in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2])) do
  table.insert(out, minute)
  table.insert(out, redis.call('HGETALL', ARGV[3] .. minute))
end
return out
"""
