"""Identity headers from clients never reach a backend (issue 10, defect 8).

Through the real daemon: the echo backend reports the headers it received, so what a
client sent and the gateway dropped is checked on the backend's side.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import TestCase

from tests.integration.test_framing import HOST, Gateway
from tests.support.wire import WireClient


class IdentityHeaderTests(TestCase):
    """Defect 8: headers a backend might trust for identity never come from clients."""

    timeout = 120

    async def forwarded(self, gw: Gateway, headers: dict[str, str]) -> dict[str, str]:
        """Send ``headers`` to the echo backend; the headers it received."""
        wire = await WireClient.connect(self, gw.port)
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        answer = await wire.request(f"GET / HTTP/1.1\r\nHost: {HOST}\r\n{lines}\r\n".encode())
        self.assertEqual(answer.status, 200)
        return gw.echoed_headers()

    async def test_names_with_underscores_are_dropped(self) -> None:
        """``X_Remote_User`` could be folded into ``X-Remote-User`` by a backend: dropped."""
        gw = await Gateway().start(self)
        seen = await self.forwarded(gw, {"X_Custom": "1", "X-Custom": "2", "Remote_User": "eve"})
        self.assertEqual(seen.get("x-custom"), "2")
        self.assertNotIn("x_custom", seen)
        self.assertNotIn("remote_user", seen)

    async def test_identity_header_families_are_stripped(self) -> None:
        """Remote-User, oauth2-proxy's, Authelia's, Pomerium's, Traefik forward-auth's..."""
        gw = await Gateway().start(self)
        spoofed = {
            "Remote-User": "eve",
            "X-Remote-User": "eve",
            "Remote-Groups": "admins",
            "Remote-Email": "eve@example.com",
            "Remote-Name": "Eve",
            "X-Auth-Request-User": "eve",
            "X-Auth-Request-Email": "eve@example.com",
            "X-Auth-Request-Access-Token": "t",
            "X-Forwarded-User": "eve",
            "X-Forwarded-Email": "eve@example.com",
            "X-Pomerium-Jwt-Assertion": "x.y.z",
            "X-Pomerium-Claim-Email": "eve@example.com",
            "X-Webauth-User": "eve",
            "X-Authenticated-User": "eve",
        }
        seen = await self.forwarded(gw, {**spoofed, "X-Request-Id": "keep-me"})
        self.assertEqual(seen.get("x-request-id"), "keep-me")
        leaked = sorted(name for name in seen if name in {n.lower() for n in spoofed})
        self.assertEqual(leaked, [])

    async def test_per_proxy_list_strips_more(self) -> None:
        """A proxy's ``strip_request_headers`` removes further names for its backend."""
        gw = await Gateway().start(self)
        code, body = await gw.daemon.post(
            "/proxy/targets/",
            {
                "hostname": "strict.test",
                "target_url": gw.backend.url,
                "enable_https": False,
                "strip_request_headers": ["X-Tenant", "X-Role"],
            },
            token=gw.daemon.admin_token,
        )
        self.assertEqual(code, 201, body)
        wire = await WireClient.connect(self, gw.port)
        answer = await wire.request(
            b"GET / HTTP/1.1\r\nHost: strict.test\r\nX-Tenant: a\r\nX-Role: admin\r\n"
            b"X-Other: kept\r\n\r\n"
        )
        self.assertEqual(answer.status, 200)
        seen: dict[str, Any] = gw.echoed_headers()
        self.assertEqual((seen.get("x-other"), "x-tenant" in seen, "x-role" in seen),
                         ("kept", False, False))  # fmt: skip
