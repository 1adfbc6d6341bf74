# trial is untyped; mypy strict would flag every assertion
# mypy: disable-error-code="no-untyped-call"
"""Tests for :mod:`oauthproxy.gateway.guard_wiring` (no sockets, no store)."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.config import Config
from oauthproxy.gateway.guard_wiring import wire_oauth
from oauthproxy.model import Snapshot
from oauthproxy.oauth.errors import InvalidToken
from tests.gateway.test_guard import FakeSnapshots


class WireOAuthTests(SynchronousTestCase):
    """What the composition root gets from :func:`wire_oauth`."""

    def test_without_issuer_every_token_is_refused(self) -> None:
        """No issuer configured: no server, and ``oauth`` proxies refuse every token."""
        wiring = wire_oauth(Config(), Clock(), FakeSnapshots(Snapshot()))
        self.assertIsNone(wiring.issuer)
        self.assertIsNone(wiring.access_tokens)
        self.assertRaises(InvalidToken, wiring.guard.check_token, "x.y.z", None)

    def test_issuer_host_is_the_auth_host(self) -> None:
        """ATK-8: the auth hostname comes from the configured issuer, never a request."""
        config = Config(oauth_issuer="https://Auth.Example.test")
        wiring = wire_oauth(config, Clock(), FakeSnapshots(Snapshot()))
        self.assertEqual(wiring.issuer, "https://Auth.Example.test")
        self.assertEqual(wiring.guard.auth_hosts, frozenset({"auth.example.test"}))
        self.assertEqual(wiring.guard.issuer, "https://Auth.Example.test")

    def test_base_domain_gives_the_issuer(self) -> None:
        """Without an explicit issuer, ``https://auth.<BASE_DOMAIN>``."""
        wiring = wire_oauth(Config(base_domain="example.test"), Clock(), FakeSnapshots(Snapshot()))
        self.assertEqual(wiring.issuer, "https://auth.example.test")

    def test_close_unsubscribes(self) -> None:
        """Shutdown stops following the snapshot."""
        snapshots = FakeSnapshots(Snapshot())
        wiring = wire_oauth(Config(), Clock(), snapshots)
        self.assertEqual(len(snapshots.listeners), 1)
        wiring.close()
        self.assertEqual(snapshots.listeners, [])
