"""Revoking what the authorization server issued, and reaping what expired.

Revoking an access token publishes an ``oauth_revocation`` record (jti -> the token's
expiry): the event reaches every daemon's mirror, whose verifier then refuses the token
(MCP-17).  Revoking a token family (a reused refresh token, a replayed code, O21-6,
BCP-4, or an operator's order) marks the family revoked, drops its refresh tokens and
revokes every live access token it produced.  :meth:`Revoker.reap` drops expired state,
revocations of tokens that expired anyway, and dynamically registered clients unused
for ``OAUTH_CLIENT_LIFETIME``, or never used for ``OAUTH_UNUSED_CLIENT_LIFETIME``
(ATK-28, ATK-37), and signing keys a rotation retired.
"""

from __future__ import annotations

import contextlib

from attrs import define
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from oauthproxy.errors import Conflict, NotFound, StorageUnavailable
from oauthproxy.interfaces import IOAuthStore
from oauthproxy.model import OAuthAccessToken, OAuthRevocation
from oauthproxy.oauth.keys import retired
from oauthproxy.oauth.registration import client_expired


@define
class Revoker:
    """Revocation and reaping over an :class:`~oauthproxy.interfaces.IOAuthStore`."""

    store: IOAuthStore
    clock: IReactorTime
    #: seconds a dynamically registered client may stay unused after an authorization
    client_lifetime: float = 7776000.0
    #: seconds one that never completed an authorization is kept (ATK-37)
    unused_client_lifetime: float = 86400.0

    async def revoke_access_token(self, record: OAuthAccessToken, reason: str) -> None:
        """Publish the revocation of one access token (harmless if already revoked)."""
        revocation = OAuthRevocation(
            jti=record.jti,
            expires_at=record.expires_at,
            revoked_at=self.clock.seconds(),
            username=record.username,
            client_id=record.client_id,
            reason=reason,
        )
        with contextlib.suppress(Conflict):
            await self.store.revocations.create(revocation)

    async def _revoke_tokens(self, matching: list[OAuthAccessToken], reason: str) -> int:
        """Revoke every live token in ``matching``; how many."""
        now = self.clock.seconds()
        live = [t for t in matching if t.expires_at > now]
        for token in live:
            await self.revoke_access_token(token, reason)
        return len(live)

    async def revoke_family(self, family_id: str, reason: str) -> int:
        """Revoke a token family and its access tokens; how many access tokens."""
        await self.store.revoke_family(family_id, self.clock.seconds())
        tokens = await self.store.list_access_tokens()
        return await self._revoke_tokens([t for t in tokens if t.family_id == family_id], reason)

    async def revoke_where(
        self, *, username: str | None = None, client_id: str | None = None, reason: str
    ) -> dict[str, int]:
        """Revoke every family and access token of a user and/or a client."""

        def matches(user: str, client: str) -> bool:
            return (username is None or user.lower() == username.lower()) and (
                client_id is None or client == client_id
            )

        families = [
            f
            for f in await self.store.list_families()
            if f.revoked_at is None and matches(f.user.username, f.client_id)
        ]
        now = self.clock.seconds()
        for family in families:
            await self.store.revoke_family(family.family_id, now)
        tokens = [
            t for t in await self.store.list_access_tokens() if matches(t.username, t.client_id)
        ]
        revoked = await self._revoke_tokens(tokens, reason)
        return {"families": len(families), "access_tokens": revoked}

    async def reap(self) -> dict[str, int]:
        """Drop expired state, stale revocations, unused dynamic clients, retired keys."""
        now = self.clock.seconds()
        expired = await self.store.reap(now)
        revocations = 0
        for revocation in await self.store.revocations.list():
            if revocation.expires_at <= now:
                with contextlib.suppress(NotFound):
                    await self.store.revocations.delete(revocation.jti)
                    revocations += 1
        clients = 0
        for client in await self.store.list_clients():
            stale_document = client.source == "cimd" and client.cache_expires_at <= now
            expired = client_expired(
                client,
                now=now,
                lifetime=self.client_lifetime,
                unused_lifetime=self.unused_client_lifetime,
            )
            if stale_document or expired:
                clients += int(await self.store.delete_client(client.client_id))
        keys = 0
        for record in await self.store.signing_keys.list():
            if retired(record, now):
                with contextlib.suppress(NotFound):
                    await self.store.signing_keys.delete(record.kid)
                    keys += 1
        return {
            "expired": expired,
            "revocations": revocations,
            "clients": clients,
            "signing_keys": keys,
        }


class ReaperService(Service):
    """Runs :meth:`Revoker.reap` every ``interval`` seconds (every daemon; harmless twice)."""

    log = Logger()

    def __init__(self, revoker: Revoker, clock: IReactorTime, interval: float = 300.0) -> None:
        """Reap with ``revoker`` on ``clock``."""
        self._revoker = revoker
        self._loop = LoopingCall(self._reap)
        self._loop.clock = clock
        self._interval = interval

    async def _reap_once(self) -> None:
        """One pass; a failure is logged and the next pass tries again."""
        try:
            counts = await self._revoker.reap()
        except StorageUnavailable as e:
            self.log.warn("OAuth reaper could not reach the store: {error}", error=e.detail)
            return
        if any(counts.values()):
            self.log.info("OAuth reaper dropped {counts}", counts=counts)

    def _reap(self) -> Deferred[None]:
        """The looping call's function."""
        return Deferred.fromCoroutine(self._reap_once())

    def startService(self) -> None:
        """Start reaping (the first pass after one interval)."""
        super().startService()  # type: ignore[no-untyped-call]
        self._loop.start(self._interval, now=False)

    def stopService(self) -> Deferred[None] | None:
        """Stop reaping; fires when a running pass has finished."""
        super().stopService()  # type: ignore[no-untyped-call]
        if self._loop.running:
            d: Deferred[None] = self._loop.deferred  # type: ignore[assignment]
            self._loop.stop()
            return d.addCallback(lambda _: None)
        return None
