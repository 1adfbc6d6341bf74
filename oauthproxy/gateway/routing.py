"""The routing core: one frozen table per Snapshot, one outcome per request (pure, no I/O).

:meth:`RoutingTable.decide` turns (Host, request target, method, scheme, SNI name) into exactly
one outcome:

- :class:`Reserved` for ``/.well-known/acme-challenge/<token>`` on every host and both schemes,
  before anything else (the ACME responder answers it, never redirected);
- :class:`BadRequest` (400) for a target :mod:`~oauthproxy.gateway.paths` refuses, or an
  absolute-form target whose authority is not the ``Host`` (ATK-12);
- :class:`Misdirected` (421) on HTTPS when the TLS SNI name is not the ``Host`` (ATK-13);
- :class:`NotFound` (404) for an unknown host, or a scheme the proxy does not serve;
- :class:`RedirectToHttps` (301 for GET/HEAD, 308 otherwise) for plain HTTP to a proxy with
  HTTPS enabled (an HTTP-only proxy, ``enable_https=False``, is served over HTTP);
- :class:`Unavailable` (502) when the matching route's target names a service or proxy that
  does not exist;
- :class:`Forward` otherwise, with the upstream and the canonical path to send it.

Routes: enabled ones apply if global or scoped to the proxy, filtered by the proxy's
``route_mode`` (``all`` minus ``disabled_routes``, ``selective`` = only ``enabled_routes``,
``none``), tried by priority (higher first) then ``route_id``.  ``prefix`` is a plain
``startswith`` on the canonical path, ``exact`` is equality, ``regex`` is ``re.match``
(anchored at the start).  The query string never takes part (ATK-11).  Targets: ``url``, a
named ``service`` (an external service, else a Docker service's address: its IP and
``internal_port``; the two kinds share one namespace, and should both somehow carry a name
the external service wins), a local ``port`` (``http://127.0.0.1:<port>``) or another
``proxy``'s target; the upstream's base path is prepended to the request path.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from attrs import field, frozen

from oauthproxy.gateway.paths import BadPath, authority_of, canonical_path, split_target
from oauthproxy.model import Proxy, Route, Snapshot

ACME_PREFIX = "/.well-known/acme-challenge/"


@frozen
class Upstream:
    """Where to connect, resolved once per table build (never parsed per request)."""

    scheme: str
    host: str
    port: int
    #: the target URL's path without its trailing slash ("" for none)
    base_path: str
    #: the Host header value used when the proxy does not preserve the client's
    netloc: bytes
    verify_tls: bool = True
    ca_pem: str | None = None

    @property
    def key(self) -> tuple[str, str, int, bool, str | None]:
        """The connection-pool key: connections are shared only with identical TLS settings."""
        return (self.scheme, self.host, self.port, self.verify_tls, self.ca_pem)


@frozen
class Forward:
    """Send the request to ``upstream`` with ``path`` (canonical path plus query)."""

    upstream: Upstream
    proxy: Proxy
    route: Route | None
    path: bytes


@frozen
class RedirectToHttps:
    """Answer with a redirect to the HTTPS URL."""

    location: bytes
    status: int


@frozen
class NotFound:
    """No proxy serves this host (or not on this scheme): 404."""

    reason: str


@frozen
class Reserved:
    """An ACME HTTP-01 challenge request: the challenge responder answers it."""

    token: str


@frozen
class Misdirected:
    """The TLS SNI name and the Host header disagree: 421."""

    reason: str


@frozen
class BadRequest:
    """The request target is refused: 400."""

    reason: str


@frozen
class Unavailable:
    """The matching route's target does not exist (any more): 502."""

    reason: str


Outcome = Forward | RedirectToHttps | NotFound | Reserved | Misdirected | BadRequest | Unavailable


def normalize_host(host: str | bytes | None) -> str | None:
    """Lower-case a Host value and strip its port; IPv6 literals lose their brackets.

    None for an empty or malformed value.
    """
    if host is None:
        return None
    if isinstance(host, bytes):
        try:
            host = host.decode("ascii")
        except UnicodeDecodeError:
            return None
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        if end == -1 or (len(host) > end + 1 and not host[end + 1 :].startswith(":")):
            return None
        host = host[1:end]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    elif ":" in host:
        return None
    host = host.rstrip(".")
    if not host or any(c in host for c in "/ \t\\@?#"):
        return None
    return host


def parse_upstream(url: str, proxy: Proxy | None) -> Upstream:
    """An :class:`Upstream` from a target URL (``http``/``https``); ValueError if unusable."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"unusable upstream URL {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname
    default = (parts.scheme == "https" and port == 443) or (parts.scheme == "http" and port == 80)
    shown = f"[{host}]" if ":" in host else host
    netloc = shown if default else f"{shown}:{port}"
    return Upstream(
        scheme=parts.scheme,
        host=host,
        port=port,
        base_path=parts.path.rstrip("/"),
        netloc=netloc.encode("idna") if not host.isascii() else netloc.encode("ascii"),
        verify_tls=proxy.verify_upstream_tls if proxy is not None else True,
        ca_pem=proxy.upstream_ca_pem if proxy is not None else None,
    )


@frozen
class _CompiledRoute:
    """A route ready to match: its matcher and its resolved upstream (None = unresolvable)."""

    route: Route
    regex: re.Pattern[str] | None
    upstream: Upstream | None
    problem: str = ""

    def matches(self, path: str, method: str) -> bool:
        """Whether this route takes ``path`` (canonical, no query) and ``method``."""
        r = self.route
        if r.methods and method not in r.methods:
            return False
        if r.match_type == "prefix":
            return path.startswith(r.path_pattern)
        if r.match_type == "exact":
            return path == r.path_pattern
        return self.regex is not None and self.regex.match(path) is not None


@frozen
class _Host:
    """One proxy with its default upstream and its applicable routes in priority order."""

    proxy: Proxy
    upstream: Upstream | None
    routes: tuple[_CompiledRoute, ...]


def _route_upstream(route: Route, proxy: Proxy, snapshot: Snapshot) -> tuple[Upstream | None, str]:
    """Resolve a route's target to an upstream, or (None, why)."""
    kind, value = route.target_type, route.target_value
    try:
        if kind == "url":
            return parse_upstream(value, proxy), ""
        if kind == "port":
            port = int(value)
            if not 0 < port < 65536:
                return None, f"route {route.route_id}: port {value} out of range"
            return parse_upstream(f"http://127.0.0.1:{port}", proxy), ""
        if kind == "service":
            service = snapshot.services.get(value)
            if service is not None:
                return parse_upstream(service.target_url, proxy), ""
            docker = snapshot.docker_services.get(value)
            if docker is None:
                return None, f"route {route.route_id}: no service named {value!r}"
            if docker.upstream_url is None:
                return None, (
                    f"route {route.route_id}: Docker service {value!r} has no address "
                    "(not running, or no internal_port)"
                )
            return parse_upstream(docker.upstream_url, proxy), ""
        other = snapshot.proxies.get(value.lower())
        if other is None:
            return None, f"route {route.route_id}: no proxy named {value!r}"
        return parse_upstream(other.target_url, other), ""
    except ValueError as e:
        return None, f"route {route.route_id}: {e}"


def _applicable(route: Route, proxy: Proxy) -> bool:
    """Whether ``route`` applies to ``proxy`` (enabled, in scope, allowed by route_mode)."""
    if not route.enabled:
        return False
    if route.scope == "proxy" and proxy.hostname not in route.proxy_hostnames:
        return False
    if proxy.route_mode == "none":
        return False
    if proxy.route_mode == "selective":
        return route.route_id in proxy.enabled_routes
    return route.route_id not in proxy.disabled_routes


def _compile_regex(pattern: str) -> re.Pattern[str] | None:
    """The compiled pattern, or None if it does not compile (the route then never matches)."""
    try:
        return re.compile(pattern)
    except re.error:
        return None


@frozen
class RoutingTable:
    """An immutable routing table; build with :meth:`from_snapshot`, query with :meth:`decide`."""

    hosts: dict[str, _Host] = field(factory=dict)
    #: the HTTPS listener's public port, for redirect locations (None/443 = omitted)
    https_port: int | None = None

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot, https_port: int | None = None) -> RoutingTable:
        """Build the table: every proxy with its routes resolved and sorted once."""
        ordered = sorted(snapshot.routes.values(), key=lambda r: (-r.priority, r.route_id))
        hosts: dict[str, _Host] = {}
        for name, proxy in snapshot.proxies.items():
            compiled = []
            for route in ordered:
                if not _applicable(route, proxy):
                    continue
                upstream, problem = _route_upstream(route, proxy, snapshot)
                regex = _compile_regex(route.path_pattern) if route.match_type == "regex" else None
                compiled.append(_CompiledRoute(route, regex, upstream, problem))
            try:
                default: Upstream | None = parse_upstream(proxy.target_url, proxy)
            except ValueError:
                default = None
            hosts[name.lower()] = _Host(proxy, default, tuple(compiled))
        return cls(hosts, https_port)

    def decide(
        self,
        host: str | bytes | None,
        target: bytes,
        method: str,
        scheme: str,
        server_name: str | None = None,
    ) -> Outcome:
        """The one outcome for a request; pure and total (never raises)."""
        try:
            raw_path, query = split_target(target)
            path = canonical_path(raw_path)
        except BadPath as e:
            return BadRequest(e.detail)
        if path.startswith(ACME_PREFIX):
            token = path[len(ACME_PREFIX) :]
            if token and "/" not in token:
                return Reserved(token)
        name = normalize_host(host)
        if name is None:
            return BadRequest("missing or malformed Host header")
        authority = authority_of(target)
        if authority is not None and normalize_host(authority) != name:
            return BadRequest("absolute-form target names another host than Host")
        if scheme == "https" and server_name is not None and normalize_host(server_name) != name:
            return Misdirected(f"TLS server name {server_name!r} does not match Host {name!r}")
        entry = self.hosts.get(name)
        if entry is None:
            return NotFound(f"no proxy for host {name!r}")
        proxy = entry.proxy
        if scheme == "http":
            if proxy.enable_https:
                status = 301 if method in ("GET", "HEAD") else 308
                return RedirectToHttps(self._https_location(name, path, query), status)
            if not proxy.enable_http:
                return NotFound(f"{name!r} is not served over http")
        elif not proxy.enable_https:
            return NotFound(f"{name!r} is not served over https")
        for compiled in entry.routes:
            if compiled.matches(path, method):
                if compiled.upstream is None:
                    return Unavailable(compiled.problem)
                return Forward(
                    compiled.upstream, proxy, compiled.route, _join(compiled.upstream, path, query)
                )
        if entry.upstream is None:
            return Unavailable(f"proxy {name!r} has an unusable target URL")
        return Forward(entry.upstream, proxy, None, _join(entry.upstream, path, query))

    def candidates(
        self, host: str | bytes | None, path: str, method: str
    ) -> list[tuple[Route, bool]]:
        """The routes that apply to ``host``'s proxy, in the order :meth:`decide` tries them,
        each with whether it matches ``method`` on the canonical ``path`` (for explanations:
        the first match wins).  Empty for an unknown host."""
        name = normalize_host(host)
        entry = self.hosts.get(name) if name is not None else None
        if entry is None:
            return []
        return [(c.route, c.matches(path, method)) for c in entry.routes]

    def _https_location(self, name: str, path: str, query: bytes) -> bytes:
        """The redirect target: the proxy's own name (never the raw Host, ATK-8)."""
        shown = f"[{name}]" if ":" in name else name
        port = f":{self.https_port}" if self.https_port not in (None, 443) else ""
        return f"https://{shown}{port}{path}".encode("ascii") + query


def _join(upstream: Upstream, path: str, query: bytes) -> bytes:
    """The path sent upstream: the target's base path, then the canonical path and the query."""
    return (upstream.base_path + path).encode("ascii") + query
