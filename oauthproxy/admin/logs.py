"""``/logs/``: the request-log query API (admin token only).

Lookups by index (``/logs/ip/{ip}``, ``/logs/host/{hostname}``, ``/logs/client/{client_id}``,
``/logs/user/{user}``), one request by correlation id, a filtered ``/logs/search``,
``/logs/errors``, ``/logs/stats``, ``/logs/recent`` (the cursor ``oauthproxyctl logs
follow`` polls) and ``/logs/noise`` (the counts of anonymous noise: requests for unknown
hosts and the like, of which only a few per minute are kept as records).  Every list is
newest first and bounded: a window of at most ``MAX_HOURS`` hours (the last ``hours``,
or ``since``/``until``) and at most ``MAX_LIMIT`` records.  Records never hold secrets
(see :mod:`oauthproxy.requestlog.record`), yet they tell who called what, so only the
admin token may read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from attrs import define
from klein import Klein
from twisted.internet.interfaces import IReactorTime

from oauthproxy.admin.endpoint import ApiContext, Call, endpoint
from oauthproxy.admin.schema import Schema, array, boolean, integer, nullable, number, obj, string
from oauthproxy.errors import InvalidInput, NotFound
from oauthproxy.interfaces import IRequestLogStore
from oauthproxy.requestlog import noise, query
from oauthproxy.requestlog.record import STATUS_CLASSES, RequestRecord, record_json

MAX_HOURS = 720
DEFAULT_HOURS = 24
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
#: noise counters listed at most (minutes x reasons x hosts; the total counts them all)
MAX_NOISE = 10_000
_TAGS = ("logs",)

_TEXT = string(max_length=256)
RECORD = obj(
    {
        "time": number(minimum=0, description="POSIX seconds when the response finished"),
        "correlation_id": _TEXT,
        "client_ip": _TEXT,
        "method": string(max_length=16),
        "host": _TEXT,
        "path": string(max_length=2048, description="without the query string"),
        "status": integer(minimum=0),
        "bytes_in": integer(minimum=0),
        "bytes_out": integer(minimum=0),
        "duration": nullable(number(minimum=0, description="seconds")),
        "scheme": string(enum=("http", "https")),
        "user": nullable(_TEXT),
        "client_id": nullable(_TEXT),
        "upstream": nullable(_TEXT),
        "error": nullable(_TEXT),
    },
    required=(
        "time", "correlation_id", "client_ip", "method", "host", "path", "status",
        "bytes_in", "bytes_out", "duration", "scheme", "user", "client_id", "upstream", "error",
    ),
)  # fmt: skip
RECORDS = obj(
    {
        "items": array(RECORD, max_items=MAX_LIMIT),
        "count": integer(minimum=0),
        "since": number(),
        "until": number(),
    },
    required=("items", "count", "since", "until"),
)
_TIMING = obj(
    {
        "sample": integer(minimum=0, description="records with a duration in the sample"),
        "p50_ms": nullable(number(minimum=0)),
        "p95_ms": nullable(number(minimum=0)),
    },
    required=("sample", "p50_ms", "p95_ms"),
)
STATS = obj(
    {
        "since": number(),
        "until": number(),
        "total": integer(minimum=0),
        "errors": integer(minimum=0),
        "by_status": obj(
            {cls: integer(minimum=0) for cls in STATUS_CLASSES}, required=STATUS_CLASSES
        ),
        "response_time": _TIMING,
        "hosts": array(
            obj(
                {
                    "host": _TEXT,
                    "requests": integer(minimum=0),
                    "unique_visitors": integer(minimum=0, description="HyperLogLog estimate"),
                    "response_time": _TIMING,
                },
                required=("host", "requests", "unique_visitors", "response_time"),
            ),
            max_items=query.MAX_HOSTS,
        ),
    },
    required=("since", "until", "total", "errors", "by_status", "response_time", "hosts"),
)
#: a stream id; 19 digits stay below 2**64, which Redis refuses to go beyond
CURSOR = string(
    max_length=64,
    pattern=r"^[0-9]{1,19}-[0-9]{1,19}$",
    example="1735689600000-0",
    error="the cursor of an earlier answer, such as 1735689600000-0",
)
RECENT = obj(
    {"items": array(RECORD, max_items=MAX_LIMIT), "cursor": CURSOR},
    required=("items", "cursor"),
)

NOISE = obj(
    {
        "items": array(
            obj(
                {
                    "minute": integer(minimum=0, description="POSIX seconds, start of the minute"),
                    "reason": string(enum=noise.REASONS),
                    "host": string(max_length=256, description='"*": hosts past the limit'),
                    "count": integer(minimum=0),
                },
                required=("minute", "reason", "host", "count"),
            ),
            max_items=MAX_NOISE,
        ),
        "total": integer(minimum=0),
        "since": number(),
        "until": number(),
    },
    required=("items", "total", "since", "until"),
)

_HOURS: Schema = {
    "type": "number",
    "exclusiveMinimum": 0,
    "maximum": MAX_HOURS,
    "default": DEFAULT_HOURS,
    "description": "the window: the last this many hours (unless since is given)",
}
#: the latest time a query may name (year 2286): later ones are not dates any more
MAX_TIME = 10_000_000_000


def _time(description: str) -> Schema:
    """A POSIX time parameter, bounded so every value is a representable date."""
    return {"type": "number", "minimum": 0, "maximum": MAX_TIME, "description": description}


WINDOW: dict[str, Schema] = {
    "hours": _HOURS,
    "since": _time("start of the window, POSIX seconds"),
    "until": _time("end of the window, POSIX seconds (default now)"),
    "limit": integer(minimum=1, maximum=MAX_LIMIT, default=DEFAULT_LIMIT),
}
_SEARCH: dict[str, Schema] = {
    **WINDOW,
    "host": string(max_length=253),
    "ip": string(max_length=64),
    "user": string(max_length=256),
    "client_id": string(max_length=256),
    "status": integer(minimum=100, maximum=599),
    "status_class": string(enum=STATUS_CLASSES, description="e.g. 5xx"),
    "method": string(max_length=16, pattern=r"^[A-Za-z]+$", error="an HTTP method such as GET"),
    "path": string(
        max_length=2048,
        pattern=r"^/",
        description="path prefix",
        error="a path that starts with /",
    ),
    "errors": boolean(default=False, description="only 5xx answers and gateway errors"),
}
_SAFE = r"^[^/\x00-\x1f\x7f]+$"
IP = string(
    max_length=64,
    pattern=r"^[0-9A-Za-z:.%_-]+$",
    example="192.0.2.10",
    error="an IP address such as 192.0.2.10",
)
HOSTNAME = string(
    max_length=253,
    pattern=r"^[0-9A-Za-z.:\[\]_-]+$",
    example="api.example.com",
    error="a hostname such as api.example.com",
)
_SAFE_WORDS = "text without '/' or control characters"
CLIENT_ID = string(max_length=255, pattern=_SAFE, error=_SAFE_WORDS)
USER = string(max_length=255, pattern=_SAFE, error=_SAFE_WORDS)
CORRELATION_ID = string(
    max_length=255,
    pattern=r"^[0-9A-Za-z._-]+$",
    example="1735689600-https-a7b3c9d2",
    error="a correlation id such as 1735689600-https-a7b3c9d2",
)


def _listing(records: list[RequestRecord], span: query.Window) -> dict[str, Any]:
    """A list response."""
    return {
        "items": [record_json(r) for r in records],
        "count": len(records),
        "since": span.since,
        "until": span.until,
    }


@define
class LogResource:
    """The request-log query endpoints."""

    app: ClassVar[Klein] = Klein()
    api: ApiContext
    store: IRequestLogStore
    clock: IReactorTime

    def _window(self, q: Mapping[str, Any]) -> query.Window:
        """The query's window; since after until is refused, and so is a window too long."""
        span = query.window(self.clock.seconds(), q["hours"], q.get("since"), q.get("until"))
        if span.since > span.until:
            raise InvalidInput("since is after until", field="since")
        if span.until - span.since > MAX_HOURS * 3600.0:
            raise InvalidInput(f"the window is longer than {MAX_HOURS} hours", field="since")
        return span

    async def _by(self, call: Call, index: str, value: str) -> dict[str, Any]:
        """The newest records of one index in the query's window."""
        span = self._window(call.query)
        return _listing(
            await query.lookup(self.store, index, value, span, call.query["limit"]), span
        )

    @endpoint(
        app,
        "GET",
        "/logs/ip/{ip}",
        summary="Requests from a client IP",
        tags=_TAGS,
        auth="admin",
        params={"ip": IP},
        query=WINDOW,
        returns={200: RECORDS},
    )
    async def by_ip(self, call: Call) -> object:
        """Requests whose connection (or trusted PROXY header) came from this IP, newest first."""
        return await self._by(call, "ip", call.params["ip"])

    @endpoint(
        app,
        "GET",
        "/logs/host/{hostname}",
        summary="Requests for a hostname",
        tags=_TAGS,
        auth="admin",
        params={"hostname": HOSTNAME},
        query=WINDOW,
        returns={200: RECORDS},
    )
    async def by_host(self, call: Call) -> object:
        """Requests for this hostname, newest first."""
        return await self._by(call, "host", call.params["hostname"].lower())

    @endpoint(
        app,
        "GET",
        "/logs/client/{client_id}",
        summary="Requests of an OAuth client",
        tags=_TAGS,
        auth="admin",
        params={"client_id": CLIENT_ID},
        query=WINDOW,
        returns={200: RECORDS},
    )
    async def by_client(self, call: Call) -> object:
        """Requests carrying an access token issued to this OAuth client, newest first."""
        return await self._by(call, "client", call.params["client_id"])

    @endpoint(
        app,
        "GET",
        "/logs/user/{user}",
        summary="Requests of a user",
        tags=_TAGS,
        auth="admin",
        params={"user": USER},
        query=WINDOW,
        returns={200: RECORDS},
    )
    async def by_user(self, call: Call) -> object:
        """Requests the guard authenticated as this user, newest first."""
        return await self._by(call, "user", call.params["user"])

    @endpoint(
        app,
        "GET",
        "/logs/correlation/{correlation_id}",
        summary="One request",
        tags=_TAGS,
        auth="admin",
        params={"correlation_id": CORRELATION_ID},
        returns={200: RECORD},
    )
    async def by_correlation(self, call: Call) -> object:
        """The request with this correlation id (404 once it has expired)."""
        cid = call.params["correlation_id"]
        record = await self.store.get(cid)
        if record is None:
            raise NotFound(f"no request {cid!r} in the log")
        return record_json(record)

    @endpoint(
        app,
        "GET",
        "/logs/search",
        summary="Search requests",
        tags=_TAGS,
        auth="admin",
        query=_SEARCH,
        returns={200: RECORDS},
    )
    async def search(self, call: Call) -> object:
        """Requests matching every filter given (``path`` is a prefix), newest first."""
        q = call.query
        where = query.LogFilter(
            host=q.get("host"),
            ip=q.get("ip"),
            user=q.get("user"),
            client_id=q.get("client_id"),
            status=q.get("status"),
            status_class=q.get("status_class"),
            method=q.get("method"),
            path_prefix=q.get("path"),
            errors_only=q["errors"],
        )
        span = self._window(q)
        return _listing(await query.search(self.store, where, span, q["limit"]), span)

    @endpoint(
        app,
        "GET",
        "/logs/errors",
        summary="Recent errors",
        tags=_TAGS,
        auth="admin",
        query=WINDOW,
        returns={200: RECORDS},
    )
    async def errors(self, call: Call) -> object:
        """Requests answered with a 5xx status or failed by the gateway, newest first."""
        return await self._by(call, "errors", "")

    @endpoint(
        app,
        "GET",
        "/logs/stats",
        summary="Request statistics",
        tags=_TAGS,
        auth="admin",
        query={k: WINDOW[k] for k in ("hours", "since", "until")},
        returns={200: STATS},
    )
    async def stats(self, call: Call) -> object:
        """Counts by status class, p50/p95 response times and unique visitors per host."""
        return await query.stats(self.store, self._window(call.query))

    @endpoint(
        app,
        "GET",
        "/logs/recent",
        summary="Follow new requests",
        tags=_TAGS,
        auth="admin",
        query={
            "after": CURSOR,
            "limit": integer(minimum=1, maximum=MAX_LIMIT, default=DEFAULT_LIMIT),
        },
        returns={200: RECENT},
    )
    async def recent(self, call: Call) -> object:
        """Requests logged after ``after`` (oldest first) and the cursor to ask with next.

        Without ``after``: the newest ``limit`` requests, to start following from.
        """
        records, cursor = await self.store.recent(call.query.get("after"), call.query["limit"])
        return {"items": [record_json(r) for r in records], "cursor": cursor}

    @endpoint(
        app,
        "GET",
        "/logs/noise",
        summary="Counts of anonymous noise (unknown hosts, refused credentials...)",
        tags=_TAGS,
        auth="admin",
        query={k: WINDOW[k] for k in ("hours", "since", "until")},
        returns={200: NOISE},
    )
    async def noise(self, call: Call) -> object:
        """Per minute, reason and host: how many requests the gateway answered itself
        without anyone authenticated (a few per minute are also kept as records)."""
        span = self._window(call.query)
        counts = await self.store.noise(span.since, span.until)
        return {
            "items": [
                {"minute": c.minute, "reason": c.reason, "host": c.host, "count": c.count}
                for c in counts[-MAX_NOISE:]
            ],
            "total": sum(c.count for c in counts),
            "since": span.since,
            "until": span.until,
        }
