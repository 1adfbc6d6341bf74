"""The request log on Redis: :class:`RedisRequestLogStore`.

A write costs Redis a few commands per *batch*, not per record: the records go in as
**segments** (:mod:`oauthproxy.storage.requestlog_lua` has the layout), each one hash
holding the rows as one JSON text, their times, and per index the row positions and
the index's running total.  Per segment the write script

- adds the segment to the sorted set of each index it has rows in
  (``<p>rlog:idx:<index>:<value>``, the indexes of
  :func:`~oauthproxy.requestlog.record.index_entries`), scored by its newest time;
- ``PFADD`` s the segment's client IPs to the HyperLogLog of each host and day
  (``<p>rlog:visitors:<host>:<YYYY-MM-DD>``) and its hosts to ``<p>rlog:hosts``.

Segments older than the newest record minus ``retention`` leave every index; past
``max_records`` the oldest segments go, and then the oldest rows of the next one
(they are marked trimmed), so the count bound is exact.  Every key has an expiry,
which also makes the whole log evictable under the embedded Redis' ``volatile-lru``
policy while configuration (no expiry) never is.

Counts are differences of running totals (no record is read); ``find`` decodes only
the segments that hold the page asked for; ``get`` looks for the correlation id in
the segments written after the time its first part names; ``recent`` follows the
segments in the order they were written (the cursor is ``<segment>-<row>``).

Anonymous noise beyond its budget (:mod:`oauthproxy.requestlog.noise`) is only
counted: ``HINCRBY <p>rlog:noise:<minute> "<reason> <host>"``, the minutes listed in
the sorted set ``<p>rlog:noise`` for queries.
"""

from __future__ import annotations

import json
import operator
import struct
from collections.abc import Iterator, Sequence
from itertools import chain
from typing import Any

import attrs
import orjson
from attrs import define, field
from twisted.internet.defer import Deferred
from zope.interface import implementer

from oauthproxy.interfaces import IRequestLogStore
from oauthproxy.requestlog.noise import NoiseCount, minute_of
from oauthproxy.requestlog.record import (
    ROW_CLIENT_ID,
    ROW_CLIENT_IP,
    ROW_DURATION,
    ROW_ERROR,
    ROW_HOST,
    ROW_STATUS,
    ROW_TIME,
    ROW_USER,
    RequestRecord,
    Row,
    index_entries,
    record_row,
    status_class,
    utc_day,
)
from oauthproxy.storage.connection import RedisConnection
from oauthproxy.storage.keys import Keys
from oauthproxy.storage.requestlog_lua import (
    COUNT,
    COUNT_NOISE,
    FIND,
    GET,
    READ_NOISE,
    RECENT,
    WRITE,
)

#: 24 hours, the seed's default
DEFAULT_RETENTION = 86400.0
#: records kept at most, whatever the retention
DEFAULT_MAX_RECORDS = 100_000
#: records per segment at most (row positions are 16-bit)
SEGMENT_RECORDS = 1000
#: seconds between the oldest and newest record of a segment at most
SEGMENT_SPAN = 2.0

_DAY = 86400
#: fields of a stored row written with its time (before the times left the JSON)
_FIELD_COUNT = len(attrs.fields(RequestRecord))


def _encode_rows(segment: Sequence[Row]) -> bytes:
    """The rows of ``segment`` as a segment's ``r`` field keeps them: one JSON array,
    each row without its time (the ``T`` field has it).

    orjson, not ``json``: in the saturated daemon the standard encoder was the largest
    part of a flush (0.5 us per row, orjson 0.04); the duration is a float already
    rounded to the microsecond (:class:`~oauthproxy.requestlog.record.RowMaker`), so it
    stays short, and the rows need no rebuilding.  orjson refuses integers beyond 64
    bits (a client may declare any ``Content-Length``): such a segment is written by
    ``json`` (written alike: the text ``get`` searches for is the same).
    """
    rows = [row[1:] for row in segment]
    try:
        return orjson.dumps(rows)
    except TypeError:
        return json.dumps(rows, separators=(",", ":"), ensure_ascii=False).encode()


def _score(value: float) -> str:
    """A time as a sorted-set score or script argument (``repr`` keeps every digit)."""
    return repr(float(value))


def _rows(text: str, times: str | bytes) -> list[RequestRecord]:
    """The records of a segment's rows JSON ``r`` and packed times ``T``."""
    # the reply is text when the packed times happened to be valid UTF-8
    packed = times.encode("utf-8") if isinstance(times, str) else times
    at = struct.unpack(f"<{len(packed) // 8}d", packed)
    records = []
    for i, row in enumerate(json.loads(text)):
        if len(row) == _FIELD_COUNT:  # written before the times left the JSON
            records.append(RequestRecord(*row))
            continue
        duration = row[ROW_DURATION - 1]
        if isinstance(duration, int):  # written as whole microseconds
            duration /= 1e6
        records.append(
            RequestRecord(*(at[i], *row[: ROW_DURATION - 1], duration, *row[ROW_DURATION:]))
        )
    return records


def _quads(reply: Sequence[Any]) -> Iterator[tuple[str, str | bytes, int, int]]:
    """A flat script reply ``[r, T, a, b, r, T, a, b...]`` as ``(r, T, int, int)``."""
    for i in range(0, len(reply) - 3, 4):
        yield str(reply[i]), reply[i + 1], int(reply[i + 2]), int(reply[i + 3])


def _segments(rows: Sequence[Row]) -> Iterator[list[Row]]:
    """``rows`` oldest first, in runs of at most ``SEGMENT_RECORDS`` rows spanning
    at most ``SEGMENT_SPAN`` seconds."""
    segment: list[Row] = []
    start = 0.0
    for row in sorted(rows, key=operator.itemgetter(ROW_TIME)):
        if segment and (len(segment) >= SEGMENT_RECORDS or row[ROW_TIME] - start > SEGMENT_SPAN):
            yield segment
            segment = []
        if not segment:
            start = row[ROW_TIME]
        segment.append(row)
    if segment:
        yield segment


@implementer(IRequestLogStore)
@define
class RedisRequestLogStore:
    """Request-log records, indexes and visitor counts under ``<prefix>rlog:``."""

    connection: RedisConnection
    keys: Keys
    retention: float = DEFAULT_RETENTION
    #: records kept at most (the oldest go first)
    max_records: int = DEFAULT_MAX_RECORDS
    #: index key per (index, value), and day text per day number, made once each
    _index_keys: dict[tuple[str, str], str] = field(factory=dict, init=False, repr=False)
    _days: dict[int, str] = field(factory=dict, init=False, repr=False)

    @property
    def _prefix(self) -> str:
        """``<prefix>rlog:``, the start of every key of the log."""
        return f"{self.keys.prefix}rlog:"

    def _key(self, *parts: str) -> str:
        """``<prefix>rlog:<part>:<part>...``."""
        return self._prefix + ":".join(parts)

    def _index_key(self, index: str, value: str) -> str:
        """The sorted set of the segments with records of one index value."""
        key = self._index_keys.get((index, value))
        if key is None:
            key = self._key("idx", index, value)
            if len(self._index_keys) > 10_000:
                self._index_keys.clear()
            self._index_keys[(index, value)] = key
        return key

    def _visitors_key(self, host: str, day: str) -> str:
        """The HyperLogLog of client IPs of ``host`` on ``day``."""
        return self._key("visitors", host, day)

    def _day(self, seconds: float) -> str:
        """The UTC day of ``seconds`` (``YYYY-MM-DD``), computed once per day."""
        number = int(seconds // _DAY)
        day = self._days.get(number)
        if day is None:
            if len(self._days) > 100:
                self._days.clear()
            day = self._days[number] = utc_day(number * _DAY)
        return day

    def write(self, records: Sequence[RequestRecord]) -> Deferred[None]:
        """Store ``records`` as segments, in one script call."""
        return self.write_rows([record_row(r) for r in records])

    def write_rows(self, rows: Sequence[Row]) -> Deferred[None]:
        """Store the records of ``rows`` as segments, in one script call."""

        async def write() -> None:
            if not rows:
                return
            horizon = max(row[ROW_TIME] for row in rows) - self.retention
            args: list[object] = [
                self._prefix,
                int(self.retention),
                _score(horizon),
                self.max_records,
            ]
            for segment in _segments(rows):
                args += self._segment_args(segment)
            await self.connection.eval(WRITE, [], args)

        return Deferred.fromCoroutine(write())

    def _segment_args(self, segment: list[Row]) -> list[object]:
        """The write script's arguments for one segment (see ``requestlog_lua.WRITE``).

        Rows are grouped by what places them in indexes (client IP, host, status,
        user, client, error) first: a batch has far fewer such groups than rows, so
        the index positions, visitors and hosts are worked out once per group.
        """
        groups: dict[tuple[str, str, int, str | None, str | None, bool], list[int]] = {}
        for i, row in enumerate(segment):
            status = row[ROW_STATUS]
            key = (
                row[ROW_CLIENT_IP],
                row[ROW_HOST],
                status,
                row[ROW_USER],
                row[ROW_CLIENT_ID],
                status >= 500 or row[ROW_ERROR] is not None,
            )
            found = groups.get(key)
            if found is None:
                groups[key] = [i]
            else:
                found.append(i)
        times = [row[ROW_TIME] for row in segment]
        first_day, last_day = self._day(times[0]), self._day(times[-1])
        n = len(segment)
        positions: dict[tuple[str, str], list[list[int]]] = {("all", ""): [list(range(n))]}
        visitors: dict[tuple[str, str], set[str]] = {}
        hosts: dict[str, float] = {}
        for (ip, host, status, user, client_id, is_error), rows in groups.items():
            entries = [("ip", ip), ("host", host), ("status", status_class(status))]
            if user:
                entries.append(("user", user))
            if client_id:
                entries.append(("client", client_id))
            if is_error:
                entries.append(("errors", ""))
            for entry in entries:
                found_rows = positions.get(entry)
                if found_rows is None:
                    positions[entry] = [rows]
                else:
                    found_rows.append(rows)
            days = {first_day} if first_day == last_day else {self._day(times[i]) for i in rows}
            for day in days:
                ips = visitors.get((host, day))
                if ips is None:
                    visitors[(host, day)] = {ip}
                else:
                    ips.add(ip)
            newest = times[rows[-1]]
            if hosts.get(host, newest) <= newest:
                hosts[host] = newest
        args: list[object] = [
            _score(times[-1]),
            _encode_rows(segment),
            struct.pack(f"<{n}d", *times),
            len(positions),
        ]
        for (index, value), runs in positions.items():
            rows = runs[0] if len(runs) == 1 else sorted(chain.from_iterable(runs))
            args += [self._index_key(index, value), struct.pack(f"<{len(rows)}H", *rows)]
        args.append(len(visitors))
        for (host, day_text), ips in visitors.items():
            args += [self._visitors_key(host, day_text), len(ips), *ips]
        args.append(len(hosts))
        for host, newest in hosts.items():
            args += [host, _score(newest)]
        return args

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
        """The record, or None (expired, trimmed or never written).

        A correlation id starts with the epoch second its request started, and a record
        is written when its request ends: only segments newer than that are searched.
        """

        async def get() -> RequestRecord | None:
            epoch = correlation_id.split("-", 1)[0]
            since = _score(float(epoch)) if epoch.isdigit() else "-inf"
            reply = await self.connection.eval(
                GET,
                [self._index_key("all", "")],
                [self._prefix, since, orjson.dumps(correlation_id)],
            )
            for i in range(0, len(reply) - 2, 3):
                for record in _rows(str(reply[i]), reply[i + 1])[int(reply[i + 2]) :]:
                    if record.correlation_id == correlation_id:
                        return record
            return None

        return Deferred.fromCoroutine(get())

    def _span_args(self, since: float, until: float) -> list[object]:
        """Prefix, ``since``, ``until`` and the newest score a segment in the window has."""
        return [self._prefix, _score(since), _score(until), _score(until + SEGMENT_SPAN)]

    def find(
        self, index: str, value: str, since: float, until: float, offset: int, count: int
    ) -> Deferred[list[RequestRecord]]:
        """Records of one index in ``[since, until]``, newest first."""

        async def find() -> list[RequestRecord]:
            reply = await self.connection.eval(
                FIND,
                [self._index_key(index, value)],
                [*self._span_args(since, until), offset, count],
            )
            entry = (index, value)
            found: list[RequestRecord] = []
            for rows, times, trimmed, skip in _quads(reply):
                matching = [
                    r
                    for r in _rows(rows, times)[trimmed:]
                    if since <= r.time <= until and entry in index_entries(r)
                ]
                matching.reverse()
                found += matching[skip:]
            return found[:count]

        return Deferred.fromCoroutine(find())

    def count(self, index: str, value: str, since: float, until: float) -> Deferred[int]:
        """How many records of one index lie in ``[since, until]``."""

        async def count() -> int:
            reply = await self.connection.eval(
                COUNT, [self._index_key(index, value)], self._span_args(since, until)
            )
            return int(reply)

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
        """Records after the cursor ``after`` (``<segment>-<row>``), or the newest ``count``."""

        async def recent() -> tuple[list[RequestRecord], str]:
            args: list[object] = [self._prefix, count]
            if after is not None:
                segment, _, row = after.partition("-")
                args += [int(segment or 0), int(row or 0)]
            reply = await self.connection.eval(RECENT, [self._index_key("all", "")], args)
            records: list[RequestRecord] = []
            for rows, times, start, end in _quads(reply[2:]):
                records += _rows(rows, times)[start:end]
            return records, f"{int(reply[0])}-{int(reply[1])}"

        return Deferred.fromCoroutine(recent())
