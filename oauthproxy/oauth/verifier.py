"""Access-token verification in memory, from the mirrored keys and revocations.

:class:`SnapshotVerifier` is the :class:`~oauthproxy.interfaces.IAccessTokenVerifier`
of the daemon: it reads the snapshot of :class:`~oauthproxy.interfaces.ISnapshotSource`
(never Redis), so a signing key or a revocation published by any daemon is honoured
here as soon as the mirror applies its event (revocations within a second, MCP-17).
A retired key (:func:`~oauthproxy.oauth.keys.retired`) verifies nothing any more.  The
key set is rebuilt only when the snapshot's key dict or the set of live keys changes.
"""

from __future__ import annotations

from joserfc.jwk import KeySet, RSAKey
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from oauthproxy.interfaces import IAccessTokenVerifier, ISnapshotSource
from oauthproxy.model import Claims, OAuthSigningKey
from oauthproxy.oauth.errors import InvalidToken
from oauthproxy.oauth.keys import public_keys, verification_records
from oauthproxy.oauth.records import AccessTokenClaims
from oauthproxy.oauth.tokens import verify_access_token


@implementer(IAccessTokenVerifier)
class SnapshotVerifier:
    """Verifies our JWT access tokens against the current snapshot."""

    def __init__(
        self,
        snapshots: ISnapshotSource,
        clock: IReactorTime,
        issuer: str,
        audience: str | None = None,
    ) -> None:
        """
        :param issuer: the exact ``iss`` our tokens carry (from configuration).
        :param audience: the canonical resource :meth:`verify` requires, None for any.
        """
        self._snapshots = snapshots
        self._clock = clock
        self._issuer = issuer
        self._audience = audience
        self._source: dict[str, OAuthSigningKey] | None = None
        self._live: tuple[str, ...] = ()
        self._public: list[RSAKey] = []
        self._keys = KeySet([])

    def public_keys(self) -> list[RSAKey]:
        """The public signing keys of the current snapshot (for ``/jwks``)."""
        self.key_set()
        return list(self._public)

    def key_set(self) -> KeySet:
        """The public keys of the current snapshot that are not retired."""
        records: dict[str, OAuthSigningKey] = self._snapshots.current.oauth_signing_keys
        live = verification_records(records.values(), self._clock.seconds())
        kids = tuple(r.kid for r in live)
        if records is not self._source or kids != self._live:
            self._public = public_keys(live)
            self._keys = KeySet(list(self._public))
            self._source, self._live = records, kids
        return self._keys

    def check(self, token: str, audience: str | None) -> AccessTokenClaims:
        """The claims of ``token`` for ``audience`` (None: any); InvalidToken otherwise."""
        keys = self.key_set()
        if not keys.keys:
            raise InvalidToken("no signing key is known yet")
        return verify_access_token(
            token,
            keys,
            issuer=self._issuer,
            audience=audience,
            now=self._clock.seconds(),
            revoked=self._snapshots.current.oauth_revocations,
        )

    def verify(self, token: str) -> Claims | None:
        """The claims of a valid, unexpired, unrevoked token of ours, else None."""
        try:
            claims = self.check(token, self._audience)
        except InvalidToken:
            return None
        return Claims(
            username=claims.username,
            scopes=claims.scopes,
            subject=claims.subject,
            client_id=claims.client_id,
            audience=claims.audience,
        )
