"""Guarded ports on real loopback sockets: the daemon's listener checks, logs, then relays.

The "container" is a local server (a TCP echo, or the HTTP test backend) standing
at the service's address; :class:`~oauthproxy.containers.guarded.GuardedPorts`
listens on a free loopback port for it.  Clients connect from 127.0.0.1, so a port
allowing only ``10.0.0.0/8`` refuses them and one allowing ``127.0.0.0/8`` admits them.
"""

from __future__ import annotations

import json
from typing import Any

import treq
from attrs import evolve
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from oauthproxy.admin.credentials import hash_token
from oauthproxy.config import Config
from oauthproxy.containers.guarded import GuardedPorts
from oauthproxy.gateway.forward import Forwarder
from oauthproxy.model import DockerService, ServicePort
from oauthproxy.requestlog.record import RequestRecord, record_from_request
from tests.support.backends import start_backend
from tests.support.daemon import free_port

TOKEN = "port-token-0123456789abcdef"


class Echo(Protocol):
    """Writes back what it reads."""

    def dataReceived(self, data: bytes) -> None:
        """Echo."""
        assert self.transport is not None
        self.transport.write(data)


class Client(Protocol):
    """Collects what the relay sends; ``closed`` fires when the connection ends."""

    def __init__(self) -> None:
        self.received = b""
        self.closed: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        """Keep."""
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        """Done."""
        self.closed.callback(None)


def service(port: ServicePort, target_port: int) -> DockerService:
    """A ready service at 127.0.0.1 whose guarded ``port`` relays to ``target_port``."""
    return DockerService(
        "web", "i:1", phase="ready", ip="127.0.0.1", ports=(evolve(port, container=target_port),)
    )


class GuardedPortTests(TestCase):
    """Refuse, admit, relay, log."""

    timeout = 30

    def setUp(self) -> None:
        """Guarded ports recording what they log."""
        self.records: list[RequestRecord] = []
        self.forwarder = Forwarder(reactor)
        self.addCleanup(self.forwarder.close)
        self.ports = GuardedPorts(
            reactor,
            Config(),
            self.forwarder,
            record=self.records.append,
            access_log=lambda r: self.records.append(record_from_request(r, 0.0, lambda: "x")),
        )
        self.addCleanup(self.ports.close)
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)

    async def echo_server(self) -> int:
        """A TCP echo on a free loopback port (stands for the container)."""
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(Echo)
        )
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)

    async def connect(self, port: int, send: bytes) -> Client:
        """Connect to ``port``, send ``send``, wait for the connection to end (bounded)."""
        client = Client()
        await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(
            Factory.forProtocol(lambda: client)
        )
        assert client.transport is not None
        client.transport.write(send)
        await deferLater(reactor, 0.3, lambda: None)
        client.transport.loseConnection()
        await client.closed
        return client

    async def test_admitted_clients_are_relayed_and_logged(self) -> None:
        """From an allowed network the bytes reach the container and come back; one TCP record."""
        target = await self.echo_server()
        listen = free_port()
        guarded = ServicePort("admin", listen, 0, allowed_networks=("127.0.0.0/8",))
        await self.ports.apply([service(guarded, target)])
        client = await self.connect(listen, b"ping\n")
        self.assertEqual(client.received, b"ping\n")
        await deferLater(reactor, 0.1, lambda: None)
        [record] = self.records
        self.assertEqual(
            (record.method, record.status, record.bytes_in, record.bytes_out, record.client_ip),
            ("TCP", 200, 5, 5, "127.0.0.1"),
        )
        self.assertEqual(record.host, f"127.0.0.1:{listen}")

    async def test_clients_outside_the_networks_are_refused_and_logged(self) -> None:
        """From 127.0.0.1 a port allowing 10.0.0.0/8 closes at once; the echo never sees it."""
        target = await self.echo_server()
        listen = free_port()
        guarded = ServicePort("admin", listen, 0, allowed_networks=("10.0.0.0/8",))
        await self.ports.apply([service(guarded, target)])
        client = await self.connect(listen, b"ping\n")
        self.assertEqual(client.received, b"")
        [record] = self.records
        self.assertEqual((record.status, record.error), (403, "source address not allowed"))

    async def test_a_token_port_needs_its_token(self) -> None:
        """401 without or with a wrong token; with it the request reaches the container
        without the token header."""
        backend = await start_backend(self, reactor)
        listen = free_port()
        guarded = ServicePort("api", listen, 0, token_hash=hash_token(TOKEN))
        await self.ports.apply([service(guarded, backend.port.getHost().port)])
        url = f"http://127.0.0.1:{listen}/hello?x=1"
        for headers in ({}, {"X-Port-Token": ["wrong-token-0123456789"]}):
            response = await treq.get(url, headers=headers, pool=self.pool, timeout=5)
            await treq.content(response)
            self.assertEqual(response.code, 401)
            self.assertIn(b"Bearer", response.headers.getRawHeaders(b"www-authenticate")[0])
        self.assertEqual(backend.state.requests, [])
        for headers in ({"X-Port-Token": [TOKEN]}, {"Authorization": [f"Bearer {TOKEN}"]}):
            response = await treq.get(url, headers=headers, pool=self.pool, timeout=5)
            echoed = json.loads(await treq.content(response))
            self.assertEqual(response.code, 200)
            names = [name.lower() for name, _ in echoed["headers"]]
            self.assertNotIn("x-port-token", names)
            self.assertNotIn("authorization", names)
            self.assertEqual(echoed["uri"], "/hello?x=1")
        statuses = [r.status for r in self.records]
        self.assertEqual(statuses, [401, 401, 200, 200])

    async def test_changes_apply_without_restart_and_removal_closes(self) -> None:
        """A new token works at once on the same socket; a removed port stops listening."""
        backend = await start_backend(self, reactor)
        listen = free_port()
        guarded = ServicePort("api", listen, 0, token_hash=hash_token(TOKEN))
        await self.ports.apply([service(guarded, backend.port.getHost().port)])
        other = "another-token-0123456789"
        changed = evolve(guarded, token_hash=hash_token(other))
        await self.ports.apply([service(changed, backend.port.getHost().port)])
        url = f"http://127.0.0.1:{listen}/"
        response = await treq.get(url, headers={"X-Port-Token": [other]}, pool=self.pool, timeout=5)
        await treq.content(response)
        self.assertEqual(response.code, 200)
        await self.ports.apply([])
        with self.assertRaises(ConnectionRefusedError):
            await TCP4ClientEndpoint(reactor, "127.0.0.1", listen).connect(
                Factory.forProtocol(Protocol)
            )
