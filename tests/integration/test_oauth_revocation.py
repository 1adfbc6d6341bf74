"""Revocation propagation between two daemons' mirrors on one real redis-server (MCP-17).

Daemon A serves the OAuthServer on a real loopback port over its own RedisStorage;
daemon B is a second storage connection with its own Mirror and verifier, as another
``twistd oauthproxy`` on the same Redis would have.  A token minted by A verifies at B;
once the client revokes it at A's ``/revoke`` over HTTP, B refuses it within a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlencode

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.server import Site

from oauthproxy.oauth.github import GitHubApp, GitHubClient
from oauthproxy.oauth.keys import ensure_signing_key
from oauthproxy.oauth.records import TokenFamily, UserIdentity
from oauthproxy.oauth.resource_http import OAuthSettings
from oauthproxy.oauth.server import OAuthServer
from oauthproxy.oauth.verifier import SnapshotVerifier
from oauthproxy.storage.crypto import SecretBox
from oauthproxy.storage.mirror import Mirror
from oauthproxy.storage.redis import RedisStorage, connect_storage
from tests.oauth.samples import public_client
from tests.support.redis import RedisServer

ISSUER = "https://auth.example.test"
#: the propagation budget of MCP-17
BUDGET = 1.0
FORM: dict[bytes | str, bytes | str] = {"Content-Type": "application/x-www-form-urlencoded"}


def sleep(seconds: float) -> Deferred[None]:
    """Wait on the real reactor."""
    return deferLater(reactor, seconds, lambda: None)


async def within(seconds: float, condition: Callable[[], bool]) -> float:
    """Poll ``condition``; the seconds it took, or AssertionError after ``seconds``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"condition not met within {seconds} s")
        await sleep(0.01)
    return time.monotonic() - start


class RevocationPropagationTests(TestCase):
    """Two mirrors on one Redis: a revocation at A is honoured at B."""

    def setUp(self) -> None:
        """A private redis-server and a shared secret box (one deployment)."""
        self.server = RedisServer.for_test(self)
        self.box = SecretBox.generate()

    def connect(self) -> RedisStorage:
        """A storage connection (one daemon's), closed at the end."""
        storage = connect_storage(self.server.address(), self.box, 5.0, reactor)
        self.addCleanup(storage.close)
        return storage

    async def mirror(self, storage: RedisStorage) -> Mirror:
        """A loaded, running mirror, stopped at the end."""
        mirror = Mirror(storage, reactor, block=0.5, initial_delay=0.1, max_delay=1.0)
        mirror.startService()
        self.addCleanup(mirror.stopService)
        await mirror.when_loaded()
        return mirror

    async def test_revoked_token_is_refused_by_the_other_daemon_within_a_second(self) -> None:
        """MCP-17: /revoke at daemon A; daemon B's in-memory verifier refuses within 1 s."""
        storage_a, storage_b = self.connect(), self.connect()
        key = await ensure_signing_key(
            storage_a.oauth, self.box, configured_pem_b64=None, now=reactor.seconds()
        )
        mirror_a, mirror_b = await self.mirror(storage_a), await self.mirror(storage_b)
        app = GitHubApp("gh", "secret", base_url="http://127.0.0.1:1", api_url="http://127.0.0.1:1")
        pool = HTTPConnectionPool(reactor, persistent=False)  # type: ignore[no-untyped-call]
        self.addCleanup(pool.closeCachedConnections)
        http = HTTPClient(Agent(reactor, pool=pool))  # type: ignore[no-untyped-call]
        server = OAuthServer(
            OAuthSettings(issuer=ISSUER, github=app, secret=b"k" * 32),
            storage_a.oauth,
            mirror_a,
            reactor,
            GitHubClient(http, app, reactor),
            key,
        )
        endpoint = TCP4ServerEndpoint(  # type: ignore[no-untyped-call]
            reactor, 0, interface="127.0.0.1"
        )
        site = Site(server.resource())  # type: ignore[no-untyped-call]
        port = await endpoint.listen(site)  # type: ignore[no-untyped-call]
        self.addCleanup(port.stopListening)
        client = public_client()
        await storage_a.oauth.put_client(client)
        family = TokenFamily(
            family_id="fam",
            client_id=client.client_id,
            user=UserIdentity(subject="1", username="alice"),
            scopes=(),
            audience=(ISSUER,),
            created_at=reactor.seconds(),
        )
        token, _ = await server.mint(family, (), (ISSUER,))
        verifier_b = SnapshotVerifier(mirror_b, reactor, ISSUER)
        await within(5.0, lambda: verifier_b.verify(token) is not None)
        response = await http.post(
            f"http://127.0.0.1:{port.getHost().port}/revoke",
            data=urlencode({"token": token, "client_id": client.client_id}).encode(),
            headers=FORM,
        )
        await response.content()
        self.assertEqual(response.code, 200)
        took = await within(BUDGET, lambda: verifier_b.verify(token) is None)
        self.assertLess(took, BUDGET)
