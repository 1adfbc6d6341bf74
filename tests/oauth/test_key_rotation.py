"""Signing-key rotation: the next key published first, the old one retired after its tokens.

``oauthproxyctl oauth keys rotate`` (issue 11): a new key is in the JWKS at once but signs
only from its activation on; the keys it replaces are refused once every token they
signed has expired (``retires_at``), even a token whose own expiry says otherwise.
"""

from __future__ import annotations

from typing import Any

from attrs import evolve
from joserfc import jws
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.model import OAuthSigningKey
from oauthproxy.oauth.errors import InvalidToken
from oauthproxy.oauth.keys import (
    RotationRefused,
    active_record,
    ensure_signing_key,
    key_state,
    rotate_signing_key,
)
from oauthproxy.oauth.revocation import Revoker
from oauthproxy.oauth.tokens import generate_signing_key, key_to_pem_b64, mint_access_token
from oauthproxy.oauth.verifier import SnapshotVerifier
from oauthproxy.storage.crypto import SecretBox
from oauthproxy.storage.mirror import Mirror
from oauthproxy.testing import MemoryStorage
from tests.oauth.samples import other_signing_key, signing_key
from tests.oauth.server_harness import RESOURCE, OAuthHarness

ISSUER = "https://auth.example.test"
NOW = 1_750_000_000.0


def record(kid: str, **fields: Any) -> OAuthSigningKey:
    """A sealed key record (the seal is not opened here)."""
    return OAuthSigningKey(kid=kid, public_jwk="{}", sealed_private_key="sealed", **fields)


def kid_of(token: str) -> str:
    """The ``kid`` in a JWT's header."""
    return str(jws.extract_compact(token.encode()).protected["kid"])


class SelectionTests(SynchronousTestCase):
    """Which key signs, and what each key's state is (pure)."""

    def test_oldest_initial_key_signs(self) -> None:
        """Daemons racing at their first start agree: the oldest initial key."""
        keys = [record("b", created_at=2.0), record("a", created_at=1.0)]
        self.assertEqual(active_record(keys, NOW).kid, "a")  # type: ignore[union-attr]

    def test_rotated_key_signs_once_active(self) -> None:
        """The next key signs from its activation on, not before."""
        keys = [record("old", created_at=1.0), record("new", created_at=2.0, activates_at=NOW)]
        self.assertEqual(active_record(keys, NOW - 1).kid, "old")  # type: ignore[union-attr]
        self.assertEqual(active_record(keys, NOW).kid, "new")  # type: ignore[union-attr]

    def test_retired_and_configured_keys_never_sign(self) -> None:
        """A retired key, or one without a sealed private half, is never chosen."""
        keys = [record("old", retires_at=NOW), evolve(record("conf"), sealed_private_key="")]
        self.assertIsNone(active_record(keys, NOW))

    def test_states(self) -> None:
        """next, active, retiring, retired, published."""
        old = record("old", retires_at=NOW + 10)
        new = record("new", activates_at=NOW + 5)
        active = active_record([old, new], NOW)
        self.assertEqual([key_state(r, active, NOW) for r in (old, new)], ["active", "next"])
        active = active_record([old, new], NOW + 5)
        self.assertEqual(
            [key_state(r, active, NOW + 5) for r in (old, new)], ["retiring", "active"]
        )
        self.assertEqual(key_state(old, None, NOW + 10), "retired")
        configured = evolve(record("c"), sealed_private_key="")
        self.assertEqual(key_state(configured, None, NOW), "published")


class RotationTests(SynchronousTestCase):
    """rotate_signing_key over the memory store, with the verifier on a live mirror."""

    def setUp(self) -> None:
        """A store with its first generated key."""
        self.clock = Clock()
        self.clock.advance(NOW)
        self.storage = MemoryStorage(self.clock)
        self.box = SecretBox.generate()
        self.first = self.complete(
            ensure_signing_key(
                self.storage.oauth,
                self.box,
                configured_pem_b64=None,
                now=NOW,
                generate=signing_key,
            )
        )
        self.mirror = Mirror(self.storage, self.clock)
        self.mirror.startService()
        self.addCleanup(self.mirror.stopService)
        self.verifier = SnapshotVerifier(self.mirror, self.clock, ISSUER)

    def complete(self, coroutine: Any) -> Any:
        """Run ``coroutine`` to completion."""
        return self.successResultOf(Deferred.fromCoroutine(coroutine))

    def rotate(
        self, activate_in: float = 60.0, lifetime: float = 600.0, generate: Any = other_signing_key
    ) -> OAuthSigningKey:
        """Rotate to the key ``generate`` makes."""
        result: OAuthSigningKey = self.complete(
            rotate_signing_key(
                self.storage.oauth,
                self.box,
                now=self.clock.seconds(),
                activate_in=activate_in,
                token_lifetime=lifetime,
                generate=generate,
            )
        )
        return result

    def mint(self, key: Any, lifetime: int = 10_000) -> str:
        """A token signed with ``key``, valid for ``lifetime`` seconds."""
        token, _ = mint_access_token(
            key, issuer=ISSUER, subject="1", username="alice", audience=[ISSUER],
            scopes=[], client_id="c", now=self.clock.seconds(), lifetime=lifetime,
        )  # fmt: skip
        return token

    def test_next_key_is_published_before_it_signs(self) -> None:
        """The JWKS has the next key at once; the old key keeps signing until activation."""
        new = self.rotate(activate_in=60)
        kids = {str(k.kid) for k in self.verifier.public_keys()}
        self.assertEqual(kids, {str(self.first.kid), new.kid})
        records = self.successResultOf(self.storage.oauth.signing_keys.list())
        self.assertEqual(active_record(records, self.clock.seconds()).kid, self.first.kid)  # type: ignore[union-attr]
        self.assertEqual(active_record(records, NOW + 60).kid, new.kid)  # type: ignore[union-attr]

    def test_old_key_retires_after_the_longest_token_lifetime(self) -> None:
        """retires_at = activation + lifetime; then its tokens are refused, still unexpired."""
        new = self.rotate(activate_in=60, lifetime=600)
        [old] = [
            r for r in self.successResultOf(self.storage.oauth.signing_keys.list())
            if r.kid != new.kid
        ]  # fmt: skip
        self.assertEqual(old.retires_at, NOW + 60 + 600)
        token = self.mint(self.first, lifetime=10_000)
        self.clock.advance(659)
        self.assertIsNotNone(self.verifier.verify(token))
        self.clock.advance(1)
        with self.assertRaises(InvalidToken):
            self.verifier.check(token, None)
        self.assertEqual({str(k.kid) for k in self.verifier.public_keys()}, {new.kid})

    def test_second_rotation_waits_for_the_first(self) -> None:
        """A pending next key: another rotation is refused, naming it."""
        new = self.rotate(activate_in=60)
        refused = self.failureResultOf(
            Deferred.fromCoroutine(
                rotate_signing_key(
                    self.storage.oauth, self.box, now=NOW, activate_in=0, token_lifetime=1
                )
            ),
            RotationRefused,
        )
        self.assertIn(new.kid, refused.value.detail)
        self.clock.advance(60)
        self.assertEqual(self.rotate(generate=generate_signing_key).activates_at, NOW + 120)

    def test_configured_key_is_rotated_in_its_setting(self) -> None:
        """A key from OAUTH_JWT_PRIVATE_KEY_B64 cannot be rotated from the API."""
        storage = MemoryStorage(self.clock)
        configured = generate_signing_key()
        self.complete(
            ensure_signing_key(
                storage.oauth,
                self.box,
                configured_pem_b64=key_to_pem_b64(configured),
                now=NOW,
            )
        )
        refused = self.failureResultOf(
            Deferred.fromCoroutine(
                rotate_signing_key(
                    storage.oauth, self.box, now=NOW, activate_in=0, token_lifetime=1
                )
            ),
            RotationRefused,
        )
        self.assertIn("OAUTH_JWT_PRIVATE_KEY_B64", refused.value.detail)

    def test_restart_after_rotation_signs_with_the_active_key(self) -> None:
        """A daemon starting after the activation picks the new key, not the oldest."""
        new = self.rotate(activate_in=60)
        self.clock.advance(60)
        key = self.complete(
            ensure_signing_key(
                self.storage.oauth, self.box, configured_pem_b64=None, now=self.clock.seconds()
            )
        )
        self.assertEqual(str(key.kid), new.kid)

    def test_reaper_deletes_retired_keys(self) -> None:
        """Retired keys leave the store (and so every daemon's snapshot)."""
        new = self.rotate(activate_in=0, lifetime=10)
        self.clock.advance(10)
        counts = self.complete(Revoker(self.storage.oauth, self.clock).reap())
        self.assertEqual(counts["signing_keys"], 1)
        records = self.successResultOf(self.storage.oauth.signing_keys.list())
        self.assertEqual([r.kid for r in records], [new.kid])


class ServerRotationTests(SynchronousTestCase):
    """The authorization server signs with whatever key is active now."""

    def test_tokens_switch_to_the_new_key_at_activation(self) -> None:
        """Before activation: the old kid; after: the new one, on the same running server."""
        h = OAuthHarness(self)
        h.add_proxy("mcp.example.test")

        def token() -> str:  # a new client each time: a fresh consent page
            client_id = h.register(client_name=f"c{h.clock.seconds()}")["client_id"]
            value: str = h.tokens(client_id, resource=RESOURCE)["access_token"]
            return value

        before = token()
        new = Deferred.fromCoroutine(
            rotate_signing_key(
                h.storage.oauth,
                h.box,
                now=h.clock.seconds(),
                activate_in=30,
                token_lifetime=1800,
                generate=other_signing_key,
            )
        )
        kid = self.successResultOf(new).kid
        h.clock.advance(1)
        pending = token()
        h.clock.advance(30)
        after = token()
        self.assertEqual(kid_of(before), kid_of(pending))
        self.assertEqual(kid_of(after), kid)
        for token in (before, after):
            self.assertIsNotNone(h.server.verifier.verify(token))
