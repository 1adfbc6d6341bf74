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
Key names are computed here and passed as ``KEYS``.
"""

from __future__ import annotations

from collections.abc import Sequence

from attrs import define
from twisted.internet.defer import Deferred
from zope.interface import implementer

from oauthproxy.interfaces import IRequestLogStore
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

#: KEYS: stream, hosts, then per record: record key, visitors key, its index keys
#: ARGV: retention, stream maxlen, horizon, then per record: id, time, json, ip, host, n
WRITE_BATCH = """
local stream, hosts = KEYS[1], KEYS[2]
local retention, maxlen, horizon = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local k, a = 3, 4
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
        keys = [self._key("stream"), self._key("hosts")]
        args: list[object] = [int(self.retention), self.stream_maxlen, _score(horizon)]
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
