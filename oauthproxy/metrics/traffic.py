"""Request metrics: what the gateway's access-log hook sees, and the OAuth endpoints' answers.

:meth:`TrafficMetrics.take` counts every finished gateway request from the rows that
:class:`~oauthproxy.requestlog.finished.FinishedRequests` makes for the metrics and the
request log alike (status, latency, host, bytes, upstream error), whether or not the
request log is on, so counts never depend on the request log's own sampling or drops.
Labels are bounded: ``proxy`` is a configured proxy's hostname or ``(none)``
(anonymous traffic cannot create series), ``method`` one of the common methods or
``OTHER``, ``reason`` one of :data:`ERROR_REASONS`.

:meth:`TrafficMetrics.admin_log` watches the admin listener's finished requests
for the OAuth endpoints (``/token``, ``/register``, ``/revoke``): tokens issued by
grant type, refusals by status, registrations and revocations; the gateway's hook
hands it the requests the authorization server answered on the issuer's host, at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs

from attrs import define, field
from prometheus_client import CollectorRegistry, Counter, Histogram

from oauthproxy.interfaces import ISnapshotSource
from oauthproxy.requestlog.record import (
    ROW_BYTES_IN,
    ROW_BYTES_OUT,
    ROW_DURATION,
    ROW_ERROR,
    ROW_HOST,
    ROW_METHOD,
    ROW_STATUS,
    RequestNotes,
    RequestRecord,
    Row,
    record_row,
    status_class,
)

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

    def take(self, rows: Sequence[Row], notes: Sequence[RequestNotes | None]) -> None:
        """Count finished gateway requests, given as their rows and notes (a
        :class:`~oauthproxy.requestlog.finished.RowSink`).

        The batch is added up first (requests per host, method and status; bytes,
        durations and errors per host), so a counter is touched once per distinct
        label set and batch, not once per request.
        """
        counts: dict[tuple[str, str, int], int] = {}
        per_host: dict[str, tuple[list[int], list[float], list[float]]] = {}
        errors: list[tuple[str, str]] = []
        for row, note in zip(rows, notes, strict=True):
            host, method, status = row[ROW_HOST], row[ROW_METHOD], row[ROW_STATUS]
            key = (host, method, status)
            counts[key] = counts.get(key, 0) + 1
            sums = per_host.get(host)
            if sums is None:
                sums = per_host[host] = ([0, 0], [], [])
            sums[0][0] += row[ROW_BYTES_IN]
            sums[0][1] += row[ROW_BYTES_OUT]
            duration = row[ROW_DURATION]
            if duration is not None:
                sums[1].append(duration)
            if note is not None and note.upstream_seconds is not None:
                sums[2].append(note.upstream_seconds)
            error = row[ROW_ERROR]
            if error:
                errors.append((host, error))
        proxies = self.snapshots.current.proxies
        for (host, method, status), count in counts.items():
            self._requests_of(
                host if host in proxies else NO_PROXY,
                method if method in METHODS else "OTHER",
                status_class(status),
            ).inc(count)
        for host, ((bytes_in, bytes_out), durations, upstream) in per_host.items():
            duration, upstream_duration, received, sent = self._per_proxy_of(
                host if host in proxies else NO_PROXY
            )
            for seconds in durations:
                duration.observe(seconds)
            for seconds in upstream:
                upstream_duration.observe(seconds)
            if bytes_in:
                received.inc(bytes_in)
            if bytes_out:
                sent.inc(bytes_out)
        for host, error in errors:
            proxy = host if host in proxies else NO_PROXY
            self.upstream_errors.labels(proxy, error_reason(error)).inc()

    def observe(self, record: RequestRecord, upstream_seconds: float | None = None) -> None:
        """Count one finished gateway request given as its request-log record."""
        self.take([record_row(record)], [RequestNotes(upstream_seconds=upstream_seconds)])

    def _requests_of(self, proxy: str, method: str, status_class: str) -> Any:
        """The requests counter of these labels (children are cached: no lookup per call)."""
        key = (proxy, method, status_class)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = self.requests.labels(*key)
        return counter

    def _per_proxy_of(self, proxy: str) -> tuple[Any, Any, Any, Any]:
        """The duration, upstream duration, bytes in and bytes out children of ``proxy``."""
        per_proxy = self._per_proxy.get(proxy)
        if per_proxy is None:
            per_proxy = self._per_proxy[proxy] = (
                self.duration.labels(proxy),
                self.upstream_duration.labels(proxy),
                self.bytes_in.labels(proxy),
                self.bytes_out.labels(proxy),
            )
        return per_proxy

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
