"""Signing keys shared through the store, the snapshot verifier, wiring and the reaper."""

from __future__ import annotations

from typing import Any, cast

from attrs import evolve
from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.config import Config
from oauthproxy.errors import ConfigError
from oauthproxy.model import OAuthRevocation
from oauthproxy.oauth.keys import ensure_signing_key
from oauthproxy.oauth.resource_setup import build_oauth_server, issuer_of
from oauthproxy.oauth.revocation import ReaperService, Revoker
from oauthproxy.oauth.tokens import generate_signing_key, key_to_pem_b64, mint_access_token
from oauthproxy.oauth.verifier import SnapshotVerifier
from oauthproxy.storage.crypto import SecretBox
from oauthproxy.storage.mirror import Mirror
from oauthproxy.testing import MemoryStorage
from tests.oauth.samples import public_client, signing_key

ISSUER = "https://auth.example.test"


class KeyTests(SynchronousTestCase):
    """ensure_signing_key over the memory store."""

    def setUp(self) -> None:
        """An empty store and a box."""
        self.clock = Clock()
        self.storage = MemoryStorage(self.clock)
        self.box = SecretBox.generate()

    def ensure(self, pem_b64: str | None = None, generate: Any = signing_key) -> Any:
        """Run ensure_signing_key to completion."""
        return self.successResultOf(
            Deferred.fromCoroutine(
                ensure_signing_key(
                    self.storage.oauth,
                    self.box,
                    configured_pem_b64=pem_b64,
                    now=self.clock.seconds(),
                    generate=generate,
                )
            )
        )

    def test_configured_key_publishes_only_its_public_half(self) -> None:
        """OAUTH_JWT_PRIVATE_KEY_B64 signs; the record holds no private key."""
        configured = generate_signing_key()
        key = self.ensure(key_to_pem_b64(configured))
        [record] = self.successResultOf(self.storage.oauth.signing_keys.list())
        self.assertEqual((key.kid, record.kid), (configured.kid, configured.kid))
        self.assertEqual(record.sealed_private_key, "")

    def test_generated_key_is_sealed_at_rest(self) -> None:
        """A generated key is stored encrypted, never as a PEM."""
        self.ensure()
        [record] = self.successResultOf(self.storage.oauth.signing_keys.list())
        self.assertTrue(record.sealed_private_key.startswith("v1."))
        self.assertNotIn("PRIVATE KEY", record.sealed_private_key)

    def test_second_daemon_uses_the_stored_key(self) -> None:
        """Daemons converge: a later start signs with the key already stored."""
        first = self.ensure()
        second = self.ensure(generate=generate_signing_key)
        self.assertEqual(first.kid, second.kid)


class VerifierTests(SynchronousTestCase):
    """SnapshotVerifier reads keys and revocations from the mirror."""

    def setUp(self) -> None:
        """A mirror over a store holding the sample key."""
        self.clock = Clock()
        self.clock.advance(1_750_000_000)
        self.storage = MemoryStorage(self.clock)
        self.successResultOf(
            Deferred.fromCoroutine(
                ensure_signing_key(
                    self.storage.oauth,
                    SecretBox.generate(),
                    configured_pem_b64=None,
                    now=self.clock.seconds(),
                    generate=signing_key,
                )
            )
        )
        self.mirror = Mirror(self.storage, self.clock)
        self.mirror.startService()
        self.addCleanup(self.mirror.stopService)
        self.verifier = SnapshotVerifier(self.mirror, self.clock, ISSUER)

    def mint(self, key: Any = None, issuer: str = ISSUER) -> tuple[str, str]:
        """A token valid for 60 s: ``(token, jti)``."""
        token, claims = mint_access_token(
            key or signing_key(),
            issuer=issuer,
            subject="1",
            username="alice",
            audience=("https://mcp.example.test",),
            scopes=("read",),
            client_id="c",
            now=self.clock.seconds(),
            lifetime=60,
        )
        return token, claims.jti

    def test_valid_token_gives_claims(self) -> None:
        """A token of ours verifies to its claims."""
        claims = self.verifier.verify(self.mint()[0])
        assert claims is not None
        self.assertEqual((claims.username, claims.scopes), ("alice", ("read",)))

    def test_expired_token_is_refused(self) -> None:
        """ATK-21: expiry is checked on the injected clock."""
        token, _ = self.mint()
        self.clock.advance(61)
        self.assertIsNone(self.verifier.verify(token))

    def test_foreign_key_or_issuer_is_refused(self) -> None:
        """A token signed by another key, or with another issuer, is refused."""
        self.assertIsNone(self.verifier.verify(self.mint(key=generate_signing_key())[0]))
        self.assertIsNone(self.verifier.verify(self.mint(issuer="https://evil.test")[0]))

    def test_audience_is_enforced_when_asked(self) -> None:
        """ATK-21: a verifier bound to another resource refuses the token."""
        other = SnapshotVerifier(self.mirror, self.clock, ISSUER, "https://other.example.test")
        self.assertIsNone(other.verify(self.mint()[0]))

    def test_revocation_applies_through_the_mirror(self) -> None:
        """MCP-17: once the revocation event is mirrored, the token is refused."""
        token, jti = self.mint()
        revocation = OAuthRevocation(jti=jti, expires_at=self.clock.seconds() + 60)
        self.successResultOf(self.storage.oauth.revocations.create(revocation))
        self.assertIsNone(self.verifier.verify(token))


class WiringTests(SynchronousTestCase):
    """Issuer from configuration and the reaper service."""

    def test_issuer_defaults_to_the_auth_host(self) -> None:
        """ATK-8: the issuer comes from BASE_DOMAIN when not configured."""
        self.assertEqual(issuer_of(Config(base_domain="example.com")), "https://auth.example.com")

    def test_derived_issuer_carries_the_public_https_port(self) -> None:
        """MCP-3, ATK-8: https://auth.<BASE_DOMAIN>:<port> when HTTPS is not on 443."""
        config = Config(base_domain="example.com", https_endpoint="tcp:8443")
        self.assertEqual(issuer_of(config), "https://auth.example.com:8443")
        behind = Config(base_domain="example.com", https_endpoint="tcp:8443", public_https_port=443)
        self.assertEqual(issuer_of(behind), "https://auth.example.com")

    def test_issuer_needs_configuration(self) -> None:
        """Without issuer and base domain the server refuses to start."""
        with self.assertRaises(ConfigError):
            issuer_of(Config())

    def test_reaper_runs_on_the_clock(self) -> None:
        """ATK-28, ATK-37: the reaper drops a never-used DCR client after the interval."""
        clock = Clock()
        storage = MemoryStorage(clock)
        client = evolve(public_client(), client_id_issued_at=0.0)
        self.successResultOf(storage.oauth.put_client(client))
        revoker = Revoker(storage.oauth, clock, client_lifetime=10, unused_client_lifetime=10)
        service = ReaperService(revoker, clock, 30)
        service.startService()
        self.addCleanup(service.stopService)
        clock.advance(30)
        self.assertEqual(self.successResultOf(storage.oauth.list_clients()), [])

    def test_build_oauth_server_from_configuration(self) -> None:
        """The composition root's call: issuer from BASE_DOMAIN, key published, CIMD on."""
        clock = Clock()
        storage = MemoryStorage(clock)
        mirror = Mirror(storage, clock)
        mirror.startService()
        self.addCleanup(mirror.stopService)
        config = Config(base_domain="example.com", github_client_id="gh")
        server = self.successResultOf(
            Deferred.fromCoroutine(
                build_oauth_server(
                    config, storage, mirror, clock, SecretBox.generate(), cast(HTTPClient, None)
                )
            )
        )
        self.assertEqual(server.settings.issuer, "https://auth.example.com")
        self.assertEqual(len(mirror.current.oauth_signing_keys), 1)
        self.assertIsNotNone(server.documents)
