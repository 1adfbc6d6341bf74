"""Tests for the dispatch resource, in memory with StubTreq (no sockets)."""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from oauthproxy.gateway.hosts import GatewayResource
from oauthproxy.gateway.routing import Forward
from oauthproxy.gateway.table import LiveTable
from oauthproxy.model import Proxy, Route, Snapshot
from oauthproxy.requestlog.record import notes_for


class _FakeForwarder:
    """Records forwarded decisions and answers 200 itself."""

    def __init__(self) -> None:
        self.decisions: list[Forward] = []

    def forward(self, request: Any, decision: Forward, scheme: str, host: bytes | None) -> None:
        """Answer at once."""
        self.decisions.append(decision)
        request.write(b"forwarded")
        request.finish()


class _Acme(Resource):
    """Answers the token in ``postpath``."""

    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        """``auth:<token>``."""
        return b"auth:" + request.postpath[0]


PROXIES = {
    "web.example": Proxy(hostname="web.example", target_url="http://10.0.0.1"),
    "plain.example": Proxy(
        hostname="plain.example", target_url="http://10.0.0.2", enable_https=False
    ),
}


def client(
    server_name: str | None = None, **snap: Any
) -> tuple[StubTreq, _FakeForwarder, LiveTable]:
    """A StubTreq over a GatewayResource with a fake forwarder and a fixed SNI name."""
    table = LiveTable()
    table.apply(Snapshot(proxies=PROXIES, **snap))
    forwarder = _FakeForwarder()
    resource = GatewayResource(table, forwarder, _Acme(), lambda request: server_name)  # type: ignore[arg-type]
    return StubTreq(resource), forwarder, table


class DispatchTests(SynchronousTestCase):
    """One outcome per request, rendered."""

    def request(self, stub: StubTreq, method: str, url: str, **kw: Any) -> tuple[int, bytes, Any]:
        """Run a request synchronously and return code, body and headers."""
        response = self.successResultOf(stub.request(method, url, allow_redirects=False, **kw))
        body = self.successResultOf(response.content())
        return response.code, body, response.headers

    def test_forward_goes_to_the_forwarder(self) -> None:
        """A known host over HTTPS is forwarded."""
        stub, forwarder, _ = client()
        code, body, _ = self.request(stub, "GET", "https://web.example/x")
        self.assertEqual((code, body), (200, b"forwarded"))
        self.assertEqual(forwarder.decisions[0].path, b"/x")

    def test_unknown_host_is_404_text(self) -> None:
        """Plain text unless JSON is accepted."""
        stub, _, _ = client()
        code, body, _ = self.request(stub, "GET", "https://nope.example/")
        self.assertEqual(code, 404)
        self.assertTrue(body.startswith(b"not_found:"))

    def test_unknown_host_is_404_json_when_accepted(self) -> None:
        """``Accept: application/json`` gets a JSON error."""
        stub, _, _ = client()
        code, body, _ = self.request(
            stub, "GET", "https://nope.example/", headers={"Accept": "application/json"}
        )
        self.assertEqual((code, json.loads(body)["error"]), (404, "not_found"))

    def test_http_redirects(self) -> None:
        """HTTP to an HTTPS proxy: 301 with the HTTPS location."""
        stub, _, _ = client()
        code, _, headers = self.request(stub, "GET", "http://web.example/a?b")
        self.assertEqual(code, 301)
        self.assertEqual(headers.getRawHeaders(b"location"), [b"https://web.example/a?b"])

    def test_sni_mismatch_is_421(self) -> None:
        """ATK-13: TLS name other.example, Host web.example."""
        stub, _, _ = client(server_name="other.example")
        code, _, _ = self.request(stub, "GET", "https://web.example/")
        self.assertEqual(code, 421)

    def test_connect_is_405(self) -> None:
        """ATK-16: CONNECT is refused."""
        stub, forwarder, _ = client()
        code, _, _ = self.request(stub, "CONNECT", "https://web.example/")
        self.assertEqual(code, 405)
        self.assertEqual(forwarder.decisions, [])

    def test_acme_challenge_reaches_the_responder(self) -> None:
        """The reserved path is handed over with ``postpath == [token]``."""
        stub, _, _ = client()
        code, body, _ = self.request(
            stub, "GET", "http://any.example/.well-known/acme-challenge/t1"
        )
        self.assertEqual((code, body), (200, b"auth:t1"))

    def test_bad_path_is_400(self) -> None:
        """ATK-10: an encoded slash is refused."""
        stub, _, _ = client()
        code, _, _ = self.request(stub, "GET", "https://web.example/a%2Fb")
        self.assertEqual(code, 400)

    def test_route_to_missing_service_is_502(self) -> None:
        """A route naming an unknown service answers 502."""
        stub, _, _ = client(routes={"r": Route("r", "/", "service", "gone")})
        code, _, _ = self.request(stub, "GET", "https://web.example/")
        self.assertEqual(code, 502)

    def test_table_swap_is_live_on_next_request(self) -> None:
        """After ``apply`` the next request sees the new table."""
        stub, _, table = client()
        table.apply(Snapshot())
        code, _, _ = self.request(stub, "GET", "https://web.example/")
        self.assertEqual(code, 404)


class NoiseMarkTests(SynchronousTestCase):
    """The gateway marks its own answers to anonymous requests as request-log noise."""

    def noise_of(self, url: str, **headers: str) -> str | None:
        """The noise reason noted on the request for ``url``."""
        table = LiveTable()
        table.apply(Snapshot(proxies=PROXIES))
        resource = GatewayResource(table, _FakeForwarder(), _Acme(), lambda request: None)  # type: ignore[arg-type]
        seen: list[Any] = []
        render = resource.render

        def spy(request: Any) -> Any:
            seen.append(request)
            return render(request)

        resource.render = spy  # type: ignore[method-assign]
        stub = StubTreq(resource)
        response = self.successResultOf(stub.get(url, headers=headers))
        self.successResultOf(response.content())
        return notes_for(seen[0]).noise

    def test_unknown_host_is_noise(self) -> None:
        """A 404 for a host no proxy serves."""
        self.assertEqual(self.noise_of("http://nope.example/"), "unknown_host")

    def test_forwarded_request_is_not_noise(self) -> None:
        """A request that reached a backend is never noise, whatever it answered."""
        self.assertIsNone(self.noise_of("http://plain.example/"))
