"""Questions asked of the request log: index lookups, filtered search, statistics.

The admin API's ``/logs/...`` endpoints call these over an
:class:`~oauthproxy.interfaces.IRequestLogStore`.  A search walks the most selective
index the filter allows, newest first, in pages of ``SCAN_PAGE`` and stops after
``MAX_SCAN`` records, so no query reads the whole log.  Statistics count by status
class exactly (index counts), take response-time percentiles from the newest
``STATS_SAMPLE`` records of the window, and unique visitors per host from the
HyperLogLogs of the UTC days the window touches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from attrs import frozen

from oauthproxy.interfaces import IRequestLogStore
from oauthproxy.requestlog.record import STATUS_CLASSES, RequestRecord, utc_day

#: records read per store call while searching
SCAN_PAGE = 500
#: records a search examines at most
MAX_SCAN = 20_000
#: newest records whose durations give the percentiles
STATS_SAMPLE = 5_000
#: hosts ``stats`` reports at most
MAX_HOSTS = 100
_DAY = 86400.0
#: days of unique visitors counted at most (a window is bounded by the API anyway)
MAX_DAYS = 62


@frozen
class Window:
    """A time range ``[since, until]`` in POSIX seconds."""

    since: float
    until: float


def window(now: float, hours: float, since: float | None, until: float | None) -> Window:
    """The window a query means: ``since``/``until`` if given, else the last ``hours``."""
    end = now if until is None else until
    start = end - hours * 3600.0 if since is None else since
    return Window(start, end)


@frozen
class LogFilter:
    """What ``/logs/search`` and ``oauthproxyctl logs`` filter on (None: any)."""

    host: str | None = None
    ip: str | None = None
    user: str | None = None
    client_id: str | None = None
    status: int | None = None
    #: ``"2xx"``-style status class
    status_class: str | None = None
    method: str | None = None
    path_prefix: str | None = None
    errors_only: bool = False

    def index(self) -> tuple[str, str]:
        """The most selective index the filter pins down."""
        if self.ip is not None:
            return "ip", self.ip
        if self.user is not None:
            return "user", self.user
        if self.client_id is not None:
            return "client", self.client_id
        if self.host is not None:
            return "host", self.host.lower()
        if self.errors_only:
            return "errors", ""
        if self.status is not None:
            return "status", f"{self.status // 100}xx"
        if self.status_class is not None:
            return "status", self.status_class
        return "all", ""

    def matches(self, record: RequestRecord) -> bool:
        """Whether ``record`` passes every filter."""
        return (
            (self.host is None or record.host == self.host.lower())
            and (self.ip is None or record.client_ip == self.ip)
            and (self.user is None or record.user == self.user)
            and (self.client_id is None or record.client_id == self.client_id)
            and (self.status is None or record.status == self.status)
            and (self.status_class is None or record.status_class == self.status_class)
            and (self.method is None or record.method == self.method.upper())
            and (self.path_prefix is None or record.path.startswith(self.path_prefix))
            and (not self.errors_only or record.is_error)
        )


async def lookup(
    store: IRequestLogStore, index: str, value: str, span: Window, limit: int
) -> list[RequestRecord]:
    """The newest ``limit`` records of one index in ``span``."""
    found: list[RequestRecord] = await store.find(index, value, span.since, span.until, 0, limit)
    return found


async def search(
    store: IRequestLogStore, where: LogFilter, span: Window, limit: int
) -> list[RequestRecord]:
    """The newest ``limit`` records in ``span`` matching ``where`` (bounded scan)."""
    index, value = where.index()
    found: list[RequestRecord] = []
    for offset in range(0, MAX_SCAN, SCAN_PAGE):
        page: list[RequestRecord] = await store.find(
            index, value, span.since, span.until, offset, SCAN_PAGE
        )
        found.extend(record for record in page if where.matches(record))
        if len(found) >= limit or len(page) < SCAN_PAGE:
            break
    return found[:limit]


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of ``values`` (``fraction`` in (0, 1]); None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def days(span: Window) -> list[str]:
    """The UTC days ``span`` touches, oldest first (``YYYY-MM-DD``; at most ``MAX_DAYS``)."""
    first, last = math.floor(span.since / _DAY), math.floor(span.until / _DAY)
    return [utc_day(day * _DAY) for day in range(max(first, last - MAX_DAYS + 1), last + 1)]


def _timing(records: Sequence[RequestRecord]) -> dict[str, object]:
    """Response-time percentiles in milliseconds over the records that have a duration."""
    durations = [r.duration * 1000.0 for r in records if r.duration is not None]
    p50, p95 = percentile(durations, 0.5), percentile(durations, 0.95)
    return {
        "sample": len(durations),
        "p50_ms": None if p50 is None else round(p50, 3),
        "p95_ms": None if p95 is None else round(p95, 3),
    }


async def stats(store: IRequestLogStore, span: Window) -> dict[str, object]:
    """Counts by status class, response-time percentiles, per-host requests and visitors."""
    by_status = {
        cls: await store.count("status", cls, span.since, span.until) for cls in STATUS_CLASSES
    }
    total = await store.count("all", "", span.since, span.until)
    errors = await store.count("errors", "", span.since, span.until)
    sample: list[RequestRecord] = await store.find(
        "all", "", span.since, span.until, 0, STATS_SAMPLE
    )
    touched = days(span)
    hosts = []
    for host in (await store.hosts(span.since))[:MAX_HOSTS]:
        requests = await store.count("host", host, span.since, span.until)
        if not requests:
            continue
        hosts.append(
            {
                "host": host,
                "requests": requests,
                "unique_visitors": await store.visitors(host, touched),
                "response_time": _timing([r for r in sample if r.host == host]),
            }
        )
    return {
        "since": span.since,
        "until": span.until,
        "total": total,
        "errors": errors,
        "by_status": by_status,
        "response_time": _timing(sample),
        "hosts": hosts,
    }
