"""The record stores on Redis: proxies, routes, certificates, tokens, services.

Each kind lives in one hash (``records:<kind>``, key -> codec JSON).  Every
create, update and delete is one Lua script that checks existence, writes the
record and appends its event to the ``events`` stream (``XADD ... MAXLEN ~``):
Redis runs a script atomically, exactly like a MULTI/EXEC, and the check inside
it makes ``Conflict``/``NotFound`` correct when writers race.  A write returns once this
instance's mirror has applied its event (:mod:`oauthproxy.storage.visibility`).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, cast

from attrs import define, evolve
from twisted.internet.defer import Deferred
from zope.interface import implementer

from oauthproxy.errors import Conflict, NotFound
from oauthproxy.interfaces import (
    IAuthRuleStore,
    ICertificateStore,
    IProxyStore,
    IRouteStore,
    IServiceStore,
    ITokenStore,
)
from oauthproxy.model import ApiToken, AuthRule, Certificate, ExternalService, Proxy, Route
from oauthproxy.storage.codec import KEY_FIELDS, Record, decode, encode, record_key
from oauthproxy.storage.connection import RedisConnection
from oauthproxy.storage.crypto import SecretBox, open_certificate, seal_certificate
from oauthproxy.storage.events import STREAM_MAXLEN, Action
from oauthproxy.storage.keys import Keys

R = TypeVar("R", bound=Record)

#: extra KEYS and ARGV for the write script
ScriptArgs = tuple[list[str], list[object]]

#: KEYS: records hash, events stream[, token_hashes, token_used]
#: ARGV: action, kind, key, record JSON ("" to delete), stream maxlen[, token hash]
#: returns {"ok", event id} | {"conflict", detail} | {"not_found", detail}
WRITE_SCRIPT = """
local records, events = KEYS[1], KEYS[2]
local action, kind, key, json = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local old = redis.call('HGET', records, key)
if action == 'create' and old then
  return {'conflict', kind .. ' ' .. key .. ' already exists'}
elseif action ~= 'create' and not old then
  return {'not_found', 'no ' .. kind .. ' ' .. key}
end
local event_type = kind .. '_' .. action .. 'd'
if #KEYS == 4 then
  -- tokens: keep the digest -> name index unique and in step
  local index, used, digest = KEYS[3], KEYS[4], ARGV[6]
  local old_digest = old and cjson.decode(old)['token_hash']
  if action ~= 'delete' and digest ~= old_digest then
    local holder = redis.call('HGET', index, digest)
    if holder and holder ~= key then
      return {'conflict', 'another token has the same value'}
    end
  end
  if old_digest and (action == 'delete' or digest ~= old_digest) then
    redis.call('HDEL', index, old_digest)
  end
  if action == 'delete' then
    redis.call('HDEL', used, key)
  else
    redis.call('HSET', index, digest, key)
  end
end
if kind == 'certificate' and action == 'update' then
  local before, after = cjson.decode(old), cjson.decode(json)
  if after['status'] == 'ready' and
     (before['status'] ~= 'ready' or before['fullchain_pem'] ~= after['fullchain_pem']) then
    event_type = 'certificate_ready'
  end
end
local id
if action == 'delete' then
  redis.call('HDEL', records, key)
  id = redis.call('XADD', events, 'MAXLEN', '~', ARGV[5], '*',
                  'type', event_type, 'kind', kind, 'key', key)
else
  redis.call('HSET', records, key, json)
  id = redis.call('XADD', events, 'MAXLEN', '~', ARGV[5], '*',
                  'type', event_type, 'kind', kind, 'key', key, 'record', json)
end
return {'ok', id}
"""

#: KEYS: token records, token_used; ARGV: name, when.  No event: usage is not configuration.
TOUCH_SCRIPT = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
return 0
"""


@define
class RedisRecordStore(Generic[R]):
    """Get, list, create, update and delete the records of one kind."""

    connection: RedisConnection
    keys: Keys
    kind: str
    record_type: type[R]
    #: events the stream keeps (approximately: ``XADD MAXLEN ~``)
    stream_maxlen: int = STREAM_MAXLEN

    @property
    def _hash(self) -> str:
        """The hash holding this kind's records."""
        return self.keys.records(self.kind)

    def _to_stored(self, record: R) -> R:
        """The record as kept at rest (hook for encryption)."""
        return record

    def _from_stored(self, record: R) -> R:
        """The record as handed out (hook for decryption)."""
        return record

    def _write_extra(self, record: R | None) -> ScriptArgs:
        """Extra KEYS and ARGV for the write script (hook for the token index)."""
        return [], []

    def _decode(self, text: str) -> R:
        """Decode stored JSON into a record as handed out."""
        return self._from_stored(decode(self.record_type, text))

    def get(self, key: str) -> Deferred[R | None]:
        """The record stored under ``key``, or None."""

        async def get() -> R | None:
            text = await self.connection.call("HGET", self._hash, self._normalise(key))
            return None if text is None else self._decode(text)

        return Deferred.fromCoroutine(get())

    def list(self) -> Deferred[list[R]]:
        """Every record of this kind, sorted by key."""

        async def list_() -> list[R]:
            texts = await self.connection.call("HVALS", self._hash)
            return sorted((self._decode(t) for t in texts), key=record_key)

        return Deferred.fromCoroutine(list_())

    def create(self, record: R) -> Deferred[None]:
        """Store a new record; ``Conflict`` if its key is taken."""
        return self._visible(self._write("create", record_key(record), record))

    def update(self, record: R) -> Deferred[None]:
        """Replace a record; ``NotFound`` if there is none under its key."""
        return self._visible(self._write("update", record_key(record), record))

    def delete(self, key: str) -> Deferred[None]:
        """Remove the record under ``key``; ``NotFound`` if there is none."""
        return self._visible(self._write("delete", self._normalise(key), None))

    def _visible(self, written: Deferred[str]) -> Deferred[None]:
        """Fires once this instance's mirror applied the write's event (read-your-writes).

        Every write of every kind passes here, whatever script ``_write`` runs.
        """
        return written.addCallback(self.connection.visibility.written)

    def _normalise(self, key: str) -> str:
        """Keys as stored: hostnames are case-insensitive."""
        return key.lower() if self.kind == "proxy" else key

    def _write(self, action: Action, key: str, record: R | None) -> Deferred[str]:
        """Run the write script and map its verdict to NotFound/Conflict; the event id."""

        json = "" if record is None else encode(self._to_stored(record))
        extra = self._write_extra(record)

        async def write() -> str:
            reply = await self.connection.eval(
                WRITE_SCRIPT,
                [self._hash, self.keys.events, *extra[0]],
                [action, self.kind, key, json, self.stream_maxlen, *extra[1]],
            )
            verdict, detail = reply[0], reply[1]
            if verdict == "conflict":
                raise Conflict(detail, field=KEY_FIELDS[self.kind])
            if verdict == "not_found":
                raise NotFound(detail, field=KEY_FIELDS[self.kind])
            return str(detail)

        return Deferred.fromCoroutine(write())


@implementer(IProxyStore)
@define
class RedisProxyStore(RedisRecordStore[Proxy]):
    """Proxies keyed by lower-case hostname; ``github_client_secret`` is sealed at rest."""

    box: SecretBox | None = None

    def _to_stored(self, record: Proxy) -> Proxy:
        """Encrypt the per-proxy GitHub client secret."""
        return seal_proxy(self.box, record)

    def _from_stored(self, record: Proxy) -> Proxy:
        """Decrypt the per-proxy GitHub client secret."""
        return open_proxy(self.box, record)


def _secret_context(proxy: Proxy) -> str:
    """The associated data of a proxy's sealed secret: it opens on this proxy only."""
    return f"proxy:{proxy.hostname.lower()}:github_client_secret"


def seal_proxy(box: SecretBox | None, proxy: Proxy) -> Proxy:
    """``proxy`` as kept at rest: its GitHub client secret sealed (unchanged without a box)."""
    if box is None or proxy.github_client_secret is None:
        return proxy
    sealed = box.seal(proxy.github_client_secret, _secret_context(proxy))
    return evolve(proxy, github_client_secret=sealed)


def open_proxy(box: SecretBox | None, stored: Proxy) -> Proxy:
    """``stored`` with its GitHub client secret decrypted (unchanged without a box)."""
    if box is None or stored.github_client_secret is None:
        return stored
    plain = box.open(stored.github_client_secret, _secret_context(stored))
    return evolve(stored, github_client_secret=plain)


@implementer(IRouteStore)
class RedisRouteStore(RedisRecordStore[Route]):
    """Routes keyed by route_id."""


@implementer(IServiceStore)
class RedisServiceStore(RedisRecordStore[ExternalService]):
    """External services keyed by name."""


@implementer(IAuthRuleStore)
class RedisAuthRuleStore(RedisRecordStore[AuthRule]):
    """Admin API endpoint auth rules keyed by config_id."""


@implementer(ICertificateStore)
@define
class RedisCertificateStore(RedisRecordStore[Certificate]):
    """Certificates keyed by name; ``private_key_pem`` is sealed at rest."""

    box: SecretBox | None = None

    def _to_stored(self, record: Certificate) -> Certificate:
        """Encrypt the private key."""
        assert self.box is not None
        return seal_certificate(self.box, record)

    def _from_stored(self, record: Certificate) -> Certificate:
        """Decrypt the private key."""
        assert self.box is not None
        return open_certificate(self.box, record)


@implementer(ITokenStore)
class RedisTokenStore(RedisRecordStore[ApiToken]):
    """API tokens by name, with a digest -> name index and usage kept apart."""

    def _write_extra(self, record: ApiToken | None) -> ScriptArgs:
        """Pass the index hashes and the new digest to the write script."""
        digest = "" if record is None else record.token_hash
        return [self.keys.token_hashes, self.keys.token_used], [digest]

    def get(self, key: str) -> Deferred[ApiToken | None]:
        """The token, with its last use merged in, or None."""

        async def get() -> ApiToken | None:
            token = await super(RedisTokenStore, self).get(key)
            if token is None:
                return None
            used = await self.connection.call("HGET", self.keys.token_used, key)
            return _with_use(token, used)

        return Deferred.fromCoroutine(get())

    def list(self) -> Deferred[list[ApiToken]]:
        """Every token, sorted by name, with last uses merged in."""

        async def list_() -> list[ApiToken]:
            tokens = await super(RedisTokenStore, self).list()
            flat = await self.connection.call("HGETALL", self.keys.token_used)
            uses = _pairs(flat)
            return [_with_use(t, uses.get(t.name)) for t in tokens]

        return Deferred.fromCoroutine(list_())

    def find_by_hash(self, token_hash: str) -> Deferred[ApiToken | None]:
        """The token whose value has this SHA-256 digest, or None."""

        async def find() -> ApiToken | None:
            name = await self.connection.call("HGET", self.keys.token_hashes, token_hash)
            if name is None:
                return None
            token = await self.get(name)
            # the token may have been rotated between the two reads
            return token if token is not None and token.token_hash == token_hash else None

        return Deferred.fromCoroutine(find())

    def touch(self, name: str, when: float) -> Deferred[None]:
        """Record a use of the token (ignored if the token no longer exists)."""

        async def touch() -> None:
            await self.connection.eval(
                TOUCH_SCRIPT, [self._hash, self.keys.token_used], [name, repr(when)]
            )

        return Deferred.fromCoroutine(touch())


def _pairs(flat: Any) -> dict[str, str]:
    """``HGETALL``'s flat ``[k, v, k, v]`` reply (or a dict) as a dict."""
    if isinstance(flat, dict):
        return cast(dict[str, str], flat)
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _with_use(token: ApiToken, used: str | None) -> ApiToken:
    """``token`` with ``last_used_at`` from the usage hash when that is newer."""
    if used is None:
        return token
    when = float(used)
    if token.last_used_at is not None and token.last_used_at >= when:
        return token
    return evolve(token, last_used_at=when)
