"""The OAuth clients on Redis: registration, the registry's bounds, initial access tokens.

A mixin of :class:`~oauthproxy.storage.oauth.RedisOAuthStore` (its keys are listed
there).  Registration is one Lua script: identical public metadata maps to the client
stored first (idempotent DCR), and at the cap the oldest client that never completed
an authorization is evicted rather than every newcomer refused (ATK-28, ATK-37).
Initial access tokens (RFC 7591 §3) are stored hashed; a use is counted atomically.
"""

from __future__ import annotations

from typing import Any

from attrs import evolve
from twisted.internet.defer import Deferred

from oauthproxy.oauth.records import InitialAccessToken, OAuthClient
from oauthproxy.storage.codec import decode, encode
from oauthproxy.storage.connection import RedisConnection

#: KEYS: clients, client_keys, clients_unused, client_used; ARGV: client_id, JSON,
#: metadata key, cap, registration time.  Returns {"new"} | {"existing", JSON} |
#: {"full"}; at the cap, never-used clients are evicted, oldest first.
REGISTER_SCRIPT = """
local clients, index, unused, used = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, json, mkey, cap = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
if mkey ~= '' then
  local holder = redis.call('HGET', index, mkey)
  if holder then
    local existing = redis.call('HGET', clients, holder)
    if existing then return {'existing', existing} end
  end
end
while redis.call('HLEN', clients) >= cap do
  local oldest = redis.call('ZRANGE', unused, 0, 0)[1]
  if not oldest then return {'full'} end
  local evicted = redis.call('HGET', clients, oldest)
  redis.call('ZREM', unused, oldest)
  redis.call('HDEL', clients, oldest)
  redis.call('HDEL', used, oldest)
  if evicted then
    local key = cjson.decode(evicted)['metadata_key']
    if type(key) == 'string' and key ~= '' and redis.call('HGET', index, key) == oldest then
      redis.call('HDEL', index, key)
    end
  end
end
redis.call('HSET', clients, id, json)
redis.call('ZADD', unused, ARGV[5], id)
if mkey ~= '' then redis.call('HSET', index, mkey, id) end
return {'new'}
"""

#: KEYS: initial_tokens, initial_token_hashes, initial_token_uses; ARGV: token hash,
#: now.  Counts one use of a usable token; returns {JSON, uses} or nil.
USE_INITIAL_TOKEN_SCRIPT = """
local name = redis.call('HGET', KEYS[2], ARGV[1])
if not name then return nil end
local json = redis.call('HGET', KEYS[1], name)
if not json then return nil end
local token = cjson.decode(json)
local expires, most = tonumber(token['expires_at']) or 0, tonumber(token['max_uses']) or 0
if expires > 0 and tonumber(ARGV[2]) >= expires then return nil end
local uses = tonumber(redis.call('HGET', KEYS[3], name) or '0')
if most > 0 and uses >= most then return nil end
return {json, redis.call('HINCRBY', KEYS[3], name, 1)}
"""

#: KEYS: initial_tokens, initial_token_hashes; ARGV: name, JSON, token hash.
#: Stores a new token; 0 when the name is taken.
PUT_INITIAL_TOKEN_SCRIPT = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
return 1
"""


class ClientRegistry:
    """Clients and initial access tokens; the store provides ``connection`` and ``_key``."""

    connection: RedisConnection

    def _key(self, name: str) -> str:
        """A key of the OAuth state (provided by the store)."""
        raise NotImplementedError

    def get_client(self, client_id: str) -> Deferred[OAuthClient | None]:
        """The client with its last use merged in, or None."""

        async def get() -> OAuthClient | None:
            text = await self.connection.call("HGET", self._key("clients"), client_id)
            if text is None:
                return None
            used = await self.connection.call("HGET", self._key("client_used"), client_id)
            return _with_use(decode(OAuthClient, text), used)

        return Deferred.fromCoroutine(get())

    def list_clients(self) -> Deferred[list[OAuthClient]]:
        """Every client, sorted by client_id."""

        async def list_() -> list[OAuthClient]:
            texts = await self.connection.call("HVALS", self._key("clients"))
            flat = await self.connection.call("HGETALL", self._key("client_used"))
            uses = _pairs(flat)
            clients = (decode(OAuthClient, t) for t in texts)
            return sorted(
                (_with_use(c, uses.get(c.client_id)) for c in clients), key=lambda c: c.client_id
            )

        return Deferred.fromCoroutine(list_())

    def register_client(self, client: OAuthClient, cap: int) -> Deferred[OAuthClient | None]:
        """Store a new client; an identical one instead; at the cap, evict an unused one."""

        async def register() -> OAuthClient | None:
            reply = await self.connection.eval(
                REGISTER_SCRIPT,
                [
                    self._key("clients"),
                    self._key("client_keys"),
                    self._key("clients_unused"),
                    self._key("client_used"),
                ],
                [
                    client.client_id,
                    encode(client),
                    client.metadata_key,
                    cap,
                    repr(client.client_id_issued_at),
                ],
            )
            if reply[0] == "existing":
                return decode(OAuthClient, reply[1])
            return client if reply[0] == "new" else None

        return Deferred.fromCoroutine(register())

    def put_client(self, client: OAuthClient) -> Deferred[None]:
        """Store or replace a client."""

        async def put() -> None:
            await self.connection.call(
                "HSET", self._key("clients"), client.client_id, encode(client)
            )

        return Deferred.fromCoroutine(put())

    def delete_client(self, client_id: str) -> Deferred[bool]:
        """Remove a client and its index entries; whether it existed."""

        async def delete() -> bool:
            text = await self.connection.call("HGET", self._key("clients"), client_id)
            if text is None:
                return False
            client = decode(OAuthClient, text)
            await self.connection.call("HDEL", self._key("clients"), client_id)
            await self.connection.call("HDEL", self._key("client_used"), client_id)
            await self.connection.call("ZREM", self._key("clients_unused"), client_id)
            if client.metadata_key:
                await self.connection.call("HDEL", self._key("client_keys"), client.metadata_key)
            return True

        return Deferred.fromCoroutine(delete())

    def touch_client(self, client_id: str, when: float) -> Deferred[None]:
        """Record a use of the client."""

        async def touch() -> None:
            await self.connection.call("HSET", self._key("client_used"), client_id, repr(when))
            await self.connection.call("ZREM", self._key("clients_unused"), client_id)

        return Deferred.fromCoroutine(touch())

    # initial access tokens (RFC 7591 §3)

    def put_initial_token(self, token: InitialAccessToken) -> Deferred[bool]:
        """Store a new initial access token; False when the name is taken."""

        async def put() -> bool:
            stored = await self.connection.eval(
                PUT_INITIAL_TOKEN_SCRIPT,
                [self._key("initial_tokens"), self._key("initial_token_hashes")],
                [token.name, encode(evolve(token, uses=0)), token.token_hash],
            )
            return bool(stored)

        return Deferred.fromCoroutine(put())

    def list_initial_tokens(self) -> Deferred[list[InitialAccessToken]]:
        """Every initial access token with its uses, by name."""

        async def list_() -> list[InitialAccessToken]:
            texts = await self.connection.call("HVALS", self._key("initial_tokens"))
            uses = _pairs(await self.connection.call("HGETALL", self._key("initial_token_uses")))
            tokens = (decode(InitialAccessToken, t) for t in texts)
            return sorted(
                (evolve(t, uses=int(uses.get(t.name, 0))) for t in tokens), key=lambda t: t.name
            )

        return Deferred.fromCoroutine(list_())

    def delete_initial_token(self, name: str) -> Deferred[bool]:
        """Forget an initial access token; whether it existed."""

        async def delete() -> bool:
            text = await self.connection.call("HGET", self._key("initial_tokens"), name)
            if text is None:
                return False
            token = decode(InitialAccessToken, text)
            await self.connection.call("HDEL", self._key("initial_token_hashes"), token.token_hash)
            await self.connection.call("HDEL", self._key("initial_tokens"), name)
            await self.connection.call("HDEL", self._key("initial_token_uses"), name)
            return True

        return Deferred.fromCoroutine(delete())

    def use_initial_token(self, token_hash: str, now: float) -> Deferred[InitialAccessToken | None]:
        """Count one registration with a usable token; the token, or None."""

        async def use() -> InitialAccessToken | None:
            reply = await self.connection.eval(
                USE_INITIAL_TOKEN_SCRIPT,
                [
                    self._key("initial_tokens"),
                    self._key("initial_token_hashes"),
                    self._key("initial_token_uses"),
                ],
                [token_hash, repr(now)],
            )
            if not reply:
                return None
            return evolve(decode(InitialAccessToken, reply[0]), uses=int(reply[1]))

        return Deferred.fromCoroutine(use())


def decode_float(value: Any) -> float:
    """A Redis reply as a float."""
    return float(value.decode() if isinstance(value, bytes) else value)


def _pairs(flat: Any) -> dict[str, str]:
    """``HGETALL``'s flat reply (or a dict) as a dict."""
    if isinstance(flat, dict):
        return flat
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _with_use(client: OAuthClient, used: Any) -> OAuthClient:
    """``client`` with ``last_used_at`` from the usage hash when that is newer."""
    if used is None:
        return client
    when = decode_float(used)
    if client.last_used_at is not None and client.last_used_at >= when:
        return client
    return evolve(client, last_used_at=when)
