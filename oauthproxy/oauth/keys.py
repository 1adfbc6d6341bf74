"""The authorization server's RS256 signing key, shared by every daemon through the store.

:func:`ensure_signing_key` runs once at start.  With ``OAUTH_JWT_PRIVATE_KEY_B64`` the
configured key signs and only its public half is published.  Without it, the daemons
agree on one generated key: the oldest stored key with a sealed private half wins; if
there is none, this daemon generates one, seals it with the storage SecretBox (bound to
its kid) and stores it, then reads back the winner, so two daemons racing at their first
start converge.  Every published key is a mirrored ``oauth_signing_key`` record, so each
daemon verifies tokens against the key set in its snapshot (:mod:`.verifier`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable

from joserfc.jwk import RSAKey

from oauthproxy.errors import Conflict
from oauthproxy.interfaces import IOAuthStore
from oauthproxy.model import OAuthSigningKey
from oauthproxy.oauth.tokens import (
    generate_signing_key,
    load_signing_key,
    public_key_from_jwk,
)
from oauthproxy.storage.crypto import SecretBox


def signing_key_record(key: RSAKey, *, box: SecretBox | None, now: float) -> OAuthSigningKey:
    """The record publishing ``key`` (its private half sealed when ``box`` is given)."""
    kid = str(key.kid)
    sealed = "" if box is None else box.seal(key.as_pem(private=True).decode("ascii"), kid)
    return OAuthSigningKey(
        kid=kid,
        public_jwk=json.dumps(key.as_dict(private=False), sort_keys=True),
        sealed_private_key=sealed,
        created_at=now,
    )


def private_key_of(record: OAuthSigningKey, box: SecretBox) -> RSAKey:
    """The signing key sealed in ``record``."""
    pem = box.open(record.sealed_private_key, record.kid)
    key = RSAKey.import_key(pem, parameters={"use": "sig", "alg": "RS256"})
    key.ensure_kid()
    return key


def public_keys(records: Iterable[OAuthSigningKey]) -> list[RSAKey]:
    """The verification keys of the published records."""
    return [public_key_from_jwk(json.loads(r.public_jwk)) for r in records]


async def _publish(store: IOAuthStore, record: OAuthSigningKey) -> None:
    """Create the record; an existing one under the same kid is the same key."""
    with contextlib.suppress(Conflict):
        await store.signing_keys.create(record)


async def ensure_signing_key(
    store: IOAuthStore,
    box: SecretBox,
    *,
    configured_pem_b64: str | None,
    now: float,
    generate: Callable[[], RSAKey] = generate_signing_key,
) -> RSAKey:
    """The key this daemon signs with; published in the store for every verifier."""
    if configured_pem_b64:
        key = load_signing_key(configured_pem_b64)
        await _publish(store, signing_key_record(key, box=None, now=now))
        return key
    stored: list[OAuthSigningKey] = await store.signing_keys.list()
    sealed = [r for r in stored if r.sealed_private_key]
    if not sealed:
        await _publish(store, signing_key_record(generate(), box=box, now=now))
        stored = await store.signing_keys.list()
        sealed = [r for r in stored if r.sealed_private_key]
    winner = min(sealed, key=lambda r: (r.created_at, r.kid))
    return private_key_of(winner, box)
