"""``/logs/timeline`` and ``/logs/top``: request-log aggregates for charts (admin token only).

The web console's request-log charts (requests per second by status class,
p50/p99 latency, top hosts, top client IPs, errors by reason) read these; the
numbers come from :mod:`oauthproxy.requestlog.aggregate`.  Windows are those of
the other ``/logs/`` queries (``hours`` back from now, or ``since``/``until``).
"""

from __future__ import annotations

from typing import ClassVar

from attrs import define
from klein import Klein
from twisted.internet.interfaces import IReactorTime

from oauthproxy.admin.endpoint import ApiContext, Call, endpoint
from oauthproxy.admin.logs import MAX_HOURS, WINDOW
from oauthproxy.admin.schema import Schema, array, integer, nullable, number, obj, string
from oauthproxy.errors import InvalidInput
from oauthproxy.interfaces import IRequestLogStore
from oauthproxy.requestlog import aggregate, query
from oauthproxy.requestlog.record import STATUS_CLASSES

_TAGS = ("logs",)
_COUNT = integer(minimum=0)
_BY_STATUS = obj({cls: _COUNT for cls in STATUS_CLASSES}, required=STATUS_CLASSES)
_MS = nullable(number(minimum=0))
TIMELINE = obj(
    {
        "since": number(),
        "until": number(),
        "step": number(minimum=0, description="seconds per bucket"),
        "buckets": array(
            obj(
                {
                    "start": number(),
                    "requests": _COUNT,
                    "per_second": number(minimum=0),
                    "by_status": _BY_STATUS,
                    "sample": integer(minimum=0, description="durations the percentiles use"),
                    "p50_ms": _MS,
                    "p99_ms": _MS,
                },
                required=(
                    "start", "requests", "per_second", "by_status", "sample", "p50_ms", "p99_ms",
                ),
            ),
            max_items=aggregate.MAX_BUCKETS,
        ),
    },
    required=("since", "until", "step", "buckets"),
)  # fmt: skip


def _ranked(key: str) -> Schema:
    """A top list of ``{key, requests}``."""
    item = obj({key: string(max_length=2048), "requests": _COUNT}, required=(key, "requests"))
    return array(item, max_items=aggregate.TOP)


TOP = obj(
    {
        "since": number(),
        "until": number(),
        "requests": _COUNT,
        "errors": _COUNT,
        "hosts": _ranked("host"),
        "client_ips": _ranked("client_ip"),
        "client_ips_sample": integer(minimum=0, description="newest requests counted"),
        "error_reasons": _ranked("reason"),
        "error_reasons_sample": integer(minimum=0, description="newest errors counted"),
    },
    required=(
        "since", "until", "requests", "errors", "hosts", "client_ips", "client_ips_sample",
        "error_reasons", "error_reasons_sample",
    ),
)  # fmt: skip
_SPAN = {k: WINDOW[k] for k in ("hours", "since", "until")}


@define
class LogChartResource:
    """The chart endpoints of the request log."""

    app: ClassVar[Klein] = Klein()
    api: ApiContext
    store: IRequestLogStore
    clock: IReactorTime

    def _window(self, call: Call) -> query.Window:
        """The window asked for (bounded like the other log queries)."""
        q = call.query
        span = query.window(self.clock.seconds(), q["hours"], q.get("since"), q.get("until"))
        if span.since >= span.until:
            raise InvalidInput("since must be before until", field="since")
        if span.until - span.since > MAX_HOURS * 3600.0:
            raise InvalidInput(f"the window is longer than {MAX_HOURS} hours", field="since")
        return span

    @endpoint(
        app,
        "GET",
        "/logs/timeline",
        summary="Requests per status class and p50/p99 latency over time",
        tags=_TAGS,
        auth="admin",
        query={
            **_SPAN,
            "buckets": integer(minimum=1, maximum=aggregate.MAX_BUCKETS, default=60),
        },
        returns={200: TIMELINE},
    )
    async def timeline(self, call: Call) -> object:
        """The window in ``buckets`` equal parts: exact counts, sampled percentiles."""
        return await aggregate.timeline(self.store, self._window(call), call.query["buckets"])

    @endpoint(
        app,
        "GET",
        "/logs/top",
        summary="Busiest hosts and client IPs, commonest errors",
        tags=_TAGS,
        auth="admin",
        query=_SPAN,
        returns={200: TOP},
    )
    async def top(self, call: Call) -> object:
        """Top hosts (exact), client IPs and error reasons (from the newest requests)."""
        return await aggregate.top(self.store, self._window(call))
