"""The authorization server's RS256 signing keys, shared by every daemon through the store.

:func:`ensure_signing_key` runs once at start.  With ``OAUTH_JWT_PRIVATE_KEY_B64`` the
configured key signs and only its public half is published.  Without it, the daemons
agree on one generated key: the active stored key with a sealed private half
(:func:`active_record`); if there is none, this daemon generates one, seals it with the
storage SecretBox (bound to its kid) and stores it, then reads back the winner, so two
daemons racing at their first start converge (the oldest initial key wins).  Every
published key is a mirrored ``oauth_signing_key`` record, so each daemon verifies tokens
against the key set in its snapshot (:mod:`.verifier`).

Rotation (:func:`rotate_signing_key`, ``oauthproxyctl oauth keys rotate``) publishes the
next key at once but lets it sign only from ``activates_at`` on, so that caches of the
JWKS learn it first; the keys it replaces retire once the longest-lived token they
signed has expired (``retires_at``): from then on they are left out of the JWKS and
tokens signed with them are refused (:func:`verification_records`).  Each daemon signs
with the active key of its snapshot at that moment, so they switch together.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable

from attrs import evolve
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


def retired(record: OAuthSigningKey, now: float) -> bool:
    """Whether verifiers have stopped accepting ``record``'s key."""
    return 0 < record.retires_at <= now


def verification_records(records: Iterable[OAuthSigningKey], now: float) -> list[OAuthSigningKey]:
    """The published keys tokens may be signed with: all but the retired, by kid."""
    return sorted((r for r in records if not retired(r, now)), key=lambda r: r.kid)


def active_record(records: Iterable[OAuthSigningKey], now: float) -> OAuthSigningKey | None:
    """The stored key that signs now: activated, not retired, the latest activated.

    Initial keys (``activates_at`` 0) tie; the oldest wins, so that daemons racing at
    their first start agree.
    """
    usable = [
        r for r in records if r.sealed_private_key and r.activates_at <= now and not retired(r, now)
    ]
    if not usable:
        return None
    return min(usable, key=lambda r: (-r.activates_at, r.created_at, r.kid))


def key_state(record: OAuthSigningKey, active: OAuthSigningKey | None, now: float) -> str:
    """``next``, ``active``, ``retiring``, ``retired`` or ``published`` (a configured key's)."""
    if retired(record, now):
        return "retired"
    if active is not None and record.kid == active.kid:
        return "active"
    if record.activates_at > now:
        return "next"
    if record.retires_at > now:
        return "retiring"
    return "published"


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
    winner = active_record(await store.signing_keys.list(), now)
    if winner is None:
        await _publish(store, signing_key_record(generate(), box=box, now=now))
        winner = active_record(await store.signing_keys.list(), now)
        assert winner is not None, "the key just published is active"
    return private_key_of(winner, box)


#: seconds clients may cache ``/jwks``: a rotated-in key is published this long before it
#: signs, by default
JWKS_MAX_AGE = 300


class RotationRefused(Conflict):
    """The signing key cannot be rotated now (a configured key, a pending rotation)."""


async def rotate_signing_key(
    store: IOAuthStore,
    box: SecretBox,
    *,
    now: float,
    activate_in: float,
    token_lifetime: float,
    generate: Callable[[], RSAKey] = generate_signing_key,
) -> OAuthSigningKey:
    """Publish a next key, active ``activate_in`` seconds from now; retire the others.

    The keys it replaces retire ``token_lifetime`` seconds after it activates: the
    tokens they signed have expired by then.  Returns the new key's record.
    """
    stored: list[OAuthSigningKey] = await store.signing_keys.list()
    live = verification_records(stored, now)
    if any(not r.sealed_private_key for r in live):
        raise RotationRefused(
            "the signing key comes from OAUTH_JWT_PRIVATE_KEY_B64: change that setting to rotate it"
        )
    pending = [r for r in live if r.activates_at > now]
    if pending:
        raise RotationRefused(
            f"key {pending[0].kid} is already published and becomes active at "
            f"{pending[0].activates_at:.0f}; rotate again after that"
        )
    record = evolve(
        signing_key_record(generate(), box=box, now=now), activates_at=now + activate_in
    )
    await store.signing_keys.create(record)
    retire_at = record.activates_at + token_lifetime
    for old in live:
        if old.retires_at == 0 or old.retires_at > retire_at:
            await store.signing_keys.update(evolve(old, retires_at=retire_at))
    return record
