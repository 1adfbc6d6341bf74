"""Tests for ``/routes/``: route CRUD, per-type target checks, scope and ownership."""

from __future__ import annotations

import re
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.model import DockerService, ExternalService, Proxy, Route
from tests.admin.harness import Answer, Harness


def create_route(h: Harness, token: str, **fields: Any) -> Answer:
    """``POST /routes/`` with a valid prefix route to a URL, overridden by ``fields``."""
    body = {
        "path_pattern": "/api/",
        "target_type": "url",
        "target_value": "http://127.0.0.1:9001",
        **fields,
    }
    return h.call("POST", "/routes/", token=token, body=body)


def own_route(h: Harness, token: str, route_id: str, hostname: str, **fields: Any) -> Answer:
    """A route scoped to ``hostname`` (what a non-admin token may create)."""
    return create_route(
        h, token, route_id=route_id, scope="proxy", proxy_hostnames=[hostname], **fields
    )


def stored_route(h: Harness, route_id: str) -> Route | None:
    """The route record the store holds under ``route_id``."""
    route: Route | None = h.test.successResultOf(h.storage.routes.get(route_id))
    return route


class RouteTestCase(SynchronousTestCase):
    """A harness with tokens alice and bob, each owning a proxy and a service."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.alice = self.h.add_token("alice")
        self.bob = self.h.add_token("bob")
        for hostname, owner in (("a.example", "alice"), ("b.example", "bob")):
            proxy = Proxy(hostname, f"http://{owner}:1", owner=owner)
            self.successResultOf(self.h.storage.proxies.create(proxy))
        for name, owner in (("a-svc", "alice"), ("b-svc", "bob")):
            service = ExternalService(name, "http://svc:1", owner=owner)
            self.successResultOf(self.h.storage.services.create(service))


class CreateTests(RouteTestCase):
    """``POST /routes/``: the record, ids and pattern checks."""

    def test_admin_creates_a_global_route_with_defaults(self) -> None:
        """A minimal route gets the model defaults and the caller as owner."""
        answer = create_route(self.h, self.h.admin_token, route_id="api")
        self.assertEqual(answer.status, 201, answer.body)
        self.assertEqual(answer.header(b"location"), b"/routes/api")
        now = self.h.clock.seconds()
        expected = Route(
            "api", "/api/", "url", "http://127.0.0.1:9001", created_at=now, updated_at=now
        )
        self.assertEqual(stored_route(self.h, "api"), expected)
        self.assertEqual(answer.json()["priority"], 50)

    def test_generates_short_url_safe_ids(self) -> None:
        """Without a route_id, each route gets a distinct 8-hex-digit id."""
        first = create_route(self.h, self.h.admin_token).json()["route_id"]
        second = create_route(self.h, self.h.admin_token).json()["route_id"]
        self.assertRegex(first, re.compile(r"^[0-9a-f]{8}$"))
        self.assertNotEqual(first, second)
        self.assertIsNotNone(stored_route(self.h, second))

    def test_taken_id_is_conflict(self) -> None:
        """A route_id in use is 409 /route_id."""
        create_route(self.h, self.h.admin_token, route_id="api")
        answer = create_route(self.h, self.h.admin_token, route_id="api")
        self.h.assert_error(answer, 409, "conflict", "/route_id")

    def test_invalid_id_is_named(self) -> None:
        """A route_id with a slash is 422 /route_id."""
        answer = create_route(self.h, self.h.admin_token, route_id="a/b")
        self.h.assert_error(answer, 422, "invalid_input", "/route_id")

    def test_methods_are_upper_cased_and_star_means_all(self) -> None:
        """``get, Post`` are stored as GET, POST; ``*`` as every method (empty)."""
        create_route(self.h, self.h.admin_token, route_id="m", methods=["get", "Post", "GET"])
        create_route(self.h, self.h.admin_token, route_id="all", methods=["GET", "*"])
        route, every = stored_route(self.h, "m"), stored_route(self.h, "all")
        assert route is not None and every is not None
        self.assertEqual((route.methods, every.methods), (("GET", "POST"), ()))

    def test_unknown_method_is_named(self) -> None:
        """A method outside the fixed set is 422 naming its index."""
        answer = create_route(self.h, self.h.admin_token, methods=["GET", "FETCH"])
        self.h.assert_error(answer, 422, "invalid_input", "/methods/1")

    def test_priority_is_bounded(self) -> None:
        """Priority above 1000 is 422 /priority."""
        answer = create_route(self.h, self.h.admin_token, priority=1001)
        self.h.assert_error(answer, 422, "invalid_input", "/priority")

    def test_prefix_must_start_with_slash(self) -> None:
        """A prefix without a leading '/' is 422 /path_pattern."""
        answer = create_route(self.h, self.h.admin_token, path_pattern="api/")
        self.h.assert_error(answer, 422, "invalid_input", "/path_pattern")

    def test_prefix_the_gateway_never_sees_is_refused(self) -> None:
        """A non-canonical path (dot segments, '//') could never match: 422 (ATK path split)."""
        for bad in ("/public/../admin", "/a//b", "/with space"):
            answer = create_route(self.h, self.h.admin_token, path_pattern=bad, match_type="exact")
            self.h.assert_error(answer, 422, "invalid_input", "/path_pattern")

    def test_regex_must_compile(self) -> None:
        """A regex that does not compile is 422 /path_pattern; one that does is stored."""
        answer = create_route(self.h, self.h.admin_token, path_pattern="/(a", match_type="regex")
        self.h.assert_error(answer, 422, "invalid_input", "/path_pattern")
        answer = create_route(
            self.h, self.h.admin_token, path_pattern=r"^/v[0-9]+/", match_type="regex"
        )
        self.assertEqual(answer.status, 201, answer.body)

    def test_regex_with_nested_repetition_is_refused(self) -> None:
        """``(a+)+`` backtracks exponentially (one request could stall the daemon): 422."""
        for bad in (r"^/(a+)+$", r"^/(?:x*)*y", "a{4294967296}"):
            answer = create_route(self.h, self.h.admin_token, path_pattern=bad, match_type="regex")
            self.h.assert_error(answer, 422, "invalid_input", "/path_pattern")

    def test_regex_length_is_bounded(self) -> None:
        """A regex over 512 characters is 422 /path_pattern."""
        answer = create_route(
            self.h, self.h.admin_token, path_pattern="/" + "a" * 600, match_type="regex"
        )
        self.h.assert_error(answer, 422, "invalid_input", "/path_pattern")


class TargetTests(RouteTestCase):
    """``target_value`` is checked according to ``target_type``."""

    def test_url_target_must_be_http(self) -> None:
        """A url target that is no http(s) URL is 422 /target_value."""
        answer = create_route(self.h, self.h.admin_token, target_value="file:///etc/passwd")
        self.h.assert_error(answer, 422, "invalid_input", "/target_value")

    def test_port_target_is_a_port_number(self) -> None:
        """Ports 1-65535 are accepted, 0, 65536 and text are 422 /target_value."""
        ok = create_route(self.h, self.h.admin_token, target_type="port", target_value="8080")
        self.assertEqual(ok.status, 201, ok.body)
        for bad in ("0", "65536", "http"):
            answer = create_route(self.h, self.h.admin_token, target_type="port", target_value=bad)
            self.h.assert_error(answer, 422, "invalid_input", "/target_value")

    def test_service_target_must_exist(self) -> None:
        """An unknown external service is 422 /target_value; a known one is accepted."""
        answer = create_route(
            self.h, self.h.admin_token, target_type="service", target_value="nope"
        )
        self.h.assert_error(answer, 422, "invalid_input", "/target_value")
        answer = create_route(
            self.h, self.h.admin_token, target_type="service", target_value="a-svc"
        )
        self.assertEqual(answer.status, 201, answer.body)

    def test_service_target_may_name_a_docker_service(self) -> None:
        """A Docker service is a service target too (one namespace with external ones)."""
        self.successResultOf(
            self.h.storage.docker_services.create(DockerService("app", "i:1", phase="ready"))
        )
        answer = create_route(self.h, self.h.admin_token, target_type="service", target_value="app")
        self.assertEqual(answer.status, 201, answer.body)

    def test_proxy_target_must_exist_and_is_lower_cased(self) -> None:
        """A proxy target names an existing proxy; it is stored lower-case."""
        answer = create_route(
            self.h, self.h.admin_token, target_type="proxy", target_value="A.Example"
        )
        self.assertEqual(answer.json()["target_value"], "a.example")
        answer = create_route(
            self.h, self.h.admin_token, target_type="proxy", target_value="z.example"
        )
        self.h.assert_error(answer, 422, "invalid_input", "/target_value")

    def test_another_owners_service_is_unknown(self) -> None:
        """Token A cannot target token B's service: 422, as if it did not exist."""
        answer = own_route(
            self.h, self.alice, "r", "a.example", target_type="service", target_value="b-svc"
        )
        self.h.assert_error(answer, 422, "invalid_input", "/target_value")

    def test_another_owners_proxy_is_unknown(self) -> None:
        """Token A cannot target token B's proxy."""
        answer = own_route(
            self.h, self.alice, "r", "a.example", target_type="proxy", target_value="b.example"
        )
        self.h.assert_error(answer, 422, "invalid_input", "/target_value")


class ScopeTests(RouteTestCase):
    """``scope`` and ``proxy_hostnames``, and who may create global routes."""

    def test_non_admin_may_not_create_global_routes(self) -> None:
        """A global route applies to every proxy: only the admin token may create one."""
        answer = create_route(self.h, self.alice)
        self.h.assert_error(answer, 403, "forbidden")
        self.assertEqual(self.successResultOf(self.h.storage.routes.list()), [])

    def test_non_admin_scopes_routes_to_its_proxies(self) -> None:
        """Token A's route scoped to its own proxy is created and owned by A."""
        answer = own_route(self.h, self.alice, "mine", "A.example")
        self.assertEqual(answer.status, 201, answer.body)
        route = stored_route(self.h, "mine")
        assert route is not None
        self.assertEqual((route.owner, route.proxy_hostnames), ("alice", ("a.example",)))

    def test_scope_on_another_owners_proxy_is_refused(self) -> None:
        """Token A cannot scope a route to token B's proxy: 422 naming the entry."""
        answer = own_route(self.h, self.alice, "r", "b.example")
        self.h.assert_error(answer, 422, "invalid_input", "/proxy_hostnames/0")

    def test_proxy_scope_needs_hostnames(self) -> None:
        """scope proxy without proxy_hostnames is 422 /proxy_hostnames."""
        answer = create_route(self.h, self.h.admin_token, scope="proxy")
        self.h.assert_error(answer, 422, "invalid_input", "/proxy_hostnames")

    def test_global_scope_takes_no_hostnames(self) -> None:
        """proxy_hostnames with scope global is 422 /proxy_hostnames."""
        answer = create_route(self.h, self.h.admin_token, proxy_hostnames=["a.example"])
        self.h.assert_error(answer, 422, "invalid_input", "/proxy_hostnames")


class ReadTests(RouteTestCase):
    """Listing and showing routes, with ownership."""

    def setUp(self) -> None:
        super().setUp()
        own_route(self.h, self.alice, "a-low", "a.example", priority=10)
        own_route(
            self.h,
            self.alice,
            "a-high",
            "a.example",
            priority=90,
            target_type="port",
            target_value="81",
        )
        own_route(self.h, self.bob, "b-one", "b.example")

    def ids(self, path: str, token: str) -> list[str]:
        """The route ids of a list page."""
        answer = self.h.call("GET", path, token=token)
        self.assertEqual(answer.status, 200, answer.body)
        return [r["route_id"] for r in answer.json()["items"]]

    def test_admin_lists_all_in_priority_order(self) -> None:
        """The admin sees every route, highest priority first, ties by id."""
        self.assertEqual(self.ids("/routes/", self.h.admin_token), ["a-high", "b-one", "a-low"])

    def test_non_admin_lists_its_own(self) -> None:
        """Token B sees only its route."""
        self.assertEqual(self.ids("/routes/", self.bob), ["b-one"])

    def test_filters_by_target_type(self) -> None:
        """``target_type=port`` keeps the port routes."""
        self.assertEqual(self.ids("/routes/?target_type=port", self.alice), ["a-high"])

    def test_other_owners_route_is_404(self) -> None:
        """Token B cannot read token A's route."""
        answer = self.h.call("GET", "/routes/a-low", token=self.bob)
        self.h.assert_error(answer, 404, "not_found")

    def test_admin_reads_any_route(self) -> None:
        """The admin token reads token A's route."""
        answer = self.h.call("GET", "/routes/a-low", token=self.h.admin_token)
        self.assertEqual((answer.status, answer.json()["owner"]), (200, "alice"))


class UpdateTests(RouteTestCase):
    """``PUT``/``PATCH /routes/{route_id}``."""

    def setUp(self) -> None:
        super().setUp()
        own_route(self.h, self.alice, "r", "a.example", description="keep", methods=["GET"])
        self.before = stored_route(self.h, "r")
        self.h.clock.advance(7)

    def patch(self, body: object, token: str | None = None, method: str = "PATCH") -> Answer:
        """PATCH (or PUT) route r."""
        return self.h.call(method, "/routes/r", token=token or self.alice, body=body)

    def test_patch_changes_only_the_given_fields(self) -> None:
        """Changing the priority keeps every other field; updated_at moves."""
        answer = self.patch({"priority": 70})
        self.assertEqual(answer.status, 200, answer.body)
        after = stored_route(self.h, "r")
        assert after is not None and self.before is not None
        self.assertEqual((after.priority, after.description, after.methods), (70, "keep", ("GET",)))
        self.assertEqual(after.updated_at, self.before.updated_at + 7)

    def test_put_changes_only_the_given_fields(self) -> None:
        """PUT takes a subset like PATCH."""
        self.assertEqual(self.patch({"enabled": False}, method="PUT").status, 200)
        after = stored_route(self.h, "r")
        assert after is not None
        self.assertEqual((after.enabled, after.description), (False, "keep"))

    def test_changing_match_type_rechecks_the_pattern(self) -> None:
        """Switching to regex re-checks the stored pattern; an invalid pair is refused."""
        self.assertEqual(
            self.patch({"path_pattern": "^/v[0-9]+/", "match_type": "regex"}).status, 200
        )
        answer = self.patch({"match_type": "prefix"})
        self.h.assert_error(answer, 422, "invalid_input", "/path_pattern")

    def test_changing_target_type_rechecks_the_value(self) -> None:
        """Switching to a service target with a URL value is 422 /target_value."""
        answer = self.patch({"target_type": "service"})
        self.h.assert_error(answer, 422, "invalid_input", "/target_value")
        self.assertEqual(stored_route(self.h, "r"), self.before)

    def test_non_admin_cannot_make_its_route_global(self) -> None:
        """Token A changing its route's scope to global is 403."""
        answer = self.patch({"scope": "global", "proxy_hostnames": []})
        self.h.assert_error(answer, 403, "forbidden")

    def test_other_owner_cannot_change(self) -> None:
        """Token B's PATCH of token A's route is 404 and changes nothing."""
        answer = self.patch({"priority": 1}, token=self.bob)
        self.h.assert_error(answer, 404, "not_found")
        self.assertEqual(stored_route(self.h, "r"), self.before)

    def test_admin_changes_any_route(self) -> None:
        """The admin token changes token A's route; A still owns it."""
        answer = self.patch({"priority": 1}, token=self.h.admin_token)
        self.assertEqual((answer.status, answer.json()["owner"]), (200, "alice"))

    def test_route_id_cannot_change(self) -> None:
        """route_id in an update body is 422 /route_id."""
        self.h.assert_error(self.patch({"route_id": "s"}), 422, "invalid_input", "/route_id")


class DeleteTests(RouteTestCase):
    """``DELETE /routes/{route_id}``."""

    def setUp(self) -> None:
        super().setUp()
        own_route(self.h, self.alice, "r", "a.example")

    def test_owner_deletes(self) -> None:
        """DELETE is 204 and the route is gone."""
        self.assertEqual(self.h.call("DELETE", "/routes/r", token=self.alice).status, 204)
        self.assertIsNone(stored_route(self.h, "r"))

    def test_other_owner_cannot_delete(self) -> None:
        """Token B's DELETE of token A's route is 404; it stays."""
        answer = self.h.call("DELETE", "/routes/r", token=self.bob)
        self.h.assert_error(answer, 404, "not_found")
        self.assertIsNotNone(stored_route(self.h, "r"))

    def test_admin_deletes_any_route(self) -> None:
        """The admin token deletes token A's route."""
        self.assertEqual(self.h.call("DELETE", "/routes/r", token=self.h.admin_token).status, 204)

    def test_unknown_is_404(self) -> None:
        """Deleting an unknown route is 404."""
        answer = self.h.call("DELETE", "/routes/none", token=self.h.admin_token)
        self.h.assert_error(answer, 404, "not_found")
