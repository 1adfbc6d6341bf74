"""Deleting a proxy, and what its routes and certificates become."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.model import Certificate, Proxy, Route
from tests.admin.harness import Harness

HOST = "app.example.com"


class DependentsTests(SynchronousTestCase):
    """``GET …/dependents`` and ``DELETE`` with ``delete_routes``/``delete_certificates``."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.bob = self.h.add_token("bob")
        s = self.h.storage
        for proxy in (
            Proxy(HOST, "http://127.0.0.1:8080"),
            Proxy("other.example.com", "http://127.0.0.1:8081"),
            Proxy("shared.example.com", "http://127.0.0.1:8082", cert_name="wild"),
        ):
            self.successResultOf(s.proxies.create(proxy))
        for route in (
            Route("only", "/a/", "port", "9001", scope="proxy", proxy_hostnames=(HOST,)),
            Route(
                "both",
                "/b/",
                "port",
                "9002",
                scope="proxy",
                proxy_hostnames=(HOST, "other.example.com"),
            ),
            Route("global", "/c/", "port", "9003"),
            Route("elsewhere", "/d/", "port", "9004", scope="proxy", proxy_hostnames=("x.test",)),
        ):
            self.successResultOf(s.routes.create(route))
        for certificate in (
            Certificate("proxy-app-example-com", (HOST,), status="ready"),
            Certificate("wild", ("*.example.com",), status="ready"),
            Certificate("unrelated", ("b.example.org",), status="ready"),
        ):
            self.successResultOf(s.certificates.create(certificate))

    def dependents(self, token: str | None = None) -> Any:
        """The answer of ``GET …/dependents``."""
        answer = self.h.call(
            "GET", f"/proxy/targets/{HOST}/dependents", token=token or self.h.admin_token
        )
        self.assertEqual(answer.status, 200, answer.body)
        return answer.json()

    def test_dependents_say_what_goes_and_what_stays(self) -> None:
        """The lone route and the automatic certificate go; shared ones stay, saying why."""
        found = self.dependents()
        self.assertEqual(
            found["routes"],
            [
                {"route_id": "only", "action": "delete"},
                {"route_id": "both", "action": "unscope"},
            ],
        )
        self.assertEqual(
            found["certificates"],
            [
                {
                    "cert_name": "proxy-app-example-com",
                    "action": "delete",
                    "reason": f"serves only {HOST}",
                },
                {
                    "cert_name": "wild",
                    "action": "keep",
                    "reason": "also serves other.example.com, shared.example.com",
                },
            ],
        )

    def test_plain_delete_removes_the_proxy_only(self) -> None:
        """Without the flags: the proxy goes, its routes and certificate stay."""
        answer = self.h.call("DELETE", f"/proxy/targets/{HOST}", token=self.h.admin_token)
        self.assertEqual(answer.status, 204)
        s = self.h.storage
        self.assertIsNone(self.successResultOf(s.proxies.get(HOST)))
        self.assertIsNotNone(self.successResultOf(s.routes.get("only")))
        self.assertIsNotNone(self.successResultOf(s.certificates.get("proxy-app-example-com")))

    def test_delete_with_dependents_removes_them(self) -> None:
        """With both flags: lone route and lone certificate deleted, shared route unscoped."""
        answer = self.h.call(
            "DELETE",
            f"/proxy/targets/{HOST}?delete_routes=true&delete_certificates=true",
            token=self.h.admin_token,
        )
        self.assertEqual(answer.status, 204, answer.body)
        s = self.h.storage
        self.assertIsNone(self.successResultOf(s.routes.get("only")))
        both = self.successResultOf(s.routes.get("both"))
        assert both is not None
        self.assertEqual(both.proxy_hostnames, ("other.example.com",))
        self.assertIsNotNone(self.successResultOf(s.routes.get("global")))
        self.assertIsNone(self.successResultOf(s.certificates.get("proxy-app-example-com")))
        self.assertIsNotNone(self.successResultOf(s.certificates.get("wild")))
        self.assertIsNotNone(self.successResultOf(s.certificates.get("unrelated")))

    def test_other_tokens_records_are_neither_named_nor_touched(self) -> None:
        """Bob deleting his proxy with dependents leaves the admin's route and certificate."""
        s = self.h.storage
        self.successResultOf(
            s.proxies.create(Proxy("bob.example.com", "http://127.0.0.1:1", owner="bob"))
        )
        self.successResultOf(
            s.routes.create(
                Route(
                    "admins",
                    "/x/",
                    "port",
                    "1",
                    scope="proxy",
                    proxy_hostnames=("bob.example.com",),
                )
            )
        )
        answer = self.h.call("GET", "/proxy/targets/bob.example.com/dependents", token=self.bob)
        self.assertEqual(answer.json()["routes"], [])
        self.assertEqual(answer.json()["certificates"], [])
        self.h.call(
            "DELETE",
            "/proxy/targets/bob.example.com?delete_routes=true&delete_certificates=true",
            token=self.bob,
        )
        self.assertIsNotNone(self.successResultOf(s.routes.get("admins")))
        self.assertIsNotNone(self.successResultOf(s.certificates.get("wild")))

    def test_other_tokens_proxy_is_404(self) -> None:
        """Bob cannot see the admin's proxy's dependents."""
        answer = self.h.call("GET", f"/proxy/targets/{HOST}/dependents", token=self.bob)
        self.h.assert_error(answer, 404, "not_found")
