"""``POST /routes/test``: which route wins for a request, as the gateway decides it.

The answer comes from the gateway's own pure router
(:meth:`~oauthproxy.gateway.routing.RoutingTable.decide`) over a table built from
this daemon's current snapshot, so it is what the next request with that host,
method and path gets: forwarded (to which upstream, through which route, or the
proxy's own target), redirected to HTTPS, an ACME challenge, or refused (and
why).  ``candidates`` lists the routes that apply to the proxy in the order they
are tried, each with whether it matches; the first match wins.

Ownership as everywhere: a non-admin token tests only the hostnames of its own
proxies (another token's host answers like an unknown one), and a route it does
not own is shown as ``hidden`` without its target.
"""

from __future__ import annotations

from typing import Any, ClassVar

from attrs import define, evolve
from klein import Klein

from oauthproxy.admin.access import Principal, may_access
from oauthproxy.admin.endpoint import ApiContext, Call, endpoint
from oauthproxy.admin.records import record_json
from oauthproxy.admin.routes import METHODS, ROUTE, route_json
from oauthproxy.admin.schema import array, boolean, integer, nullable, obj, string
from oauthproxy.gateway import routing
from oauthproxy.gateway.paths import BadPath, canonical_path, split_target
from oauthproxy.interfaces import ISnapshotSource
from oauthproxy.model import Route

OUTCOMES = (
    "forward",
    "redirect",
    "acme_challenge",
    "not_found",
    "bad_request",
    "misdirected",
    "unavailable",
)

ROUTE_TEST = obj(
    {
        "host": string(min_length=1, max_length=260, example="app.example.com"),
        "path": string(
            min_length=1,
            max_length=2048,
            pattern=r"^/",
            example="/api/items?page=2",
            error="a path that starts with /, such as /api/items",
        ),
        "method": string(enum=METHODS, description="default GET"),
        "scheme": string(enum=("http", "https"), description="default https"),
    },
    required=("host", "path"),
)
_CANDIDATE = obj(
    {
        "route_id": string(max_length=64),
        "priority": integer(minimum=0),
        "matches": boolean(),
        "hidden": boolean(description="another token's route: shown without its settings"),
        "route": nullable(ROUTE),
    },
    required=("route_id", "priority", "matches", "hidden", "route"),
)
ROUTE_TEST_RESULT = obj(
    {
        "outcome": string(enum=OUTCOMES),
        "status": nullable(integer(minimum=100, maximum=599, description="the gateway's answer")),
        "reason": string(max_length=2048),
        "path": nullable(string(max_length=4096, description="the canonical path routes see")),
        "proxy": nullable(string(max_length=253)),
        "route": nullable(_CANDIDATE),
        "upstream": nullable(string(max_length=8192, description="where the request goes")),
        "location": nullable(string(max_length=8192, description="the redirect's target")),
        "auth": nullable(
            {"type": "object", "additionalProperties": True, "description": "the auth applied"}
        ),
        "candidates": array(_CANDIDATE, max_items=10_000),
    },
    required=(
        "outcome", "status", "reason", "path", "proxy", "route", "upstream", "location",
        "auth", "candidates",
    ),
)  # fmt: skip


def _candidate(route: Route, matches: bool, principal: Principal) -> dict[str, Any]:
    """One route as the answer shows it (settings only to its owner or the admin)."""
    shown = may_access(principal, route.owner)
    return {
        "route_id": route.route_id if shown else "(another token's route)",
        "priority": route.priority,
        "matches": matches,
        "hidden": not shown,
        "route": route_json(route) if shown else None,
    }


def _canonical(target: str) -> str | None:
    """The canonical path of a request target, None if the gateway refuses it."""
    try:
        raw, _ = split_target(target.encode("utf-8"))
        return canonical_path(raw)
    except (BadPath, UnicodeEncodeError):
        return None


def explain(
    table: routing.RoutingTable,
    principal: Principal,
    host: str,
    target: str,
    method: str,
    scheme: str,
) -> dict[str, Any]:
    """The decision for one request, with the candidates and the auth (pure)."""
    try:
        raw_target = target.encode("ascii")
    except UnicodeEncodeError:
        raw_target = b"\xff"  # the router refuses it, as it refuses the request itself
    decision = table.decide(host, raw_target, method, scheme, None)
    path = _canonical(target)
    name = routing.normalize_host(host)
    entry = table.hosts.get(name) if name is not None else None
    candidates = table.candidates(host, path, method) if path is not None else []
    answer: dict[str, Any] = {
        "outcome": "not_found",
        "status": 404,
        "reason": "",
        "path": path,
        "proxy": entry.proxy.hostname if entry is not None else None,
        "route": None,
        "upstream": None,
        "location": None,
        "auth": None,
        "candidates": [_candidate(r, m, principal) for r, m in candidates],
    }
    if isinstance(decision, routing.Forward):
        route = decision.route
        upstream = decision.upstream
        netloc = upstream.netloc.decode("ascii", "replace")
        auth = route.auth if route is not None and route.auth is not None else None
        if auth is None or not auth.override_proxy_auth:
            auth_json = record_json(decision.proxy.auth) if decision.proxy.auth else None
        else:
            auth_json = record_json(auth)
        answer.update(
            outcome="forward",
            status=None,
            reason="the route's target" if route is not None else "the proxy's own target",
            route=None if route is None else _candidate(route, True, principal),
            upstream=f"{upstream.scheme}://{netloc}{decision.path.decode('ascii', 'replace')}",
            auth=auth_json,
        )
    elif isinstance(decision, routing.RedirectToHttps):
        answer.update(
            outcome="redirect",
            status=decision.status,
            reason="plain HTTP to a proxy that serves HTTPS is redirected",
            location=decision.location.decode("ascii", "replace"),
        )
    elif isinstance(decision, routing.Reserved):
        answer.update(
            outcome="acme_challenge", status=None, reason="answered by the ACME responder"
        )
    else:
        outcome, status = {
            routing.NotFound: ("not_found", 404),
            routing.BadRequest: ("bad_request", 400),
            routing.Misdirected: ("misdirected", 421),
            routing.Unavailable: ("unavailable", 502),
        }[type(decision)]
        answer.update(outcome=outcome, status=status, reason=decision.reason)
    return answer


@define
class RouteTestResource:
    """The route tester."""

    app: ClassVar[Klein] = Klein()
    api: ApiContext
    snapshots: ISnapshotSource

    @endpoint(
        app,
        "POST",
        "/routes/test",
        summary="Which route wins for a request (host, method, path), as the gateway decides",
        tags=("routes",),
        body=ROUTE_TEST,
        returns={200: ROUTE_TEST_RESULT},
        operation_id="routes_test",
    )
    async def test(self, call: Call) -> object:
        """Run the gateway's router on this daemon's current configuration."""
        body = call.body
        snapshot = self.snapshots.current
        principal = call.principal
        host = body["host"]
        name = routing.normalize_host(host)
        proxy = snapshot.proxies.get(name) if name is not None else None
        if proxy is not None and not may_access(principal, proxy.owner):
            # another token's host: answer as for a host without a proxy
            others = {k: v for k, v in snapshot.proxies.items() if k != name}
            snapshot = evolve(snapshot, proxies=others)
        table = routing.RoutingTable.from_snapshot(snapshot)
        method = body.get("method", "GET")
        return explain(table, principal, host, body["path"], method, body.get("scheme", "https"))


__all__ = ["ROUTE_TEST", "ROUTE_TEST_RESULT", "RouteTestResource", "explain"]
