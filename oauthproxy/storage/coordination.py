"""What daemons sharing one Redis coordinate through: challenges, locks, ACME accounts.

HTTP-01 answers are plain keys with an expiry so any instance can serve them.
Locks are ``SET ... PX`` keys whose value is a fencing token drawn from a
counter that never goes backwards; refresh and release are compare-and-set
scripts, so a holder whose lock expired and was taken cannot touch the new
holder's lock.
"""

from __future__ import annotations

from attrs import define
from twisted.internet.defer import Deferred
from zope.interface import implementer

from oauthproxy.interfaces import IAccountKeyStore, IChallengeStore, ILocks
from oauthproxy.storage.connection import RedisConnection
from oauthproxy.storage.crypto import SecretBox
from oauthproxy.storage.keys import Keys

#: KEYS: lock, fence; ARGV: ttl ms.  Returns the fencing token or nil.
ACQUIRE_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return false
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token, 'PX', ARGV[1])
return token
"""

#: KEYS: lock; ARGV: fencing token, ttl ms.  Returns 1 if still held (and extended).
REFRESH_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

#: KEYS: lock; ARGV: fencing token.  Deletes the lock only if this token holds it.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def milliseconds(seconds: float) -> int:
    """A TTL in whole milliseconds, at least one (Redis rejects zero)."""
    return max(1, round(seconds * 1000))


@implementer(IChallengeStore)
@define
class RedisChallengeStore:
    """HTTP-01 key authorizations under ``challenge:<token>`` with an expiry."""

    connection: RedisConnection
    keys: Keys

    def put(self, token: str, key_authorization: str, ttl: float) -> Deferred[None]:
        """Answer for ``token`` during ``ttl`` seconds."""

        async def put() -> None:
            await self.connection.call(
                "SET", self.keys.challenge(token), key_authorization, "PX", milliseconds(ttl)
            )

        return Deferred.fromCoroutine(put())

    def get(self, token: str) -> Deferred[str | None]:
        """The key authorization for ``token``, or None."""

        async def get() -> str | None:
            value = await self.connection.call("GET", self.keys.challenge(token))
            return None if value is None else str(value)

        return Deferred.fromCoroutine(get())

    def delete(self, token: str) -> Deferred[None]:
        """Stop answering for ``token``."""

        async def delete() -> None:
            await self.connection.call("DEL", self.keys.challenge(token))

        return Deferred.fromCoroutine(delete())


@implementer(ILocks)
@define
class RedisLocks:
    """Locks with a TTL and a fencing token (``lock:<name>``, ``fence:<name>``)."""

    connection: RedisConnection
    keys: Keys

    def acquire(self, name: str, ttl: float) -> Deferred[int | None]:
        """Take the lock for ``ttl`` seconds; its fencing token, or None if it is held."""

        async def acquire() -> int | None:
            token = await self.connection.eval(
                ACQUIRE_SCRIPT, [self.keys.lock(name), self.keys.fence(name)], [milliseconds(ttl)]
            )
            return None if token is None else int(token)

        return Deferred.fromCoroutine(acquire())

    def refresh(self, name: str, fencing_token: int, ttl: float) -> Deferred[bool]:
        """Extend the lock to ``ttl`` seconds from now; False if it was lost."""

        async def refresh() -> bool:
            held = await self.connection.eval(
                REFRESH_SCRIPT, [self.keys.lock(name)], [fencing_token, milliseconds(ttl)]
            )
            return bool(int(held))

        return Deferred.fromCoroutine(refresh())

    def release(self, name: str, fencing_token: int) -> Deferred[None]:
        """Release the lock if ``fencing_token`` still holds it."""

        async def release() -> None:
            await self.connection.eval(RELEASE_SCRIPT, [self.keys.lock(name)], [fencing_token])

        return Deferred.fromCoroutine(release())


@implementer(IAccountKeyStore)
@define
class RedisAccountKeyStore:
    """ACME account keys by directory URL, sealed at rest."""

    connection: RedisConnection
    keys: Keys
    box: SecretBox

    def get(self, directory_url: str) -> Deferred[str | None]:
        """The account key PEM for ``directory_url``, or None."""

        async def get() -> str | None:
            sealed = await self.connection.call("HGET", self.keys.acme_accounts, directory_url)
            return None if sealed is None else self.box.open(sealed, directory_url)

        return Deferred.fromCoroutine(get())

    def put(self, directory_url: str, key_pem: str) -> Deferred[None]:
        """Store or replace the account key for ``directory_url``."""

        async def put() -> None:
            sealed = self.box.seal(key_pem, directory_url)
            await self.connection.call("HSET", self.keys.acme_accounts, directory_url, sealed)

        return Deferred.fromCoroutine(put())
