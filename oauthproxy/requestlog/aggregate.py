"""Request-log aggregates for charts: a timeline and top lists over a window.

:func:`timeline` splits a window into equal buckets and gives, per bucket, the exact
number of requests by status class (one index count per bucket and class, asked all
at once) and response-time percentiles (p50, p99) from a sample of the bucket's
newest ``per_bucket`` records, so a chart of a busy day reads a bounded amount.

:func:`top` gives the hosts with the most requests (exact, from the host indexes),
the client IPs with the most requests and the commonest error reasons, both from
the newest ``sample`` records of the window (their lists say how many were read).
An error's reason is the gateway's ``error`` text, else ``HTTP <status>``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

from twisted.internet.defer import Deferred, gatherResults

from oauthproxy.interfaces import IRequestLogStore
from oauthproxy.requestlog.query import Window, percentile
from oauthproxy.requestlog.record import STATUS_CLASSES, RequestRecord

#: most buckets a timeline has
MAX_BUCKETS = 288
#: records per bucket whose durations give its percentiles
PER_BUCKET = 100
#: newest records the client-IP and error lists are counted from
TOP_SAMPLE = 5000
#: entries per top list
TOP = 10


def _before(value: float) -> float:
    """The largest float below ``value``: buckets are ``[start, end)`` on inclusive counts."""
    return math.nextafter(value, -math.inf)


def _ms(value: float | None) -> float | None:
    """Seconds as milliseconds, rounded to microseconds."""
    return None if value is None else round(value * 1000.0, 3)


async def _gather(calls: Iterable[Deferred[Any]]) -> list[Any]:
    """The results of store calls made at once (Redis pipelines them)."""
    results: list[Any] = await gatherResults(list(calls), consumeErrors=True)
    return results


async def timeline(
    store: IRequestLogStore, span: Window, buckets: int, per_bucket: int = PER_BUCKET
) -> dict[str, Any]:
    """Requests per status class and p50/p99 per bucket (see the module docstring)."""
    buckets = max(1, min(buckets, MAX_BUCKETS))
    step = (span.until - span.since) / buckets
    starts = [span.since + i * step for i in range(buckets)]
    ends = [
        _before(start + step) if i < buckets - 1 else span.until for i, start in enumerate(starts)
    ]
    counts = await _gather(
        store.count("status", cls, start, end)
        for start, end in zip(starts, ends, strict=True)
        for cls in STATUS_CLASSES
    )
    samples: list[list[RequestRecord]] = await _gather(
        store.find("all", "", start, end, 0, per_bucket)
        for start, end in zip(starts, ends, strict=True)
    )
    rows = []
    for index, start in enumerate(starts):
        width = len(STATUS_CLASSES)
        by_class = dict(
            zip(STATUS_CLASSES, counts[index * width : (index + 1) * width], strict=True)
        )
        durations = [r.duration for r in samples[index] if r.duration is not None]
        total = sum(by_class.values())
        rows.append(
            {
                "start": start,
                "requests": total,
                "per_second": round(total / step, 6) if step > 0 else 0.0,
                "by_status": by_class,
                "sample": len(durations),
                "p50_ms": _ms(percentile(durations, 0.5)),
                "p99_ms": _ms(percentile(durations, 0.99)),
            }
        )
    return {"since": span.since, "until": span.until, "step": step, "buckets": rows}


def _ranked(counter: Counter[str], key: str) -> list[dict[str, Any]]:
    """The ``TOP`` commonest entries, most first (ties by name)."""
    ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:TOP]
    return [{key: name, "requests": count} for name, count in ranked]


def reason(record: RequestRecord) -> str:
    """Why a request is an error, for grouping: the gateway's words, else its status."""
    return record.error or f"HTTP {record.status}"


async def _newest(
    store: IRequestLogStore, index: str, span: Window, limit: int
) -> list[RequestRecord]:
    """The newest ``limit`` records of an index in ``span``, read in pages."""
    found: list[RequestRecord] = []
    page = 500
    while len(found) < limit:
        batch: list[RequestRecord] = await store.find(
            index, "", span.since, span.until, len(found), min(page, limit - len(found))
        )
        found.extend(batch)
        if len(batch) < page:
            break
    return found


async def top(store: IRequestLogStore, span: Window, sample: int = TOP_SAMPLE) -> dict[str, Any]:
    """The busiest hosts, client IPs and commonest errors in ``span``."""
    total, errors = await _gather(
        [
            store.count("all", "", span.since, span.until),
            store.count("errors", "", span.since, span.until),
        ]
    )
    names: list[str] = await store.hosts(span.since)
    per_host = await _gather(store.count("host", name, span.since, span.until) for name in names)
    hosts: Counter[str] = Counter({n: c for n, c in zip(names, per_host, strict=True) if c})
    recent = await _newest(store, "all", span, sample)
    failed = await _newest(store, "errors", span, sample)
    return {
        "since": span.since,
        "until": span.until,
        "requests": total,
        "errors": errors,
        "hosts": _ranked(hosts, "host"),
        "client_ips": _ranked(Counter(r.client_ip for r in recent), "client_ip"),
        "client_ips_sample": len(recent),
        "error_reasons": _ranked(Counter(reason(r) for r in failed), "reason"),
        "error_reasons_sample": len(failed),
    }
