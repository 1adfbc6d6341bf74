"""Request metrics: what the gateway's access-log hook sees, and the OAuth endpoints' answers.

:meth:`TrafficMetrics.access_log` is hooked next to the request log's (the same
finished requests, read as :func:`~oauthproxy.requestlog.record.record_from_request`
reads them: status, latency, host, bytes, upstream error), so counts never depend
on the request log's own sampling or drops.  Labels are bounded: ``proxy`` is a
configured proxy's hostname or ``(none)`` (anonymous traffic cannot create
series), ``method`` one of the common methods or ``OTHER``, ``reason`` one of
:data:`ERROR_REASONS`.

:meth:`TrafficMetrics.admin_log` watches the admin listener's finished requests
for the OAuth endpoints (``/token``, ``/register``, ``/revoke``): tokens issued by
grant type, refusals by status, registrations and revocations; the gateway's hook
hands it the requests the authorization server answered on the issuer's host.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from attrs import define, field
from prometheus_client import CollectorRegistry, Counter, Histogram
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from oauthproxy.interfaces import ISnapshotSource
from oauthproxy.requestlog.record import RequestRecord, notes_for

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
#: bytes of a token request's body read for its grant type (the server refuses larger ones)
_MAX_FORM = 64 * 1024
_log = Logger()


def error_reason(text: str) -> str:
    """The bounded reason label of a gateway error text."""
    lower = text.lower()
    for words, reason in ERROR_REASONS:
        if words in lower:
            return reason
    return "other"


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
    #: label values -> the bound children, so the hot path skips labels()
    _requests: dict[tuple[str, str, str], Any] = field(factory=dict, init=False)
    _per_proxy: dict[str, tuple[Any, Any, Any, Any]] = field(factory=dict, init=False)

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
        """The gateway's access-log hook: count the finished ``request``.

        Reads what :func:`~oauthproxy.requestlog.record.record_from_request` reads
        (status, host, method, bytes, the notes' start, upstream time and error)
        without building a record: this runs for every request.  Never raises into
        twisted.web (the request log's hook comes next): a request that cannot be
        counted is logged, which is a bug, not an expected condition.
        """
        try:
            notes = notes_for(request)
            started = notes.started
            host = request.getRequestHostname().decode("utf-8", "replace").lower()
            bytes_in = notes.bytes_in
            if bytes_in is None:
                length: list[bytes] = request.requestHeaders.getRawHeaders(b"content-length") or []
                bytes_in = int(length[0]) if len(length) == 1 and length[0].isdigit() else 0
            self._count(
                host,
                request.method.decode("ascii", "replace"),
                int(request.code),
                None if started is None else max(0.0, self.clock.seconds() - started),
                notes.upstream_seconds,
                notes.error,
                bytes_in,
                int(getattr(request, "sentLength", 0) or 0),
            )
            if notes.authorization_server:
                self.admin_log(request)
        except Exception:
            _log.failure("could not count a finished request in the metrics")

    def observe(self, record: RequestRecord, upstream_seconds: float | None = None) -> None:
        """Count one finished gateway request given as its request-log record."""
        self._count(
            record.host,
            record.method,
            record.status,
            record.duration,
            upstream_seconds,
            record.error,
            record.bytes_in,
            record.bytes_out,
        )

    def _count(
        self,
        host: str,
        method: str,
        status: int,
        duration: float | None,
        upstream_seconds: float | None,
        error: str | None,
        bytes_in: int,
        bytes_out: int,
    ) -> None:
        """Count one request (children of labelled metrics are cached: no lookup per call)."""
        proxy = host if host in self.snapshots.current.proxies else NO_PROXY
        status_class = f"{status // 100}xx" if 100 <= status < 600 else "5xx"
        key = (proxy, method if method in METHODS else "OTHER", status_class)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = self.requests.labels(*key)
        counter.inc()
        per_proxy = self._per_proxy.get(proxy)
        if per_proxy is None:
            per_proxy = self._per_proxy[proxy] = (
                self.duration.labels(proxy),
                self.upstream_duration.labels(proxy),
                self.bytes_in.labels(proxy),
                self.bytes_out.labels(proxy),
            )
        if duration is not None:
            per_proxy[0].observe(duration)
        if upstream_seconds is not None:
            per_proxy[1].observe(upstream_seconds)
        if bytes_in:
            per_proxy[2].inc(bytes_in)
        if bytes_out:
            per_proxy[3].inc(bytes_out)
        if error:
            self.upstream_errors.labels(proxy, error_reason(error)).inc()

    def admin_log(self, request: Any) -> None:
        """The admin listener's access hook: count the OAuth endpoints' answers.

        Also called for the gateway's requests the authorization server answered.
        """
        if request.method != b"POST":
            return
        path, code = request.path, int(request.code)
        if path == b"/token":
            if code == 200:
                given = _grant_type(request)
                self.tokens_issued.labels(given if given in GRANT_TYPES else "other").inc()
            elif code >= 400:
                self.token_refusals.labels(str(code)).inc()
        elif path == b"/register" and code == 201:
            self.registrations.inc()
        elif path == b"/revoke" and code == 200:
            self.revocations.inc()


def _grant_type(request: Any) -> str:
    """The ``grant_type`` of a token request: from the parsed form (the admin listener),
    else from the body the authorization server read (the gateway does not parse forms)."""
    given: list[bytes] | None = request.args.get(b"grant_type")
    if given:
        return given[0].decode("ascii", "replace")
    content = request.content
    if content is None:
        return ""
    content.seek(0)
    body: bytes = content.read(_MAX_FORM)
    form = parse_qs(body, keep_blank_values=True)
    return (form.get(b"grant_type") or [b""])[0].decode("ascii", "replace")
