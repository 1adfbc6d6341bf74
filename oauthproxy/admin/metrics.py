"""``GET /metrics``: the daemon's Prometheus metrics, on the admin listener.

Open to scrapers on this host by default: a request from a loopback address
that did not come through a proxy (no ``Forwarded``/``X-Forwarded-For``, which
the gateway always sets, so a public proxy to the admin listener does not open
it) needs no token; from anywhere else any valid API token is needed.  An
endpoint auth rule for ``/metrics`` replaces that default entirely, like for
every endpoint (``oauthproxyctl auth create /metrics admin``, or ``none`` to
open it to a scraper on another host).
"""

from __future__ import annotations

import ipaddress
from typing import ClassVar

from attrs import define
from klein import Klein
from twisted.web.server import Request

from oauthproxy.admin.access import matching_rule, rule_method
from oauthproxy.admin.endpoint import ApiContext, Call, RawBody, Reply, endpoint
from oauthproxy.errors import Unauthorized
from oauthproxy.interfaces import ISnapshotSource
from oauthproxy.metrics.registry import Metrics

_FORWARDING = (b"forwarded", b"x-forwarded-for", b"x-real-ip")


def local_scraper(request: Request) -> bool:
    """Whether ``request`` comes straight from this host (loopback, not via a proxy)."""
    if any(request.requestHeaders.hasHeader(name) for name in _FORWARDING):
        return False
    host = getattr(request.getClientAddress(), "host", None)  # type: ignore[no-untyped-call]
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@define
class MetricsResource:
    """The Prometheus endpoint."""

    app: ClassVar[Klein] = Klein()
    api: ApiContext
    snapshots: ISnapshotSource
    metrics: Metrics

    @endpoint(
        app,
        "GET",
        "/metrics",
        summary="Prometheus metrics (text exposition format; open to this host by default)",
        tags=("health",),
        auth="none",
        returns={200: None},
        operation_id="metrics",
    )
    async def show(self, call: Call) -> object:
        """The metrics; from other hosts a token is needed unless a rule for /metrics says."""
        request = call.request
        method = rule_method(request.method.decode("ascii", "replace"))
        rule = matching_rule(self.snapshots.current.auth_rules.values(), "/metrics", method)
        if rule is None and not call.principal.authenticated and not local_scraper(request):
            raise Unauthorized(
                "/metrics needs a bearer token from other hosts (or an auth rule for /metrics)"
            )
        accept = request.getHeader(b"accept")
        wanted = accept.decode("latin-1") if accept else None
        body, content_type = await self.metrics.exposition(wanted)
        return Reply(200, RawBody(body, content_type))
