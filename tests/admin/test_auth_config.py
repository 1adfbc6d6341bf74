"""Tests for ``/routes/{route_id}/auth`` and ``/proxy/targets/{hostname}/auth``."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.model import Claims, Proxy, ProxyAuth, Route, RouteAuth
from oauthproxy.oauth.status import OAuthStatus
from tests.admin.harness import Harness
from tests.admin.test_auth_rules import FORGED, add_rule, use_verifier

SEED_PROXY_AUTH = {
    "auth_type": "oauth",
    "auth_proxy": "auth.example.com",
    "auth_mode": "redirect",
    "auth_required_users": ["alice", "bob"],
    "oauth_scopes": ["api:read", "api:write"],
}


def add_route(h: Harness, route_id: str, owner: str = "admin") -> None:
    """Store a route owned by ``owner``."""
    route = Route(route_id, "/metrics", "url", "http://127.0.0.1:9", owner=owner)
    h.test.successResultOf(h.storage.routes.create(route))


def add_proxy(h: Harness, hostname: str, owner: str = "admin") -> None:
    """Store a proxy owned by ``owner``."""
    proxy = Proxy(hostname, "http://127.0.0.1:9", owner=owner)
    h.test.successResultOf(h.storage.proxies.create(proxy))


def route_auth(h: Harness, route_id: str) -> RouteAuth | None:
    """The stored auth of a route."""
    route = h.test.successResultOf(h.storage.routes.get(route_id))
    assert route is not None
    return route.auth


def proxy_auth(h: Harness, hostname: str) -> ProxyAuth | None:
    """The stored auth of a proxy."""
    proxy = h.test.successResultOf(h.storage.proxies.get(hostname))
    assert proxy is not None
    return proxy.auth


class RouteAuthTests(SynchronousTestCase):
    """``PUT``/``GET``/``DELETE /routes/{route_id}/auth``."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.alice = self.h.add_token("alice")
        add_route(self.h, "metrics")
        add_route(self.h, "alices", owner="alice")

    def test_seed_example_is_stored(self) -> None:
        """The seed's body sets the route's auth in the store."""
        answer = self.h.call(
            "PUT",
            "/routes/metrics/auth",
            token=self.h.admin_token,
            body={"auth_type": "admin", "override_proxy_auth": True},
        )
        self.assertEqual(answer.status, 200)
        self.assertEqual(answer.json()["auth"]["auth_type"], "admin")
        self.assertEqual(route_auth(self.h, "metrics"), RouteAuth("admin", True))

    def test_put_changes_only_given_fields(self) -> None:
        """A second PUT keeps the fields it does not name."""
        for body in ({"auth_type": "oauth", "oauth_scopes": ["a"]}, {"oauth_allowed_users": ["x"]}):
            self.h.call("PUT", "/routes/metrics/auth", token=self.h.admin_token, body=body)
        self.assertEqual(
            route_auth(self.h, "metrics"),
            RouteAuth("oauth", oauth_scopes=("a",), oauth_allowed_users=("x",)),
        )

    def test_show_and_clear(self) -> None:
        """GET shows null before, DELETE clears after a PUT."""
        path = "/routes/metrics/auth"
        self.assertIsNone(self.h.call("GET", path, token=self.h.admin_token).json()["auth"])
        self.h.call("PUT", path, token=self.h.admin_token, body={"auth_type": "none"})
        self.assertEqual(self.h.call("DELETE", path, token=self.h.admin_token).status, 204)
        self.assertIsNone(route_auth(self.h, "metrics"))

    def test_invalid_auth_type_is_named(self) -> None:
        """An unknown auth type is 422 naming ``/auth_type``."""
        answer = self.h.call(
            "PUT", "/routes/metrics/auth", token=self.h.admin_token, body={"auth_type": "magic"}
        )
        self.h.assert_error(answer, 422, "invalid_input", "/auth_type")

    def test_unknown_route_is_404(self) -> None:
        """No such route: 404."""
        answer = self.h.call(
            "PUT", "/routes/nope/auth", token=self.h.admin_token, body={"auth_type": "none"}
        )
        self.h.assert_error(answer, 404, "not_found")

    def test_other_owners_route_is_404(self) -> None:
        """A non-admin token cannot configure the admin's route; it stays unchanged."""
        answer = self.h.call(
            "PUT", "/routes/metrics/auth", token=self.alice, body={"auth_type": "none"}
        )
        self.h.assert_error(answer, 404, "not_found")
        self.assertIsNone(route_auth(self.h, "metrics"))

    def test_owner_configures_own_route(self) -> None:
        """With the default (bearer) a token configures its own route."""
        answer = self.h.call(
            "PUT", "/routes/alices/auth", token=self.alice, body={"auth_type": "bearer"}
        )
        self.assertEqual(answer.status, 200)


class ProxyAuthTests(SynchronousTestCase):
    """``POST``/``GET``/``DELETE /proxy/targets/{hostname}/auth``."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.alice = self.h.add_token("alice")
        add_proxy(self.h, "api.example.com")
        add_proxy(self.h, "alice.example.com", owner="alice")

    def test_seed_example_is_stored(self) -> None:
        """The seed's body (its field names) becomes the proxy's ProxyAuth."""
        answer = self.h.call(
            "POST",
            "/proxy/targets/api.example.com/auth",
            token=self.h.admin_token,
            body=SEED_PROXY_AUTH,
        )
        self.assertEqual(answer.status, 200, answer.body)
        self.assertEqual(
            proxy_auth(self.h, "api.example.com"),
            ProxyAuth(
                "oauth",
                "auth.example.com",
                "redirect",
                required_users=("alice", "bob"),
                required_scopes=("api:read", "api:write"),
            ),
        )
        self.assertEqual(answer.json()["auth"]["required_users"], ["alice", "bob"])

    def test_alias_and_name_together_are_refused(self) -> None:
        """``oauth_scopes`` and ``required_scopes`` at once is ambiguous: 422."""
        answer = self.h.call(
            "POST",
            "/proxy/targets/api.example.com/auth",
            token=self.h.admin_token,
            body={"oauth_scopes": ["a"], "required_scopes": ["b"]},
        )
        self.h.assert_error(answer, 422, "invalid_input", "/oauth_scopes")

    def test_bad_values_are_named(self) -> None:
        """An invalid auth proxy, mode or excluded path is 422 naming the field."""
        for body, where in (
            ({"auth_proxy": "not a host"}, "/auth_proxy"),
            ({"auth_mode": "sideways"}, "/auth_mode"),
            ({"excluded_paths": ["no-slash"]}, "/excluded_paths/0"),
        ):
            answer = self.h.call(
                "POST", "/proxy/targets/api.example.com/auth", token=self.h.admin_token, body=body
            )
            self.h.assert_error(answer, 422, "invalid_input", where)

    def test_show_and_clear(self) -> None:
        """GET shows the settings; DELETE removes them."""
        path = "/proxy/targets/api.example.com/auth"
        self.h.call("POST", path, token=self.h.admin_token, body={"auth_type": "bearer"})
        self.assertEqual(
            self.h.call("GET", path, token=self.h.admin_token).json()["auth"]["auth_type"],
            "bearer",
        )
        self.assertEqual(self.h.call("DELETE", path, token=self.h.admin_token).status, 204)
        self.assertIsNone(proxy_auth(self.h, "api.example.com"))

    def test_other_owners_proxy_is_404(self) -> None:
        """A non-admin token cannot read or configure the admin's proxy."""
        path = "/proxy/targets/api.example.com/auth"
        self.h.assert_error(self.h.call("GET", path, token=self.alice), 404, "not_found")
        answer = self.h.call("POST", path, token=self.alice, body={"auth_type": "none"})
        self.h.assert_error(answer, 404, "not_found")
        self.assertIsNone(proxy_auth(self.h, "api.example.com"))

    def test_unknown_proxy_is_404(self) -> None:
        """No such proxy: 404."""
        answer = self.h.call(
            "GET", "/proxy/targets/nope.example.com/auth", token=self.h.admin_token
        )
        self.h.assert_error(answer, 404, "not_found")


class OAuthAvailabilityTests(SynchronousTestCase):
    """OAuth protection is refused while the daemon's server cannot serve it (issue 11)."""

    def harness(self, status: OAuthStatus) -> Harness:
        """An API told ``status``, with proxy ``a.example.com`` and route ``r``."""
        h = Harness(self, oauth_status=lambda: status)
        add_proxy(h, "a.example.com")
        add_route(h, "r")
        return h

    def test_missing_github_app_is_refused_unless_the_proxy_has_its_own(self) -> None:
        """No global GitHub app: 409 naming GITHUB_CLIENT_ID; a proxy's own app suffices."""
        h = self.harness(OAuthStatus("ready", "https://auth.example.com", github_app=False))
        refused = h.call("POST", "/proxy/targets/a.example.com/auth", token=h.admin_token,
                         body={"auth_type": "oauth"})  # fmt: skip
        self.assertEqual(refused.status, 409, refused.body)
        self.assertIn("GITHUB_CLIENT_ID", refused.json()["detail"])
        own = h.call("POST", "/proxy/targets/a.example.com/github-oauth", token=h.admin_token,
                     body={"client_id": "own", "client_secret": "s"})  # fmt: skip
        self.assertEqual(own.status, 200, own.body)
        accepted = h.call("POST", "/proxy/targets/a.example.com/auth", token=h.admin_token,
                          body={"auth_type": "oauth"})  # fmt: skip
        self.assertEqual(accepted.status, 200, accepted.body)

    def test_failed_server_is_refused_with_its_reason(self) -> None:
        """A server that failed to start: 409 saying why, for proxies and routes."""
        h = self.harness(OAuthStatus("failed", "https://auth.example.com", True, "bad key"))
        for method, path in (
            ("POST", "/proxy/targets/a.example.com/auth"),
            ("PUT", "/routes/r/auth"),
        ):
            answer = h.call(method, path, token=h.admin_token, body={"auth_type": "oauth"})
            self.assertEqual(answer.status, 409, (path, answer.body))
            self.assertIn("bad key", answer.json()["detail"])

    def test_endpoint_rules_of_type_oauth_are_refused_while_oauth_is_off(self) -> None:
        """A rule no OAuth token could pass is refused (409 naming the setting), made or changed."""
        h = self.harness(OAuthStatus("off"))
        body = {"path_pattern": "/services/*", "auth_type": "oauth", "config_id": "svc"}
        refused = h.call("POST", "/auth/endpoints", token=h.admin_token, body=body)
        self.assertEqual(refused.status, 409, refused.body)
        self.assertIn("OAUTHPROXY_OAUTH_ISSUER", refused.json()["detail"])
        made = h.call("POST", "/auth/endpoints", token=h.admin_token,
                      body={**body, "auth_type": "bearer"})  # fmt: skip
        self.assertEqual(made.status, 201, made.body)
        changed = h.call("PUT", "/auth/endpoints/svc", token=h.admin_token,
                         body={"auth_type": "oauth"})  # fmt: skip
        self.assertEqual(changed.status, 409, changed.body)
        shown = h.call("GET", "/auth/endpoints/svc", token=h.admin_token)
        self.assertEqual(shown.json()["auth_type"], "bearer")

    def test_other_auth_types_need_no_oauth_server(self) -> None:
        """Bearer protection works with OAuth off."""
        h = self.harness(OAuthStatus("off"))
        answer = h.call("POST", "/proxy/targets/a.example.com/auth", token=h.admin_token,
                        body={"auth_type": "bearer"})  # fmt: skip
        self.assertEqual(answer.status, 200, answer.body)


class RuleEffectTests(SynchronousTestCase):
    """Every auth type, applied by an endpoint rule, on the route and proxy config endpoints."""

    ROUTE = "/routes/alices/auth"
    PROXY = "/proxy/targets/alice.example.com/auth"

    def setUp(self) -> None:
        self.h = Harness(self)
        self.alice = self.h.add_token("alice")
        add_route(self.h, "alices", owner="alice")
        add_proxy(self.h, "alice.example.com", owner="alice")

    def both(self, token: str | None, headers: dict[str, str] | None = None) -> list[int]:
        """The statuses of GET on the route and the proxy config endpoint."""
        return [
            self.h.call("GET", path, token=token, headers=headers).status
            for path in (self.ROUTE, self.PROXY)
        ]

    def test_bearer_default_admits_owner_only_with_token(self) -> None:
        """No rule: anonymous 401, the owner's token 200."""
        self.assertEqual(self.both(None), [401, 401])
        self.assertEqual(self.both(self.alice), [200, 200])

    def test_none_admits_anonymous_but_ownership_still_holds(self) -> None:
        """A ``none`` rule lets anonymous callers in, who own nothing: 404, not the data."""
        add_rule(self.h, "open", "/routes/*", "none")
        add_rule(self.h, "open2", "/proxy/*", "none")
        self.assertEqual(self.both(None), [404, 404])
        self.assertEqual(self.both(self.alice), [200, 200])

    def test_admin_rule_refuses_the_owner(self) -> None:
        """An ``admin`` rule: the owner's token gets 403, the admin token 200."""
        add_rule(self.h, "a", "/routes/*/auth", "admin")
        add_rule(self.h, "b", "/proxy/targets/*/auth", "admin")
        self.assertEqual(self.both(self.alice), [403, 403])
        self.assertEqual(self.both(self.h.admin_token), [200, 200])

    def test_oauth_rule_admits_verified_user_with_scope(self) -> None:
        """An ``oauth`` rule: a verified token with the scope passes, an API token does not."""
        use_verifier(self.h, {"at-1": Claims(username="alice", scopes=("cfg",))})
        add_rule(self.h, "a", "/routes/*/auth", "oauth", oauth_scopes=("cfg",))
        add_rule(self.h, "b", "/proxy/targets/*/auth", "oauth", oauth_scopes=("cfg",))
        # the OAuth user owns nothing here: admitted, then told there is no such record
        self.assertEqual(self.both("at-1"), [404, 404])
        self.assertEqual(self.both(self.alice), [401, 401])

    def test_forged_headers_gain_nothing(self) -> None:
        """Identity headers with no or a non-admin token change nothing (ATK-6)."""
        add_rule(self.h, "a", "/routes/*/auth", "admin")
        add_rule(self.h, "b", "/proxy/targets/*/auth", "oauth")
        self.assertEqual(self.both(None, FORGED), [401, 401])
        self.assertEqual(self.both(self.alice, FORGED), [403, 401])
