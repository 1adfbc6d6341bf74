"""Tests for which routes apply to a proxy: ``/proxy/targets/{hostname}/routes``, hostname reuse."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.model import Route
from tests.admin.harness import Harness
from tests.admin.test_proxies import create_proxy, stored_proxy


class RouteFilterTests(SynchronousTestCase):
    """``/proxy/targets/{hostname}/routes``: which routes apply to a proxy."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.alice = self.h.add_token("alice")
        create_proxy(self.h, self.alice, "a.example")
        for route_id, priority in (("low", 10), ("high", 90), ("mid", 50)):
            route = Route(route_id, "/" + route_id, "port", "8000", priority=priority)
            self.successResultOf(self.h.storage.routes.create(route))

    def filtering(self, method: str, suffix: str = "", body: object = None) -> Any:
        """Call a route filtering endpoint of a.example as its owner; the JSON answer."""
        answer = self.h.call(
            method, "/proxy/targets/a.example/routes" + suffix, token=self.alice, body=body
        )
        self.assertEqual(answer.status, 200, answer.body)
        return answer.json()

    def test_shows_the_applied_routes_in_priority_order(self) -> None:
        """With route_mode all, every global route applies, highest priority first."""
        view = self.filtering("GET")
        self.assertEqual(
            (view["route_mode"], view["applied_routes"]), ("all", ["high", "mid", "low"])
        )

    def test_selective_mode_applies_only_enabled_routes(self) -> None:
        """PUT route_mode selective with enabled_routes keeps just those."""
        view = self.filtering("PUT", body={"route_mode": "selective", "enabled_routes": ["low"]})
        self.assertEqual(view["applied_routes"], ["low"])
        proxy = stored_proxy(self.h, "a.example")
        assert proxy is not None
        self.assertEqual((proxy.route_mode, proxy.enabled_routes), ("selective", ("low",)))

    def test_disable_and_enable_one_route(self) -> None:
        """disable takes a route out, enable brings it back (and off the disabled list)."""
        self.assertEqual(self.filtering("POST", "/mid/disable")["applied_routes"], ["high", "low"])
        view = self.filtering("POST", "/mid/enable")
        self.assertEqual(
            (view["applied_routes"], view["disabled_routes"]), (["high", "mid", "low"], [])
        )

    def test_invalid_mode_is_named(self) -> None:
        """An unknown route_mode is 422 /route_mode."""
        answer = self.h.call(
            "PUT", "/proxy/targets/a.example/routes", token=self.alice, body={"route_mode": "some"}
        )
        self.h.assert_error(answer, 422, "invalid_input", "/route_mode")

    def test_other_owner_gets_404(self) -> None:
        """Another token can neither read nor change a proxy's route filtering."""
        bob = self.h.add_token("bob")
        for method, suffix, body in (("GET", "", None), ("POST", "/mid/disable", None)):
            answer = self.h.call(
                method, "/proxy/targets/a.example/routes" + suffix, token=bob, body=body
            )
            self.h.assert_error(answer, 404, "not_found")


class HostnameReuseTests(SynchronousTestCase):
    """A hostname deleted by one token and created by another brings no routes along."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.alice = self.h.add_token("alice")
        self.bob = self.h.add_token("bob")
        create_proxy(self.h, self.alice, "a.example")
        for route_id, owner in (("alices", "alice"), ("admins", "admin")):
            route = Route(route_id, "/x", "port", "81", scope="proxy", owner=owner,
                          proxy_hostnames=("a.example", "other.example"))  # fmt: skip
            self.successResultOf(self.h.storage.routes.create(route))
        self.h.call("DELETE", "/proxy/targets/a.example", token=self.alice)

    def scoped(self, route_id: str) -> tuple[str, ...]:
        """The hostnames route ``route_id`` is scoped to now."""
        route = self.successResultOf(self.h.storage.routes.get(route_id))
        assert route is not None
        return route.proxy_hostnames

    def test_another_owner_gets_none_of_the_old_owners_routes(self) -> None:
        """Bob's new a.example is taken off Alice's route; the admin's route stays."""
        self.assertEqual(create_proxy(self.h, self.bob, "a.example").status, 201)
        self.assertEqual(self.scoped("alices"), ("other.example",))
        self.assertEqual(self.scoped("admins"), ("a.example", "other.example"))

    def test_the_same_owner_keeps_its_routes(self) -> None:
        """Alice deleting and re-creating her proxy keeps her route scoped to it."""
        create_proxy(self.h, self.alice, "a.example")
        self.assertEqual(self.scoped("alices"), ("a.example", "other.example"))
