"""Request metrics: what the gateway's access-log hook sees, and the OAuth endpoints' answers.

:meth:`TrafficMetrics.access_log` is hooked next to the request log's (the same
finished requests, the same :func:`~oauthproxy.requestlog.record.record_from_request`
view: status, latency, host, bytes, upstream error), so counts never depend on
the request log's own sampling or drops.  Labels are bounded: ``proxy`` is a
configured proxy's hostname or ``(none)`` (anonymous traffic cannot create
series), ``method`` one of the common methods or ``OTHER``, ``reason`` one of
:data:`ERROR_REASONS`.

:meth:`TrafficMetrics.admin_log` watches the admin listener's finished requests
for the OAuth endpoints (``/token``, ``/register``, ``/revoke``): tokens issued by
grant type, refusals by status, registrations and revocations.
"""

from __future__ import annotations

from typing import Any

from attrs import define, field
from prometheus_client import CollectorRegistry, Counter, Histogram
from twisted.internet.interfaces import IReactorTime

from oauthproxy.interfaces import ISnapshotSource
from oauthproxy.requestlog.record import RequestRecord, notes_for, record_from_request

#: seconds: from 1 ms to a minute (a read timeout is 60 s by default)
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
NO_PROXY = "(none)"
#: upstream error reasons, by the words of the gateway's ``error`` note (first match wins)
ERROR_REASONS = (
    ("refused", "connection_refused"),
    ("timed out", "timeout"),
    ("timeout", "timeout"),
    ("did not answer", "timeout"),
    ("reset", "connection_reset"),
    ("tls", "tls"),
    ("certificate", "tls"),
    ("ssl", "tls"),
    ("unreachable", "unreachable"),
    ("dns", "dns"),
    ("resolve", "dns"),
    ("too large", "limit"),
    ("limit", "limit"),
)
GRANT_TYPES = frozenset({"authorization_code", "refresh_token", "client_credentials"})


def error_reason(text: str) -> str:
    """The bounded reason label of a gateway error text."""
    lower = text.lower()
    for words, reason in ERROR_REASONS:
        if words in lower:
            return reason
    return "other"


def _no_token() -> str:
    """Metrics need no correlation id."""
    return "-"


@define(eq=False)
class TrafficMetrics:
    """Counters and histograms of finished requests (see the module docstring)."""

    registry: CollectorRegistry
    snapshots: ISnapshotSource
    clock: IReactorTime
    requests: Counter = field(init=False)
    duration: Histogram = field(init=False)
    upstream_duration: Histogram = field(init=False)
    upstream_errors: Counter = field(init=False)
    bytes_in: Counter = field(init=False)
    bytes_out: Counter = field(init=False)
    tokens_issued: Counter = field(init=False)
    token_refusals: Counter = field(init=False)
    registrations: Counter = field(init=False)
    revocations: Counter = field(init=False)

    def __attrs_post_init__(self) -> None:
        """Register the instruments."""
        r = self.registry
        self.requests = Counter(
            "oauthproxy_requests", "Gateway requests answered, by proxy, method and status class",
            ["proxy", "method", "status_class"], registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "oauthproxy_request_duration_seconds",
            "Gateway request duration, from the request head to the end of the answer",
            ["proxy"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.upstream_duration = Histogram(
            "oauthproxy_upstream_duration_seconds",
            "Time from sending a request upstream to the upstream's response head",
            ["proxy"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.upstream_errors = Counter(
            "oauthproxy_upstream_errors", "Requests the gateway failed, by reason",
            ["proxy", "reason"], registry=r,
        )  # fmt: skip
        self.bytes_in = Counter(
            "oauthproxy_request_body_bytes", "Request body bytes received", ["proxy"], registry=r
        )
        self.bytes_out = Counter(
            "oauthproxy_response_body_bytes", "Response body bytes sent", ["proxy"], registry=r
        )
        self.tokens_issued = Counter(
            "oauthproxy_oauth_tokens_issued", "OAuth tokens issued by the token endpoint",
            ["grant_type"], registry=r,
        )  # fmt: skip
        self.token_refusals = Counter(
            "oauthproxy_oauth_token_refusals", "Token requests refused, by HTTP status",
            ["status"], registry=r,
        )  # fmt: skip
        self.registrations = Counter(
            "oauthproxy_oauth_registrations", "OAuth clients registered (RFC 7591)", registry=r
        )
        self.revocations = Counter(
            "oauthproxy_oauth_revocations", "Token revocation requests answered (RFC 7009)",
            registry=r,
        )  # fmt: skip

    def access_log(self, request: Any) -> None:
        """The gateway's access-log hook: count the finished ``request``."""
        record = record_from_request(request, self.clock.seconds(), _no_token)
        self.observe(record, notes_for(request).upstream_seconds)

    def observe(self, record: RequestRecord, upstream_seconds: float | None = None) -> None:
        """Count one finished gateway request (``upstream_seconds``: the upstream's time)."""
        proxy = record.host if record.host in self.snapshots.current.proxies else NO_PROXY
        method = record.method if record.method in METHODS else "OTHER"
        self.requests.labels(proxy, method, record.status_class).inc()
        if record.duration is not None:
            self.duration.labels(proxy).observe(record.duration)
        if upstream_seconds is not None:
            self.upstream_duration.labels(proxy).observe(upstream_seconds)
        if record.error:
            self.upstream_errors.labels(proxy, error_reason(record.error)).inc()
        if record.bytes_in:
            self.bytes_in.labels(proxy).inc(record.bytes_in)
        if record.bytes_out:
            self.bytes_out.labels(proxy).inc(record.bytes_out)

    def admin_log(self, request: Any) -> None:
        """The admin listener's access hook: count the OAuth endpoints' answers."""
        if request.method != b"POST":
            return
        path, code = request.path, int(request.code)
        if path == b"/token":
            if code == 200:
                given = (request.args.get(b"grant_type") or [b""])[0].decode("ascii", "replace")
                self.tokens_issued.labels(given if given in GRANT_TYPES else "other").inc()
            elif code >= 400:
                self.token_refusals.labels(str(code)).inc()
        elif path == b"/register" and code == 201:
            self.registrations.inc()
        elif path == b"/revoke" and code == 200:
            self.revocations.inc()
