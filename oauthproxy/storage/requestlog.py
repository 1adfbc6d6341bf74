"""The request log on Redis: :class:`RedisRequestLogStore`.

A batch of records is written by one Lua script (one round trip, run atomically, like a
MULTI/EXEC pipeline) that, per record:

- ``SET <p>rlog:rec:<correlation id> <json> EX <retention>``;
- ``ZADD`` the correlation id, scored by time, to each index of
  :func:`~oauthproxy.requestlog.record.index_entries` (``<p>rlog:idx:<index>:<value>``);
- ``PFADD`` the client IP to the host's HyperLogLog of the day
  (``<p>rlog:visitors:<host>:<YYYY-MM-DD>``) and the host to ``<p>rlog:hosts``;
- ``XADD`` the record to the capped stream ``<p>rlog:stream`` that ``logs follow`` reads.

Then every index it touched is trimmed to the retention window (scores older than the
newest record minus ``retention``) and given an expiry, so idle indexes vanish too.
The log is bounded by count as well: past ``max_records`` records the oldest are
deleted, and removed from every index they are in (the script reads each one's
indexes back from its JSON, by the rules of
:func:`~oauthproxy.requestlog.record.index_entries`), so counts stay exact.  Every key
has an expiry, which also makes the whole log evictable under the embedded Redis'
``volatile-lru`` policy while configuration (no expiry) never is.

Anonymous noise beyond its budget (:mod:`oauthproxy.requestlog.noise`) is only
counted: ``HINCRBY <p>rlog:noise:<minute> "<reason> <host>"``, the minutes listed in
the sorted set ``<p>rlog:noise`` for queries.  Key names are computed here and passed
as ``KEYS``, except the keys of records trimmed by count and their indexes, which the
script derives from ``ARGV`` prefixes.
"""

from __future__ import annotations

from collections.abc import Sequence

from attrs import define
from twisted.internet.defer import Deferred
from zope.interface import implementer

from oauthproxy.interfaces import IRequestLogStore
from oauthproxy.requestlog.noise import NoiseCount, minute_of
from oauthproxy.requestlog.record import RequestRecord, index_entries, utc_day
from oauthproxy.storage.codec import decode, encode
from oauthproxy.storage.connection import RedisConnection
from oauthproxy.storage.keys import Keys

#: 24 hours, the seed's default
DEFAULT_RETENTION = 86400.0
#: entries the follow stream keeps (approximately: ``XADD MAXLEN ~``)
STREAM_MAXLEN = 10_000
#: records per script call (a bigger batch is split; keeps each script short)
SCRIPT_BATCH = 500
#: records kept at most, whatever the retention
DEFAULT_MAX_RECORDS = 100_000

#: KEYS: stream, hosts, the "all" index, then per record: record key, visitors key, its
#: index keys.  ARGV: retention, stream maxlen, horizon, max records, record key prefix,
#: index key prefix, then per record: id, time, json, ip, host, n
WRITE_BATCH = """
local stream, hosts, all = KEYS[1], KEYS[2], KEYS[3]
local retention, maxlen, horizon = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local max_records, rec_prefix, idx_prefix = tonumber(ARGV[4]), ARGV[5], ARGV[6]
local k, a = 4, 7
local indexes, visitors = {}, {}
while a <= #ARGV do
  local id, at, json, ip, host, n = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3],
    ARGV[a + 4], tonumber(ARGV[a + 5])
  a = a + 6
  redis.call('SET', KEYS[k], json, 'EX', retention)
  redis.call('PFADD', KEYS[k + 1], ip)
  visitors[KEYS[k + 1]] = true
  redis.call('ZADD', hosts, 'GT', at, host)
  for i = 1, n do
    redis.call('ZADD', KEYS[k + 1 + i], at, id)
    indexes[KEYS[k + 1 + i]] = true
  end
  k = k + 2 + n
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'r', json)
end
-- past max_records: the oldest records go, out of every index they are in
local excess = redis.call('ZCARD', all) - max_records
if excess > 0 then
  for _, id in ipairs(redis.call('ZRANGE', all, 0, excess - 1)) do
    local json = redis.call('GET', rec_prefix .. id)
    redis.call('DEL', rec_prefix .. id)
    if json then
      local r = cjson.decode(json)
      local status = tonumber(r['status']) or 0
      local class = (status >= 100 and status < 600) and (math.floor(status / 100) .. 'xx')
        or '5xx'
      redis.call('ZREM', idx_prefix .. 'ip:' .. r['client_ip'], id)
      redis.call('ZREM', idx_prefix .. 'host:' .. r['host'], id)
      redis.call('ZREM', idx_prefix .. 'status:' .. class, id)
      if type(r['user']) == 'string' and r['user'] ~= '' then
        redis.call('ZREM', idx_prefix .. 'user:' .. r['user'], id)
      end
      if type(r['client_id']) == 'string' and r['client_id'] ~= '' then
        redis.call('ZREM', idx_prefix .. 'client:' .. r['client_id'], id)
      end
      if status >= 500 or type(r['error']) == 'string' then
        redis.call('ZREM', idx_prefix .. 'errors:', id)
      end
    end
  end
  redis.call('ZREMRANGEBYRANK', all, 0, excess - 1)
end
for index in pairs(indexes) do
  redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. horizon)
  redis.call('EXPIRE', index, retention)
end
for key in pairs(visitors) do
  redis.call('EXPIRE', key, retention + 86400)
end
redis.call('ZREMRANGEBYSCORE', hosts, '-inf', '(' .. horizon)
redis.call('EXPIRE', hosts, retention)
redis.call('EXPIRE', stream, retention)
return 0
"""

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


def _score(value: float) -> str:
    """A time as a sorted-set score (``repr`` keeps every digit)."""
    return repr(float(value))


@implementer(IRequestLogStore)
@define
class RedisRequestLogStore:
    """Request-log records, indexes and visitor counts under ``<prefix>rlog:``."""

    connection: RedisConnection
    keys: Keys
    retention: float = DEFAULT_RETENTION
    stream_maxlen: int = STREAM_MAXLEN
    #: records kept at most (the oldest go first)
    max_records: int = DEFAULT_MAX_RECORDS

    def _key(self, *parts: str) -> str:
        """``<prefix>rlog:<part>:<part>...``."""
        return f"{self.keys.prefix}rlog:" + ":".join(parts)

    def _record_key(self, correlation_id: str) -> str:
        """The string holding one record's JSON."""
        return self._key("rec", correlation_id)

    def _index_key(self, index: str, value: str) -> str:
        """The sorted set of correlation ids of one index value."""
        return self._key("idx", index, value)

    def _visitors_key(self, host: str, day: str) -> str:
        """The HyperLogLog of client IPs of ``host`` on ``day``."""
        return self._key("visitors", host, day)

    def write(self, records: Sequence[RequestRecord]) -> Deferred[None]:
        """Store ``records`` in script calls of at most ``SCRIPT_BATCH`` records."""

        async def write() -> None:
            for start in range(0, len(records), SCRIPT_BATCH):
                await self._write_batch(records[start : start + SCRIPT_BATCH])

        return Deferred.fromCoroutine(write())

    async def _write_batch(self, records: Sequence[RequestRecord]) -> None:
        """One script call for ``records``."""
        if not records:
            return
        horizon = max(r.time for r in records) - self.retention
        keys = [self._key("stream"), self._key("hosts"), self._index_key("all", "")]
        args: list[object] = [
            int(self.retention),
            min(self.stream_maxlen, self.max_records),
            _score(horizon),
            self.max_records,
            self._key("rec", ""),
            self._key("idx", ""),
        ]
        for record in records:
            indexes = index_entries(record)
            keys.append(self._record_key(record.correlation_id))
            keys.append(self._visitors_key(record.host, utc_day(record.time)))
            keys.extend(self._index_key(index, value) for index, value in indexes)
            args += [
                record.correlation_id,
                _score(record.time),
                encode(record),
                record.client_ip,
                record.host,
                len(indexes),
            ]
        await self.connection.eval(WRITE_BATCH, keys, args)

    def count_noise(self, counts: Sequence[NoiseCount]) -> Deferred[None]:
        """Add ``counts`` to the per-minute noise counters (kept ``retention`` seconds)."""

        async def count() -> None:
            if not counts:
                return
            horizon = max(c.minute for c in counts) - self.retention
            keys = [self._key("noise")]
            args: list[object] = [int(self.retention), _score(horizon)]
            for c in counts:
                keys.append(self._key("noise", str(c.minute)))
                args += [c.minute, f"{c.reason} {c.host}", c.count]
            await self.connection.eval(COUNT_NOISE, keys, args)

        return Deferred.fromCoroutine(count())

    def noise(self, since: float, until: float) -> Deferred[list[NoiseCount]]:
        """The noise counters of the minutes in ``[since, until]``, oldest first."""

        async def noise() -> list[NoiseCount]:
            reply = await self.connection.eval(
                READ_NOISE,
                [self._key("noise")],
                [_score(minute_of(since)), _score(until), self._key("noise", "")],
            )
            found = []
            for minute, flat in zip(reply[::2], reply[1::2], strict=True):
                for name, value in zip(flat[::2], flat[1::2], strict=True):
                    reason, _, host = str(name).partition(" ")
                    found.append(NoiseCount(int(minute), reason, host, int(value)))
            return sorted(found, key=lambda c: (c.minute, c.reason, c.host))

        return Deferred.fromCoroutine(noise())

    def get(self, correlation_id: str) -> Deferred[RequestRecord | None]:
        """The record, or None (expired or never written)."""

        async def get() -> RequestRecord | None:
            text = await self.connection.call("GET", self._record_key(correlation_id))
            return None if text is None else decode(RequestRecord, text)

        return Deferred.fromCoroutine(get())

    def find(
        self, index: str, value: str, since: float, until: float, offset: int, count: int
    ) -> Deferred[list[RequestRecord]]:
        """Records of one index in ``[since, until]``, newest first."""

        async def find() -> list[RequestRecord]:
            ids = await self.connection.call(
                "ZREVRANGEBYSCORE",
                self._index_key(index, value),
                _score(until),
                _score(since),
                "LIMIT",
                offset,
                count,
            )
            if not ids:
                return []
            texts = await self.connection.call("MGET", *[self._record_key(i) for i in ids])
            return [decode(RequestRecord, text) for text in texts if text is not None]

        return Deferred.fromCoroutine(find())

    def count(self, index: str, value: str, since: float, until: float) -> Deferred[int]:
        """``ZCOUNT`` of one index over ``[since, until]``."""

        async def count() -> int:
            key = self._index_key(index, value)
            return int(await self.connection.call("ZCOUNT", key, _score(since), _score(until)))

        return Deferred.fromCoroutine(count())

    def hosts(self, since: float) -> Deferred[list[str]]:
        """Hosts seen at or after ``since``."""

        async def hosts() -> list[str]:
            names = await self.connection.call(
                "ZRANGEBYSCORE", self._key("hosts"), _score(since), "+inf"
            )
            return sorted(str(name) for name in names or ())

        return Deferred.fromCoroutine(hosts())

    def visitors(self, host: str, days: Sequence[str]) -> Deferred[int]:
        """``PFCOUNT`` over the host's HyperLogLogs of ``days`` (their union)."""

        async def visitors() -> int:
            if not days:
                return 0
            keys = [self._visitors_key(host, day) for day in days]
            return int(await self.connection.call("PFCOUNT", *keys))

        return Deferred.fromCoroutine(visitors())

    def recent(self, after: str | None, count: int) -> Deferred[tuple[list[RequestRecord], str]]:
        """Stream entries after the cursor ``after`` (or the newest ``count``)."""

        async def recent() -> tuple[list[RequestRecord], str]:
            stream = self._key("stream")
            if after is None:
                newest = await self.connection.call("XREVRANGE", stream, "+", "-", "COUNT", count)
                entries = list(reversed(newest or []))
            else:
                entries = (
                    await self.connection.call("XRANGE", stream, "(" + after, "+", "COUNT", count)
                    or []
                )
            records = [decode(RequestRecord, _field(fields, "r")) for _, fields in entries]
            cursor = str(entries[-1][0]) if entries else (after or "0-0")
            return records, cursor

        return Deferred.fromCoroutine(recent())


def _field(fields: Sequence[object], name: str) -> str:
    """The value of ``name`` in a stream entry's flat ``[name, value, ...]`` list."""
    pairs = dict(zip(fields[::2], fields[1::2], strict=True))
    return str(pairs[name])
