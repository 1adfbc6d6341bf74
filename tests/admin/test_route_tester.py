"""``POST /routes/test``: the gateway's own routing decision for a host, method and path."""

from __future__ import annotations

from typing import Any

from attrs import evolve
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.model import Proxy, Route, RouteAuth
from tests.admin.harness import Harness

HOST = "app.example.com"


class RouteTesterTests(SynchronousTestCase):
    """The decision, the winning route and the candidates, over the current snapshot."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.bob = self.h.add_token("bob")
        self.proxies = {
            HOST: Proxy(HOST, "http://127.0.0.1:8080/base"),
            "bob.example.com": Proxy("bob.example.com", "http://127.0.0.1:9090", owner="bob"),
            "plain.example.com": Proxy(
                "plain.example.com", "http://127.0.0.1:7070", enable_https=False
            ),
        }
        self.routes = {
            "api": Route("api", "/api/", "url", "http://127.0.0.1:8081", priority=80),
            "api-post": Route(
                "api-post",
                "/api/",
                "port",
                "8082",
                priority=90,
                methods=("POST",),
                auth=RouteAuth("admin", override_proxy_auth=True),
            ),
            "bobs": Route(
                "bobs",
                "/b/",
                "url",
                "http://127.0.0.1:8083",
                scope="proxy",
                proxy_hostnames=("bob.example.com",),
                owner="bob",
            ),
        }
        self.h.snapshots.current = evolve(
            self.h.snapshots.current, proxies=self.proxies, routes=self.routes
        )

    def test(self, token: str | None = None, **body: Any) -> dict[str, Any]:
        """POST the body; the 200 answer."""
        answer = self.h.call("POST", "/routes/test", token=token or self.h.admin_token, body=body)
        self.assertEqual(answer.status, 200, answer.body)
        result: dict[str, Any] = answer.json()
        return result

    def test_prefix_route_wins_and_names_the_upstream(self) -> None:
        """GET /api/x goes through route ``api`` to its URL (the POST-only route is skipped)."""
        result = self.test(host=HOST, path="/api/x?q=1")
        self.assertEqual(result["outcome"], "forward")
        self.assertEqual(result["route"]["route_id"], "api")
        self.assertEqual(result["upstream"], "http://127.0.0.1:8081/api/x?q=1")
        self.assertEqual(
            [(c["route_id"], c["matches"]) for c in result["candidates"]],
            [("api-post", False), ("api", True)],
        )

    def test_method_changes_the_winner(self) -> None:
        """POST /api/x is taken by the higher-priority POST route, with its auth override."""
        result = self.test(host=HOST, path="/api/x", method="POST")
        self.assertEqual(result["route"]["route_id"], "api-post")
        self.assertEqual(result["upstream"], "http://127.0.0.1:8082/api/x")
        self.assertEqual(result["auth"]["auth_type"], "admin")

    def test_no_route_means_the_proxy_target_with_its_base_path(self) -> None:
        """A path no route matches goes to the proxy's own target, under its base path."""
        result = self.test(host=HOST, path="/other/../page")
        self.assertEqual(result["outcome"], "forward")
        self.assertIsNone(result["route"])
        self.assertEqual(result["path"], "/page")
        self.assertEqual(result["upstream"], "http://127.0.0.1:8080/base/page")

    def test_plain_http_to_an_https_proxy_is_a_redirect(self) -> None:
        """Scheme http to a proxy with HTTPS: 301 to the https URL."""
        result = self.test(host=HOST, path="/a", scheme="http")
        self.assertEqual((result["outcome"], result["status"]), ("redirect", 301))
        self.assertEqual(result["location"], "https://app.example.com/a")

    def test_unknown_host_is_not_found(self) -> None:
        """A host without a proxy: 404 with the router's reason."""
        result = self.test(host="nope.example.com", path="/")
        self.assertEqual((result["outcome"], result["status"]), ("not_found", 404))
        self.assertIn("nope.example.com", result["reason"])

    def test_scheme_not_served_is_not_found(self) -> None:
        """HTTPS to an HTTP-only proxy is a 404 saying so."""
        result = self.test(host="plain.example.com", path="/")
        self.assertEqual(result["outcome"], "not_found")
        self.assertIn("https", result["reason"])

    def test_refused_path_is_bad_request(self) -> None:
        """An encoded slash is refused as the gateway refuses it."""
        result = self.test(host=HOST, path="/a%2Fb")
        self.assertEqual((result["outcome"], result["status"]), ("bad_request", 400))

    def test_acme_challenge_is_reserved(self) -> None:
        """ACME challenge paths are answered by the responder on every host."""
        result = self.test(host=HOST, path="/.well-known/acme-challenge/tok", scheme="http")
        self.assertEqual(result["outcome"], "acme_challenge")

    def test_other_tokens_host_looks_unknown(self) -> None:
        """Bob testing the admin's host gets the unknown-host answer, no candidates."""
        result = self.test(self.bob, host=HOST, path="/api/x")
        self.assertEqual(result["outcome"], "not_found")
        self.assertEqual(result["candidates"], [])
        self.assertIsNone(result["proxy"])

    def test_admin_global_routes_on_bobs_proxy_are_hidden_from_bob(self) -> None:
        """Bob sees that a global route matched on his proxy, not its target."""
        result = self.test(self.bob, host="bob.example.com", path="/api/x")
        self.assertEqual(result["outcome"], "forward")
        self.assertTrue(result["route"]["hidden"])
        self.assertIsNone(result["route"]["route"])
        own = self.test(self.bob, host="bob.example.com", path="/b/x")
        self.assertEqual(own["route"]["route_id"], "bobs")
        self.assertFalse(own["route"]["hidden"])

    def test_bad_input_is_refused_in_words(self) -> None:
        """A path without a leading slash is a 422 naming the field."""
        answer = self.h.call(
            "POST", "/routes/test", token=self.h.admin_token, body={"host": HOST, "path": "x"}
        )
        error = self.h.assert_error(answer, 422, "invalid_input", "/path")
        self.assertIn("path must be a path that starts with /", error["detail"])

    def test_without_token_is_401(self) -> None:
        """The tester needs a token."""
        answer = self.h.call("POST", "/routes/test", body={"host": HOST, "path": "/"})
        self.h.assert_error(answer, 401, "unauthorized")
