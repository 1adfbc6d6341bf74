"""The OAuth authorization server's state on Redis (:class:`RedisOAuthStore`).

Two kinds are mirrored records with events (``records:oauth_revocation`` and
``records:oauth_signing_key``, through the generic record store), so that every
daemon verifies tokens in memory and refuses a revoked one within a second.  The
rest is operational state that publishes no events::

    <p>oauth:clients               hash   client_id -> OAuthClient JSON
    <p>oauth:client_keys           hash   metadata key -> client_id (idempotent DCR)
    <p>oauth:client_used           hash   client_id -> last use (POSIX seconds)
    <p>oauth:clients_unused        zset   registered clients never used, by registration
                                   time (a full registry evicts the first, ATK-37)
    <p>oauth:initial_tokens        hash   name -> InitialAccessToken JSON (uses: 0)
    <p>oauth:initial_token_hashes  hash   token hash -> name
    <p>oauth:initial_token_uses    hash   name -> registrations made with it
    <p>oauth:code:<hash>           string AuthorizationCode JSON, expires with the code
    <p>oauth:code_used:<hash>      string time of the first redemption, same expiry
    <p>oauth:session:<state>       string LoginSession JSON, expires with the session
    <p>oauth:<coll>, <coll>_exp    hash + sorted set (expiry) for ``families``,
                                   ``refresh`` and ``access`` (reaped by :meth:`reap`)
    <p>oauth:family_refresh:<id>   set    refresh token hashes of a family (expires
                                   with its newest token; revocation drops them all)
    <p>oauth:family_revoked:<id>   string a family revoked before it was stored (expires)

Single use is atomic: codes are marked used by one Lua script, sessions are taken
with ``GETDEL``, a refresh token is rotated by compare-and-set
(:meth:`RedisOAuthStore.replace_refresh`), and a family once revoked stays revoked
whatever a concurrent grant stores (:meth:`RedisOAuthStore.put_family`).
"""

from __future__ import annotations

from typing import TypeVar

from attrs import define, evolve, field
from twisted.internet.defer import Deferred
from zope.interface import implementer

from oauthproxy.interfaces import IOAuthStore
from oauthproxy.model import OAuthAccessToken, OAuthRevocation, OAuthSigningKey
from oauthproxy.oauth.records import (
    FAMILY_TOMBSTONE_LIFETIME,
    AuthorizationCode,
    LoginSession,
    RefreshTokenRecord,
    TokenFamily,
)
from oauthproxy.storage.codec import decode, encode
from oauthproxy.storage.connection import RedisConnection
from oauthproxy.storage.coordination import milliseconds
from oauthproxy.storage.events import STREAM_MAXLEN
from oauthproxy.storage.keys import Keys
from oauthproxy.storage.oauth_clients import ClientRegistry, decode_float
from oauthproxy.storage.records import RedisRecordStore

T = TypeVar("T")

#: KEYS: code, code_used; ARGV: now.  Returns {JSON, previous use or ""} or nil.
REDEEM_SCRIPT = """
local json = redis.call('GET', KEYS[1])
if not json then return nil end
local used = redis.call('GET', KEYS[2])
if not used then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl) end
  used = ''
end
return {json, used}
"""

#: KEYS: hash, expiry set; ARGV: now.  Drops the expired entries; how many.
REAP_SCRIPT = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 1000)
for _, key in ipairs(gone) do
  redis.call('HDEL', KEYS[1], key)
  redis.call('ZREM', KEYS[2], key)
end
return #gone
"""

#: KEYS: families, refresh, refresh_exp, the family's refresh set, its tombstone;
#: ARGV: family_id, JSON or "", tombstone lifetime (ms).  Drops every refresh token of
#: the family; stores the revoked family, or a tombstone when it is not stored yet.
REVOKE_FAMILY_SCRIPT = """
for _, hash in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  redis.call('HDEL', KEYS[2], hash)
  redis.call('ZREM', KEYS[3], hash)
end
redis.call('DEL', KEYS[4])
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
else
  redis.call('SET', KEYS[5], '1', 'PX', ARGV[3])
end
return 0
"""

#: KEYS: families, families_exp, the family's tombstone; ARGV: family_id, JSON, the
#: same family revoked as JSON, expiry.  Stores the family unless it is revoked
#: already; returns the JSON stored.
PUT_FAMILY_SCRIPT = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
local stored = ARGV[2]
if current then
  local revoked = cjson.decode(current)['revoked_at']
  if revoked ~= nil and revoked ~= cjson.null then stored = current end
end
if stored == ARGV[2] and redis.call('EXISTS', KEYS[3]) == 1 then stored = ARGV[3] end
redis.call('HSET', KEYS[1], ARGV[1], stored)
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return stored
"""

#: KEYS: refresh; ARGV: token hash, expected JSON, replacement JSON.  Compare and set;
#: returns the JSON stored afterwards (nil when there is none).
REPLACE_REFRESH_SCRIPT = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return nil end
if current == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return ARGV[3]
end
return current
"""


@implementer(IOAuthStore)
@define
class RedisOAuthStore(ClientRegistry):
    """:class:`~oauthproxy.interfaces.IOAuthStore` on Redis; see the module docstring."""

    connection: RedisConnection
    keys: Keys
    stream_maxlen: int = STREAM_MAXLEN
    revocations: RedisRecordStore[OAuthRevocation] = field(init=False)
    signing_keys: RedisRecordStore[OAuthSigningKey] = field(init=False)

    def __attrs_post_init__(self) -> None:
        """Build the two mirrored record stores."""
        self.revocations = RedisRecordStore(
            self.connection, self.keys, "oauth_revocation", OAuthRevocation, self.stream_maxlen
        )
        self.signing_keys = RedisRecordStore(
            self.connection, self.keys, "oauth_signing_key", OAuthSigningKey, self.stream_maxlen
        )

    def _key(self, name: str) -> str:
        """A key of the OAuth state under the store's prefix."""
        return f"{self.keys.prefix}oauth:{name}"

    # codes and login sessions

    def put_code(self, code: AuthorizationCode) -> Deferred[None]:
        """Store a code until it expires."""
        ttl = milliseconds(max(code.expires_at - code.issued_at, 0.001))

        async def put() -> None:
            await self.connection.call(
                "SET", self._key(f"code:{code.code_hash}"), encode(code), "PX", ttl
            )

        return Deferred.fromCoroutine(put())

    def redeem_code(self, code_hash: str, now: float) -> Deferred[AuthorizationCode | None]:
        """Mark the code used; the record carries ``used_at`` of an earlier redemption."""

        async def redeem() -> AuthorizationCode | None:
            reply = await self.connection.eval(
                REDEEM_SCRIPT,
                [self._key(f"code:{code_hash}"), self._key(f"code_used:{code_hash}")],
                [repr(now)],
            )
            if not reply:
                return None
            record = decode(AuthorizationCode, reply[0])
            return evolve(record, used_at=decode_float(reply[1])) if reply[1] else record

        return Deferred.fromCoroutine(redeem())

    def put_session(self, session: LoginSession) -> Deferred[None]:
        """Store a login session until it expires."""
        ttl = milliseconds(max(session.expires_at - session.created_at, 0.001))

        async def put() -> None:
            await self.connection.call(
                "SET", self._key(f"session:{session.state}"), encode(session), "PX", ttl
            )

        return Deferred.fromCoroutine(put())

    def take_session(self, state: str) -> Deferred[LoginSession | None]:
        """The session for ``state``, removed at once."""

        async def take() -> LoginSession | None:
            text = await self.connection.call("GETDEL", self._key(f"session:{state}"))
            return None if text is None else decode(LoginSession, text)

        return Deferred.fromCoroutine(take())

    # expiring collections: families, refresh tokens, access-token records

    async def _put(self, collection: str, key: str, record: object, expires_at: float) -> None:
        """Store ``record`` under ``key`` in ``collection`` until ``expires_at``."""
        await self.connection.call("HSET", self._key(collection), key, encode(record))
        await self.connection.call("ZADD", self._key(f"{collection}_exp"), repr(expires_at), key)

    async def _get(self, collection: str, key: str, cls: type[T]) -> T | None:
        """The record under ``key`` (the grant logic judges expiry), or None."""
        text = await self.connection.call("HGET", self._key(collection), key)
        return None if text is None else decode(cls, text)

    async def _list(self, collection: str, cls: type[T]) -> list[T]:
        """Every record of ``collection`` not yet reaped."""
        texts = await self.connection.call("HVALS", self._key(collection))
        return [decode(cls, t) for t in texts]

    def put_family(self, family: TokenFamily, expires_at: float) -> Deferred[TokenFamily]:
        """Store or replace a family until ``expires_at``; a revoked one stays revoked."""
        # revoked before it was stored: revoked from its creation on
        revoked = (
            family
            if family.revoked_at is not None
            else evolve(family, revoked_at=family.created_at)
        )

        async def put() -> TokenFamily:
            stored = await self.connection.eval(
                PUT_FAMILY_SCRIPT,
                [
                    self._key("families"),
                    self._key("families_exp"),
                    self._key(f"family_revoked:{family.family_id}"),
                ],
                [family.family_id, encode(family), encode(revoked), repr(expires_at)],
            )
            return decode(TokenFamily, stored)

        return Deferred.fromCoroutine(put())

    def get_family(self, family_id: str) -> Deferred[TokenFamily | None]:
        """The family, or None."""
        return Deferred.fromCoroutine(self._get("families", family_id, TokenFamily))

    def list_families(self) -> Deferred[list[TokenFamily]]:
        """Every stored family, oldest first."""

        async def list_() -> list[TokenFamily]:
            families = await self._list("families", TokenFamily)
            return sorted(families, key=lambda f: (f.created_at, f.family_id))

        return Deferred.fromCoroutine(list_())

    def put_refresh(self, record: RefreshTokenRecord) -> Deferred[None]:
        """Store or replace a refresh token record until it expires (indexed by family)."""
        index = self._key(f"family_refresh:{record.family_id}")

        async def put() -> None:
            await self._put("refresh", record.token_hash, record, record.expires_at)
            await self.connection.call("SADD", index, record.token_hash)
            # a successor never outlives its predecessor: the newest token's expiry
            # covers every token of the family that can still be used
            lifetime = milliseconds(max(record.expires_at - record.issued_at, 0.001))
            await self.connection.call("PEXPIRE", index, lifetime)

        return Deferred.fromCoroutine(put())

    def get_refresh(self, token_hash: str) -> Deferred[RefreshTokenRecord | None]:
        """The record (expiry is judged by the grant logic), or None."""
        return Deferred.fromCoroutine(self._get("refresh", token_hash, RefreshTokenRecord))

    def replace_refresh(
        self, expected: RefreshTokenRecord, replacement: RefreshTokenRecord
    ) -> Deferred[RefreshTokenRecord | None]:
        """Store ``replacement`` if ``expected`` is stored; the record stored afterwards."""

        async def replace() -> RefreshTokenRecord | None:
            stored = await self.connection.eval(
                REPLACE_REFRESH_SCRIPT,
                [self._key("refresh")],
                [expected.token_hash, encode(expected), encode(replacement)],
            )
            return None if stored is None else decode(RefreshTokenRecord, stored)

        return Deferred.fromCoroutine(replace())

    def revoke_family(self, family_id: str, now: float) -> Deferred[TokenFamily | None]:
        """Mark the family revoked and drop its refresh tokens."""

        async def revoke() -> TokenFamily | None:
            family = await self._get("families", family_id, TokenFamily)
            revoked = (
                None
                if family is None
                else family
                if family.revoked_at is not None
                else evolve(family, revoked_at=now)
            )
            await self.connection.eval(
                REVOKE_FAMILY_SCRIPT,
                [
                    self._key("families"),
                    self._key("refresh"),
                    self._key("refresh_exp"),
                    self._key(f"family_refresh:{family_id}"),
                    self._key(f"family_revoked:{family_id}"),
                ],
                [
                    family_id,
                    "" if revoked is None else encode(revoked),
                    milliseconds(FAMILY_TOMBSTONE_LIFETIME),
                ],
            )
            return revoked

        return Deferred.fromCoroutine(revoke())

    def put_access_token(self, record: OAuthAccessToken) -> Deferred[None]:
        """Remember an issued access token until it expires."""
        return Deferred.fromCoroutine(self._put("access", record.jti, record, record.expires_at))

    def list_access_tokens(self) -> Deferred[list[OAuthAccessToken]]:
        """Every issued access token record not yet reaped, oldest first."""

        async def list_() -> list[OAuthAccessToken]:
            records = await self._list("access", OAuthAccessToken)
            return sorted(records, key=lambda r: (r.issued_at, r.jti))

        return Deferred.fromCoroutine(list_())

    def reap(self, now: float) -> Deferred[int]:
        """Drop expired families, refresh tokens and access-token records."""

        async def reap() -> int:
            total = 0
            for collection in ("families", "refresh", "access"):
                total += int(
                    await self.connection.eval(
                        REAP_SCRIPT,
                        [self._key(collection), self._key(f"{collection}_exp")],
                        [repr(now)],
                    )
                )
            return total

        return Deferred.fromCoroutine(reap())
