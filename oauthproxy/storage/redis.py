"""The whole store on Redis: :class:`RedisStorage` and :func:`connect_storage`.

``tap.makeService`` calls :func:`connect_storage` once and hands the result to
every component as an :class:`~oauthproxy.interfaces.IStorage`.  Connections
are lazy, so the daemon starts while Redis is still coming up; every call has
a deadline and fails with :class:`~oauthproxy.errors.StorageUnavailable`.
"""

from __future__ import annotations

from attrs import define, evolve, frozen
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from oauthproxy.errors import ConfigError, StorageUnavailable
from oauthproxy.interfaces import IEventLog, IStorage
from oauthproxy.model import (
    ApiToken,
    AuthRule,
    Certificate,
    DockerService,
    Event,
    ExternalService,
    Proxy,
    Route,
)
from oauthproxy.storage.address import RedisAddress
from oauthproxy.storage.codec import decode, encode
from oauthproxy.storage.connection import RedisConnection
from oauthproxy.storage.coordination import RedisAccountKeyStore, RedisChallengeStore, RedisLocks
from oauthproxy.storage.crypto import DecryptionError, SecretBox, open_certificate
from oauthproxy.storage.docker_services import RedisDockerServiceStore, open_service
from oauthproxy.storage.events import (
    NO_EVENT_ID,
    READ_COUNT,
    STREAM_MAXLEN,
    check_not_trimmed,
    parse_entries,
)
from oauthproxy.storage.health import StorageState
from oauthproxy.storage.keys import DEFAULT_PREFIX, Keys
from oauthproxy.storage.oauth import RedisOAuthStore
from oauthproxy.storage.records import (
    RedisAuthRuleStore,
    RedisCertificateStore,
    RedisProxyStore,
    RedisRouteStore,
    RedisServiceStore,
    RedisTokenStore,
    open_proxy,
)
from oauthproxy.storage.requestlog import (
    DEFAULT_MAX_RECORDS,
    DEFAULT_RETENTION,
    RedisRequestLogStore,
)
from oauthproxy.storage.visibility import WriteVisibility

#: the associated data of the key check value
KEY_CHECK_CONTEXT = "oauthproxy key check"


class SecretKeyMismatch(ConfigError):
    """The configured secret key cannot open what is stored (another daemon's key)."""

    code = "secret_key_mismatch"


@implementer(IEventLog)
@define
class RedisEventLog:
    """Reads the ``events`` stream; certificate keys come back decrypted."""

    connection: RedisConnection
    keys: Keys
    box: SecretBox

    def last_id(self) -> Deferred[str]:
        """The id of the newest event, ``"0-0"`` when the stream is empty."""

        async def last_id() -> str:
            reply = await self.connection.call("XREVRANGE", self.keys.events, "+", "-", "COUNT", 1)
            return str(reply[0][0]) if reply else NO_EVENT_ID

        return Deferred.fromCoroutine(last_id())

    def read(self, after: str, block: float) -> Deferred[list[Event]]:
        """Events after ``after``, oldest first, waiting up to ``block`` seconds for one.

        ``block <= 0`` polls on the shared pool, never behind a blocked read.

        :raises EventsTrimmed: if events after ``after`` were trimmed (the
            reader fell more than ``stream_maxlen`` events behind).
        """

        async def read() -> list[Event]:
            stream = ["STREAMS", self.keys.events, after]
            if block > 0:
                # BLOCK 0 would mean "forever" to Redis
                blocking = ["BLOCK", max(1, round(block * 1000))]
                reply = await self.connection.blocking_call(
                    block, "XREAD", "COUNT", READ_COUNT, *blocking, *stream
                )
            else:
                # a poll (a mirror catching up) must not queue behind the blocked tail
                reply = await self.connection.call("XREAD", "COUNT", READ_COUNT, *stream)
            if not reply:
                return []
            events = [self._open(e) for e in parse_entries(reply[0][1])]
            await self._check_not_trimmed(after)
            return events

        return Deferred.fromCoroutine(read())

    def holds(self, event_id: str) -> Deferred[bool]:
        """Whether the stream still has ``event_id`` (a reader there lost nothing)."""

        async def holds() -> bool:
            if event_id == NO_EVENT_ID:
                return False
            return bool(await self.connection.call("XRANGE", self.keys.events, event_id, event_id))

        return Deferred.fromCoroutine(holds())

    async def _check_not_trimmed(self, after: str) -> None:
        """Raise EventsTrimmed if events after ``after`` may have been trimmed."""
        if after == NO_EVENT_ID:
            info = await self.connection.call("XINFO", "STREAM", self.keys.events)
            fields = dict(zip(info[::2], info[1::2], strict=True))
            # "entries-added" exists from Redis 7 on; older servers are not checked
            added = int(fields.get("entries-added", 0))
            check_not_trimmed(after, True, added > int(fields["length"]))
        else:
            kept = await self.connection.call("XRANGE", self.keys.events, after, after)
            check_not_trimmed(after, bool(kept), False)

    def _open(self, event: Event) -> Event:
        """Decrypt the private key a certificate event carries (or a proxy's secret, or
        a Docker service's environment)."""
        if event.kind == "docker_service" and event.record is not None:
            service = decode(DockerService, event.record)
            if not service.environment and service.previous is None:
                return event
            return evolve(event, record=encode(open_service(self.box, service)))
        if event.kind == "proxy" and event.record is not None:
            proxy = decode(Proxy, event.record)
            if proxy.github_client_secret is None:
                return event
            return evolve(event, record=encode(open_proxy(self.box, proxy)))
        if event.kind != "certificate" or event.record is None:
            return event
        stored = decode(Certificate, event.record)
        if stored.private_key_pem is None:
            return event
        return evolve(event, record=encode(open_certificate(self.box, stored)))


@implementer(IStorage)
@frozen
class RedisStorage:
    """Every store of :class:`~oauthproxy.interfaces.IStorage`, over one connection."""

    connection: RedisConnection
    proxies: RedisProxyStore
    routes: RedisRouteStore
    certificates: RedisCertificateStore
    tokens: RedisTokenStore
    services: RedisServiceStore
    docker_services: RedisDockerServiceStore
    events: RedisEventLog
    challenges: RedisChallengeStore
    locks: RedisLocks
    accounts: RedisAccountKeyStore
    auth_rules: RedisAuthRuleStore
    oauth: RedisOAuthStore
    request_log: RedisRequestLogStore
    keys: Keys
    box: SecretBox

    @property
    def visibility(self) -> WriteVisibility:
        """Where writes wait until this instance's mirror applied them (read-your-writes)."""
        return self.connection.visibility

    def ping(self) -> Deferred[bool]:
        """True if Redis answered within the timeout; never fails."""
        return self.connection.ping()

    def check_key(self) -> Deferred[None]:
        """Raise :class:`SecretKeyMismatch` if the secret key cannot open the stored data.

        The first daemon stores a value sealed with its key (``<p>key_check``); every
        later one must open it.  Data stored before that value existed is checked by
        opening the sealed certificate keys and proxy secrets themselves.
        """

        async def check() -> None:
            sealed = await self.connection.call("GET", self.keys.key_check)
            try:
                if sealed is not None:
                    self.box.open(str(sealed), KEY_CHECK_CONTEXT)
                    return
                await self.certificates.list()
                await self.proxies.list()
            except DecryptionError:
                raise SecretKeyMismatch(
                    "OAUTHPROXY_SECRET_KEY does not match the data in Redis, which another "
                    "daemon encrypted with its key: every daemon sharing a Redis needs the "
                    "same key (set OAUTHPROXY_SECRET_KEY to the value of the first daemon's, "
                    "its setting or the <data dir>/secret.key it created)",
                    field="OAUTHPROXY_SECRET_KEY",
                ) from None
            check_value = self.box.seal("oauthproxy", KEY_CHECK_CONTEXT)
            await self.connection.call("SET", self.keys.key_check, check_value, "NX")

        return Deferred.fromCoroutine(check())

    def probe(self, deadline: float) -> Deferred[StorageState]:
        """Whether Redis takes a read and a write within ``deadline`` each; never fails.

        An unreachable Redis opens the connection's fail-fast ``outage`` until a
        probe gets an answer again.  The write is a key with a short expiry, the
        kind Redis may evict, so it is refused only when nothing can make room.
        """
        connection = self.connection

        async def probe() -> StorageState:
            try:
                await connection.probe_call(deadline, "PING")
            except StorageUnavailable as e:
                connection.outage = e.detail
                return StorageState(reachable=False, writable=False, detail=e.detail)
            connection.outage = None
            try:
                await connection.probe_call(deadline, "SET", self.keys.probe, "1", "PX", 60000)
            except StorageUnavailable as e:
                return StorageState(writable=False, detail=e.detail)
            return StorageState()

        return Deferred.fromCoroutine(probe())

    def close(self) -> Deferred[None]:
        """Close the connections; fires when they are closed."""
        return self.connection.close()


def connect_storage(
    address: RedisAddress,
    secret_box: SecretBox,
    timeout: float,
    reactor: IReactorTime,
    key_prefix: str = DEFAULT_PREFIX,
    stream_maxlen: int = STREAM_MAXLEN,
    request_log_retention: float = DEFAULT_RETENTION,
    request_log_max_records: int = DEFAULT_MAX_RECORDS,
    wait_replicas: int = 0,
) -> RedisStorage:
    """A :class:`RedisStorage` for ``address``; nothing connects before the first call.

    :param timeout: seconds any single call may take (``redis_timeout``).
    :param key_prefix: prefix of every key (tests use their own to isolate).
    :param stream_maxlen: events the stream keeps, approximately.
    :param request_log_retention: seconds request-log records are kept.
    :param request_log_max_records: request-log records kept at most.
    :param wait_replicas: replicas a record write must reach before it is confirmed.
    """
    keys = Keys(key_prefix)
    connection = RedisConnection(
        address, reactor, timeout, wait_replicas=wait_replicas, wait_key=keys.probe
    )
    if wait_replicas:
        connection.visibility.durable = connection.replicated
    return RedisStorage(
        connection=connection,
        proxies=RedisProxyStore(connection, keys, "proxy", Proxy, stream_maxlen, box=secret_box),
        routes=RedisRouteStore(connection, keys, "route", Route, stream_maxlen),
        certificates=RedisCertificateStore(
            connection, keys, "certificate", Certificate, stream_maxlen, box=secret_box
        ),
        tokens=RedisTokenStore(connection, keys, "token", ApiToken, stream_maxlen),
        services=RedisServiceStore(connection, keys, "service", ExternalService, stream_maxlen),
        docker_services=RedisDockerServiceStore(
            connection, keys, "docker_service", DockerService, stream_maxlen, box=secret_box
        ),
        events=RedisEventLog(connection, keys, secret_box),
        challenges=RedisChallengeStore(connection, keys),
        locks=RedisLocks(connection, keys),
        accounts=RedisAccountKeyStore(connection, keys, secret_box),
        auth_rules=RedisAuthRuleStore(connection, keys, "auth_rule", AuthRule, stream_maxlen),
        oauth=RedisOAuthStore(connection, keys, stream_maxlen),
        request_log=RedisRequestLogStore(
            connection, keys, request_log_retention, max_records=request_log_max_records
        ),
        keys=keys,
        box=secret_box,
    )
