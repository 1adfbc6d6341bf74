"""Tests for the pure routing core: one outcome per request."""

from __future__ import annotations

from urllib.parse import unquote

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.gateway.routing import (
    BadRequest,
    Forward,
    Misdirected,
    NotFound,
    RedirectToHttps,
    Reserved,
    RoutingTable,
    Unavailable,
    normalize_host,
)
from oauthproxy.model import DockerService, ExternalService, Proxy, Route, Snapshot

WEB = Proxy(hostname="web.example", target_url="http://10.0.0.1:8080/base/")
PLAIN = Proxy(hostname="plain.example", target_url="http://10.0.0.2", enable_https=False)


def table(*routes: Route, proxies: tuple[Proxy, ...] = (WEB, PLAIN), **kw: object) -> RoutingTable:
    """A table over ``proxies`` and ``routes`` (plus one service named ``api``)."""
    snap = Snapshot(
        proxies={p.hostname: p for p in proxies},
        routes={r.route_id: r for r in routes},
        services={"api": ExternalService(name="api", target_url="https://api.internal:8443")},
        docker_services={
            "app": DockerService("app", "i:1", internal_port=3000, ip="10.9.0.7", phase="ready"),
            "down": DockerService("down", "i:1", internal_port=3000, phase="ready"),
            "api": DockerService("api", "i:1", internal_port=1, ip="10.9.0.8", phase="ready"),
        },
    )
    return RoutingTable.from_snapshot(snap, **kw)  # type: ignore[arg-type]


def forward(outcome: object) -> Forward:
    """Assert ``outcome`` is a Forward and return it."""
    assert isinstance(outcome, Forward), outcome
    return outcome


class HostTests(SynchronousTestCase):
    """Host normalization and vhost selection."""

    def test_host_is_lower_cased_and_port_stripped(self) -> None:
        """``WEB.Example:443`` is ``web.example``."""
        self.assertEqual(normalize_host(b"WEB.Example:443"), "web.example")

    def test_ipv6_literal_loses_brackets_and_port(self) -> None:
        """``[::1]:8080`` is ``::1``."""
        self.assertEqual(normalize_host("[::1]:8080"), "::1")

    def test_malformed_host_is_none(self) -> None:
        """A Host with a path or userinfo is refused."""
        self.assertIsNone(normalize_host("a@b"))
        self.assertIsNone(normalize_host("a/b"))

    def test_unknown_host_is_not_found(self) -> None:
        """404 for a host no proxy serves."""
        self.assertIsInstance(table().decide(b"nope.example", b"/", "GET", "https"), NotFound)

    def test_missing_host_is_bad_request(self) -> None:
        """400 without a Host."""
        self.assertIsInstance(table().decide(None, b"/", "GET", "https"), BadRequest)

    def test_absolute_form_cannot_pick_another_vhost(self) -> None:
        """ATK-12: ``GET http://plain.example/`` with ``Host: web.example`` is refused."""
        outcome = table().decide(b"web.example", b"http://plain.example/x", "GET", "https")
        self.assertIsInstance(outcome, BadRequest)

    def test_absolute_form_for_the_same_host_is_served(self) -> None:
        """ATK-12: an absolute-form target naming the Host itself is forwarded by its path."""
        outcome = table().decide(b"web.example", b"https://web.example/x?y", "GET", "https")
        self.assertEqual(forward(outcome).path, b"/base/x?y")

    def test_sni_mismatch_is_misdirected(self) -> None:
        """ATK-13: a TLS name other than Host gets 421."""
        outcome = table().decide(b"web.example", b"/", "GET", "https", "plain.example")
        self.assertIsInstance(outcome, Misdirected)

    def test_sni_match_ignores_case(self) -> None:
        """An SNI name equal to Host up to case is fine."""
        outcome = table().decide(b"web.example", b"/", "GET", "https", "WEB.example")
        self.assertIsInstance(outcome, Forward)


class SchemeTests(SynchronousTestCase):
    """HTTP to HTTPS redirects and scheme gating."""

    def test_get_over_http_redirects_with_301(self) -> None:
        """A GET to an HTTPS-enabled proxy over HTTP gets 301 to the same path and query."""
        outcome = table(https_port=8443).decide(b"web.example", b"/a/../b?q=1", "GET", "http")
        self.assertEqual(outcome, RedirectToHttps(b"https://web.example:8443/b?q=1", 301))

    def test_post_over_http_redirects_with_308(self) -> None:
        """A POST keeps its method: 308."""
        outcome = table().decide(b"web.example", b"/", "POST", "http")
        self.assertEqual(outcome, RedirectToHttps(b"https://web.example/", 308))

    def test_http_only_proxy_is_served_over_http(self) -> None:
        """``enable_https=False``: plain HTTP is forwarded."""
        self.assertIsInstance(table().decide(b"plain.example", b"/", "GET", "http"), Forward)

    def test_http_only_proxy_is_not_served_over_https(self) -> None:
        """``enable_https=False``: HTTPS answers 404."""
        self.assertIsInstance(table().decide(b"plain.example", b"/", "GET", "https"), NotFound)

    def test_acme_challenge_wins_over_redirect_and_unknown_host(self) -> None:
        """The ACME path is reserved on every host, never redirected."""
        t = table()
        target = b"/.well-known/acme-challenge/tok-1"
        self.assertEqual(t.decide(b"web.example", target, "GET", "http"), Reserved("tok-1"))
        self.assertEqual(t.decide(b"unknown", target, "GET", "http"), Reserved("tok-1"))


class RouteTests(SynchronousTestCase):
    """Route matching, priorities, targets and per-proxy filtering."""

    def test_without_routes_the_proxy_target_gets_the_base_path(self) -> None:
        """The target URL's path is prepended."""
        outcome = forward(table().decide(b"web.example", b"/x", "GET", "https"))
        self.assertEqual((outcome.upstream.host, outcome.upstream.port), ("10.0.0.1", 8080))
        self.assertEqual(outcome.path, b"/base/x")

    def test_higher_priority_wins(self) -> None:
        """Priority 90 beats 50 for the same prefix."""
        low = Route("a-low", "/api", "port", "9001", priority=50)
        high = Route("z-high", "/api", "port", "9002", priority=90)
        outcome = forward(table(low, high).decide(b"web.example", b"/api/x", "GET", "https"))
        self.assertEqual(outcome.upstream.port, 9002)

    def test_ties_break_by_route_id(self) -> None:
        """Equal priority: the smaller route_id wins, whatever the insertion order."""
        b = Route("b", "/api", "port", "9002")
        a = Route("a", "/api", "port", "9001")
        outcome = forward(table(b, a).decide(b"web.example", b"/api", "GET", "https"))
        self.assertEqual(outcome.upstream.port, 9001)

    def test_exact_route_matches_only_the_path(self) -> None:
        """``exact`` does not match a longer path."""
        r = Route("r", "/health", "port", "9001", match_type="exact")
        t = table(r)
        self.assertEqual(forward(t.decide(b"web.example", b"/health", "GET", "https")).route, r)
        self.assertIsNone(forward(t.decide(b"web.example", b"/health/x", "GET", "https")).route)

    def test_regex_route_is_anchored_at_the_start(self) -> None:
        """``regex`` uses ``re.match``."""
        r = Route("r", r"/v\d+/", "port", "9001", match_type="regex")
        t = table(r)
        self.assertEqual(forward(t.decide(b"web.example", b"/v2/x", "GET", "https")).route, r)
        self.assertIsNone(forward(t.decide(b"web.example", b"/x/v2/", "GET", "https")).route)

    def test_methods_restrict_a_route(self) -> None:
        """A POST-only route does not take a GET."""
        r = Route("r", "/", "port", "9001", methods=("POST",))
        t = table(r)
        self.assertEqual(forward(t.decide(b"web.example", b"/", "POST", "https")).route, r)
        self.assertIsNone(forward(t.decide(b"web.example", b"/", "GET", "https")).route)

    def test_route_matches_on_path_not_query(self) -> None:
        """ATK-11: ``/public?x=/admin`` is a ``/public`` request."""
        r = Route("r", "/admin", "port", "9001")
        outcome = forward(table(r).decide(b"web.example", b"/public?x=/admin", "GET", "https"))
        self.assertIsNone(outcome.route)

    def test_service_target_uses_the_named_service(self) -> None:
        """``service`` resolves through the snapshot's external services."""
        r = Route("r", "/", "service", "api")
        upstream = forward(table(r).decide(b"web.example", b"/", "GET", "https")).upstream
        self.assertEqual(
            (upstream.scheme, upstream.host, upstream.port), ("https", "api.internal", 8443)
        )

    def test_service_target_reaches_a_docker_service(self) -> None:
        """A Docker service is reached at its container's address and internal port."""
        r = Route("r", "/", "service", "app")
        upstream = forward(table(r).decide(b"web.example", b"/x", "GET", "https")).upstream
        self.assertEqual(
            (upstream.scheme, upstream.host, upstream.port), ("http", "10.9.0.7", 3000)
        )

    def test_a_docker_service_without_address_is_unavailable(self) -> None:
        """A stopped Docker service (no address) answers 502 naming it."""
        r = Route("r", "/", "service", "down")
        outcome = table(r).decide(b"web.example", b"/", "GET", "https")
        assert isinstance(outcome, Unavailable)
        self.assertIn("'down'", outcome.reason)

    def test_an_external_service_wins_a_name_clash(self) -> None:
        """Should both kinds carry a name, the external service is the target."""
        r = Route("r", "/", "service", "api")
        upstream = forward(table(r).decide(b"web.example", b"/", "GET", "https")).upstream
        self.assertEqual(upstream.host, "api.internal")

    def test_missing_service_is_unavailable(self) -> None:
        """A route to an unknown service answers 502, it does not fall through."""
        r = Route("r", "/", "service", "gone")
        self.assertIsInstance(table(r).decide(b"web.example", b"/", "GET", "https"), Unavailable)

    def test_proxy_target_uses_the_other_proxy_target(self) -> None:
        """``proxy`` forwards to another proxy's target URL."""
        r = Route("r", "/", "proxy", "plain.example")
        upstream = forward(table(r).decide(b"web.example", b"/", "GET", "https")).upstream
        self.assertEqual(upstream.host, "10.0.0.2")

    def test_port_target_is_loopback(self) -> None:
        """``port`` is ``http://127.0.0.1:<port>``."""
        r = Route("r", "/", "port", "3000")
        upstream = forward(table(r).decide(b"web.example", b"/", "GET", "https")).upstream
        self.assertEqual((upstream.host, upstream.port), ("127.0.0.1", 3000))

    def test_proxy_scoped_route_applies_only_to_its_proxies(self) -> None:
        """A route scoped to plain.example does not apply to web.example."""
        r = Route("r", "/", "port", "3000", scope="proxy", proxy_hostnames=("plain.example",))
        t = table(r)
        self.assertIsNone(forward(t.decide(b"web.example", b"/", "GET", "https")).route)
        self.assertEqual(forward(t.decide(b"plain.example", b"/", "GET", "http")).route, r)

    def test_disabled_route_never_applies(self) -> None:
        """``enabled=False``."""
        r = Route("r", "/", "port", "3000", enabled=False)
        self.assertIsNone(forward(table(r).decide(b"web.example", b"/", "GET", "https")).route)

    def test_route_mode_none_ignores_routes(self) -> None:
        """``route_mode="none"``."""
        p = Proxy(hostname="web.example", target_url="http://10.0.0.1", route_mode="none")
        t = table(Route("r", "/", "port", "3000"), proxies=(p,))
        self.assertIsNone(forward(t.decide(b"web.example", b"/", "GET", "https")).route)

    def test_route_mode_selective_uses_only_enabled_routes(self) -> None:
        """``selective``: only routes listed in ``enabled_routes``."""
        p = Proxy(
            hostname="web.example",
            target_url="http://10.0.0.1",
            route_mode="selective",
            enabled_routes=("b",),
        )
        t = table(Route("a", "/", "port", "3001"), Route("b", "/", "port", "3002"), proxies=(p,))
        self.assertEqual(
            forward(t.decide(b"web.example", b"/", "GET", "https")).upstream.port, 3002
        )

    def test_route_mode_all_skips_disabled_routes(self) -> None:
        """``all`` minus ``disabled_routes``."""
        p = Proxy(hostname="web.example", target_url="http://10.0.0.1", disabled_routes=("a",))
        t = table(Route("a", "/", "port", "3001"), Route("b", "/", "port", "3002"), proxies=(p,))
        self.assertEqual(
            forward(t.decide(b"web.example", b"/", "GET", "https")).upstream.port, 3002
        )

    @given(
        st.lists(
            st.sampled_from(["admin", "public", "..", ".", "", "%2e%2e", "%2E", "a%64min", "x"]),
            max_size=8,
        )
    )
    def test_routing_decision_agrees_with_upstream_path(self, segments: list[str]) -> None:
        """ATK-10: the route chosen for a target is the one its upstream path would get.

        Whatever the client sends, routing ``/admin`` to the admin backend and the rest to the
        public one gives the same answer for the raw target and for the path the upstream gets.
        """
        admin = Route("admin", "/admin", "port", "9999")
        t = table(admin, proxies=(Proxy(hostname="h", target_url="http://10.0.0.9"),))
        outcome = t.decide(b"h", ("/" + "/".join(segments)).encode(), "GET", "https")
        if not isinstance(outcome, Forward):
            return
        sent = unquote(outcome.path.decode("ascii"))
        again = forward(t.decide(b"h", sent.encode(), "GET", "https"))
        self.assertEqual(again.route, outcome.route)
        self.assertEqual(outcome.route is admin, sent.startswith("/admin"))

    @given(st.binary(max_size=64), st.sampled_from(["GET", "POST", "PUT"]))
    def test_decide_is_total(self, target: bytes, method: str) -> None:
        """Any target yields exactly one outcome and never raises."""
        outcome = table().decide(b"web.example", b"/" + target, method, "https")
        self.assertIsInstance(
            outcome, (Forward, BadRequest, Reserved, NotFound, Unavailable, Misdirected)
        )
