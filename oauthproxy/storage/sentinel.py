"""Redis behind Sentinel: a txredisapi pool that always talks to the current master.

``sentinel://host:port,host:port/master-name`` names Redis Sentinels, not Redis.
Before every connection attempt :class:`MasterEndpoint` asks them for the master
of ``master-name`` (txredisapi's :class:`~txredisapi.Sentinel` takes the first
sentinel that knows a master that is up), then connects to it, over TLS for
``sentinels://``; txredisapi checks that the server it reached still says
``ROLE master`` and drops the connection otherwise.  When the answer changes
(a failover), the pool's live connections to the old master are closed, so no
command goes to a server that was demoted.

:class:`~oauthproxy.storage.connection.RedisConnection` adds what txredisapi does
not do: a ``READONLY`` reply (a demoted master that still has our connection)
makes it rebuild the pool, and its health probe fails calls fast while no master
answers.  txredisapi's own ``_SentinelEndpoint`` cannot add TLS and passes its
maximum retry delay as the connect timeout, hence this small endpoint.
"""

from __future__ import annotations

from typing import Any

import txredisapi
from attrs import define, field
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.logger import Logger
from zope.interface import implementer

from oauthproxy.storage.address import RedisAddress, client_tls

_log = Logger()


@implementer(IStreamClientEndpoint)
@define(eq=False)
class MasterEndpoint:
    """Connects to whatever the sentinels name as master right now (see the module)."""

    factory: Any
    reactor: Any
    #: the ``sentinel://`` address (its TLS settings apply to the master too)
    address: RedisAddress
    timeout: float
    _master: tuple[str, int] | None = field(default=None, init=False)

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[Any]:
        """Discover the master, then connect to it."""
        manager = self.factory.sentinel_manager
        d: Deferred[Any] = manager.discover_master(self.factory.service_name)
        d.addCallback(self._found)
        return d.addCallback(self._connect, protocolFactory)

    def _found(self, address: tuple[str, int]) -> tuple[str, int]:
        """Close the connections to a master the sentinels no longer name."""
        if self._master is not None and self._master != address:
            _log.warn(
                "Redis Sentinel: master of {name} moved from {old} to {new}",
                name=self.factory.service_name,
                old=f"{self._master[0]}:{self._master[1]}",
                new=f"{address[0]}:{address[1]}",
            )
            for connection in list(self.factory.pool):
                connection.transport.loseConnection()
        self._master = address
        return address

    def _connect(self, address: tuple[str, int], protocolFactory: IProtocolFactory) -> Any:
        """Connect to ``address`` (TLS verified against its host name when asked)."""
        host, port = address
        endpoint: IStreamClientEndpoint = HostnameEndpoint(self.reactor, host, port, self.timeout)
        tls = client_tls(self.address, host)
        if tls is not None:
            endpoint = wrapClientTLS(tls, endpoint)
        return endpoint.connect(protocolFactory)


@define(eq=False)
class SentinelPool:
    """A txredisapi handler for the master plus the sentinel connections behind it."""

    handler: Any
    sentinel: Any

    def execute_command(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        """Run a command on the master."""
        result: Deferred[Any] = self.handler.execute_command(*args, **kwargs)
        return result

    def eval(self, script: str, keys: list[str], args: list[object]) -> Deferred[Any]:
        """Run a Lua script on the master."""
        result: Deferred[Any] = self.handler.eval(script, keys, args)
        return result

    def disconnect(self) -> Deferred[Any]:
        """Close the master connections and the sentinel connections."""
        return gatherResults(
            [self.handler.disconnect(), self.sentinel.disconnect()], consumeErrors=True
        )


def sentinel_pool(
    address: RedisAddress, reactor: Any, poolsize: int, timeout: float
) -> SentinelPool:
    """A lazy pool of ``poolsize`` connections to the master ``address`` names."""
    assert address.sentinels and address.master_name is not None
    # one connection per sentinel, each verified against its own host name under TLS
    sentinel = txredisapi.Sentinel([])
    sentinel.sentinels = [
        txredisapi.lazyConnection(
            host,
            port,
            password=address.sentinel_password,
            ssl_context_factory=client_tls(address, host) or False,
            connectTimeout=timeout,
            replyTimeout=timeout,
        )
        for host, port in address.sentinels
    ]
    # a failover takes seconds: ask again each second, not after up to 10 s
    sentinel.discovery_timeout = min(sentinel.discovery_timeout, timeout)
    factory = txredisapi.SentinelConnectionFactory(
        sentinel_manager=sentinel,
        service_name=address.master_name,
        is_master=True,
        uuid=None,
        dbid=address.db or None,
        poolsize=poolsize,
        isLazy=True,
        password=address.password,
        username=address.username,
        replyTimeout=timeout,
        convertNumbers=False,
    )
    factory.maxDelay = 2
    factory.startConnecting(MasterEndpoint(factory, reactor, address, timeout))
    return SentinelPool(factory.handler, sentinel)
