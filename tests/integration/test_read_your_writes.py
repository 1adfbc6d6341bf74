"""Read-your-writes on the daemon that accepted the write (issue 10, defect 12).

When the admin API answers 2xx, the answering daemon's authentication, routing table
and certificate map already hold the change: a script may create and use at once,
without polling.  Each test creates and uses in a loop against a real
``twistd oauthproxy`` (embedded redis-server): before the fix most of these uses
failed because the change became live only when the daemon's own event came back
from Redis.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from oauthproxy.bootstrap import open_storage
from oauthproxy.config import Config
from tests.integration.test_gateway_daemon import start_gateway
from tests.support.backends import start_backend
from tests.support.tls import TestAuthority, probe_tls

#: repetitions: the race lost most of the time before the fix, so a few dozen tries show it
ROUNDS = 30


class ReadYourWritesTests(TestCase):
    """Create (or change) through the API, then use at once, many times over."""

    timeout = 180
    #: extra ``twistd oauthproxy`` arguments (the workers' suite runs these with --workers 2)
    daemon_args: tuple[str, ...] = ()
    #: repetitions of each create-and-use
    rounds = ROUNDS

    async def test_new_api_token_authenticates_at_once(self) -> None:
        """A token returned by ``POST /tokens/`` is accepted by the very next request."""
        gateway = await start_gateway(self, self.daemon_args)
        refused = []
        for n in range(self.rounds):
            code, body = await gateway.api(
                "POST", "/tokens/", {"name": f"t{n}", "owner_email": "ops@example.com"}
            )
            self.assertEqual(code, 201, body)
            status, _ = await gateway.daemon.get(f"/tokens/t{n}", token=body["token"])
            if status != 200:
                refused.append((n, status))
        self.assertEqual(refused, [], f"{len(refused)} of {self.rounds} new tokens refused")

    async def test_deleted_api_token_is_refused_at_once(self) -> None:
        """A token deleted with ``DELETE /tokens/{name}`` is refused by the next request."""
        gateway = await start_gateway(self, self.daemon_args)
        admitted = []
        for n in range(self.rounds):
            code, body = await gateway.api(
                "POST", "/tokens/", {"name": f"d{n}", "owner_email": "ops@example.com"}
            )
            self.assertEqual(code, 201, body)
            code, _ = await gateway.api("DELETE", f"/tokens/d{n}")
            self.assertEqual(code, 204)
            status, _ = await gateway.daemon.get(f"/tokens/d{n}", token=body["token"])
            if status != 401:
                admitted.append((n, status))
        self.assertEqual(admitted, [], f"{len(admitted)} of {self.rounds} deleted tokens admitted")

    async def test_new_proxy_serves_the_next_request(self) -> None:
        """A proxy created with ``POST /proxy/targets/`` routes the very next request."""
        gateway = await start_gateway(self, self.daemon_args)
        backend = await start_backend(self, reactor)
        missed = []
        for n in range(self.rounds):
            host = f"p{n}.test"
            code, body = await gateway.api(
                "POST",
                "/proxy/targets/",
                {"hostname": host, "target_url": backend.url, "enable_https": False},
            )
            self.assertEqual(code, 201, body)
            status = await gateway.get(host)
            if status != 200:
                missed.append((host, status))
        self.assertEqual(missed, [], f"{len(missed)} of {self.rounds} new proxies not served")

    async def test_new_route_is_followed_by_the_next_request(self) -> None:
        """A route created with ``POST /routes/`` sends the very next request to its target."""
        gateway = await start_gateway(self, self.daemon_args)
        default, routed = await start_backend(self, reactor), await start_backend(self, reactor)
        code, body = await gateway.api(
            "POST",
            "/proxy/targets/",
            {"hostname": "routed.test", "target_url": default.url, "enable_https": False},
        )
        self.assertEqual(code, 201, body)
        missed = []
        for n in range(self.rounds):
            code, body = await gateway.api(
                "POST",
                "/routes/",
                {"path_pattern": f"/r{n}/", "target_type": "url", "target_value": routed.url},
            )
            self.assertEqual(code, 201, body)
            seen = len(routed.state.requests)
            self.assertEqual(await gateway.get("routed.test", f"/r{n}/x"), 200)
            if len(routed.state.requests) == seen:
                missed.append(n)
        self.assertEqual(missed, [], f"{len(missed)} of {self.rounds} new routes not followed")

    async def test_attached_certificate_is_presented_by_the_next_handshake(self) -> None:
        """``POST /proxy/targets/{h}/cert`` switches the very next handshake's certificate;
        ``DELETE /certificates/{name}`` stops serving it at once."""
        gateway = await start_gateway(self, self.daemon_args)
        authority = TestAuthority.create()
        storage = open_storage(Config(data_dir=gateway.daemon.data_dir), reactor)
        self.addCleanup(storage.close)
        for which in ("a", "b"):
            await storage.certificates.create(
                authority.issue("secure.test", cert_name=f"cert-{which}", common_name=which)
            )
        code, body = await gateway.api(
            "POST", "/proxy/targets/", {"hostname": "secure.test", "target_url": "http://x.test"}
        )
        self.assertEqual(code, 201, body)
        wrong = []
        for n in range(self.rounds):
            which = "ab"[n % 2]
            code, body = await gateway.api(
                "POST", "/proxy/targets/secure.test/cert", {"cert_name": f"cert-{which}"}
            )
            self.assertEqual(code, 200, body)
            outcome = await probe_tls(reactor, gateway.https_port, "secure.test")
            if outcome.common_name != which:
                wrong.append((n, which, outcome.common_name))
        self.assertEqual(
            wrong, [], f"{len(wrong)} of {self.rounds} handshakes had the old certificate"
        )
        code, _ = await gateway.api(
            "POST", "/proxy/targets/secure.test/cert", {"cert_name": "cert-a"}
        )
        self.assertEqual(code, 200)
        code, _ = await gateway.api("DELETE", "/certificates/cert-a")
        self.assertEqual(code, 204)
        outcome = await probe_tls(reactor, gateway.https_port, "secure.test")
        self.assertEqual(outcome.common_name, "b")
