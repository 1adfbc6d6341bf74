"""Integration: WebSocket echo through the gateway's tunnel over HTTP and HTTPS (ATK-16).

The upstream is a real WebSocket echo server (``twisted.web.websocket``); the
client is Twisted's ``WebSocketClientEndpoint``.  In between, the gateway's
listeners serve a small front resource that hands upgrade requests to
:func:`~oauthproxy.gateway.tunnel.open_tunnel`, as the gateway's forwarder does.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import Certificate as TLSCertificate
from twisted.internet.ssl import optionsForClientTLS
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.web.websocket import WebSocketClientEndpoint, WebSocketResource, WebSocketTransport
from zope.interface import implementer

from oauthproxy.config import Config
from oauthproxy.gateway.forward import Forwarder
from oauthproxy.gateway.hosts import GatewayResource
from oauthproxy.gateway.listeners import http_listener, https_listener
from oauthproxy.gateway.site import GatewaySite
from oauthproxy.gateway.sni import CertificateMap
from oauthproxy.gateway.table import LiveTable
from oauthproxy.gateway.tls import _thd_generate_fallback
from oauthproxy.gateway.tunnel import Tunnel, open_tunnel
from oauthproxy.model import Proxy, Snapshot
from tests.support.backends import SnapshotFeed
from tests.support.haproxy import free_port
from tests.support.tls import TestAuthority, TrackingFactory, raw_exchange

reactor: Any = _reactor

UPGRADE = (
    b"GET /chat HTTP/1.1\r\nHost: ws.example.test\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
AFTER = b"GET /after HTTP/1.1\r\nHost: ws.example.test\r\nConnection: close\r\n\r\n"


class Echo:
    """Upstream WebSocket protocol: sends every message back."""

    transport: WebSocketTransport

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        """Keep the transport."""
        self.transport = transport

    def negotiationFinished(self) -> None:
        """Nothing to do."""

    def pongReceived(self, payload: bytes) -> None:
        """Nothing to do."""

    def textMessageReceived(self, message: str) -> None:
        """Echo text."""
        self.transport.sendTextMessage(message)

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        """Echo bytes."""
        self.transport.sendBytesMessage(bytes(data))

    def connectionLost(self, reason: Failure) -> None:
        """Nothing to do."""


class EchoFactory:
    """Builds :class:`Echo` for every accepted WebSocket."""

    def buildProtocol(self, request: Any) -> Echo:
        """A new echo."""
        return Echo()


class Client(Echo):
    """Client WebSocket protocol: queues what arrives."""

    def __init__(self) -> None:
        self.messages: DeferredQueue[str | bytes] = DeferredQueue()
        self.closed: Deferred[None] = Deferred()

    def textMessageReceived(self, message: str) -> None:
        """Queue text."""
        self.messages.put(message)

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        """Queue bytes."""
        self.messages.put(bytes(data))

    def connectionLost(self, reason: Failure) -> None:
        """Note the end."""
        self.closed.callback(None)


class ClientFactory:
    """Builds :class:`Client`."""

    def buildProtocol(self, url: str) -> Client:
        """A new client."""
        return Client()


@implementer(IPolicyForHTTPS)
class TrustOnly:
    """Client TLS policy: verify against ``ca`` for ``name`` whatever host is dialled."""

    def __init__(self, ca: TestAuthority, name: str) -> None:
        self.options = optionsForClientTLS(name, trustRoot=TLSCertificate.loadPEM(ca.ca_pem))

    def creatorForNetloc(self, hostname: bytes, port: int) -> IOpenSSLClientConnectionCreator:
        """The same verifying options for every connection."""
        return self.options


class Front(Resource):
    """The gateway's role: tunnel upgrades to ``upstream``, answer other requests itself."""

    isLeaf = True

    def __init__(self, upstream: str, tls_creator: IOpenSSLClientConnectionCreator | None = None):
        super().__init__()
        self.upstream = upstream
        self.tls_creator = tls_creator
        self.tunnels: list[Tunnel] = []

    def render_GET(self, request: Request) -> Any:
        """Tunnel ``Upgrade: websocket``; otherwise say what was asked."""
        if not request.requestHeaders.hasHeader(b"upgrade"):
            return b"front saw " + request.uri
        headers = Headers()
        for name, values in request.requestHeaders.getAllRawHeaders():
            headers.setRawHeaders(name, values)
        url = self.upstream + request.uri.decode()
        self.tunnels.append(open_tunnel(request, url, headers, 5.0, reactor, self.tls_creator))
        return NOT_DONE_YET


def echo_server() -> Resource:
    """The upstream's resource tree: a WebSocket echo at ``/chat``."""
    root = Resource()
    root.putChild(b"chat", WebSocketResource(EchoFactory()))
    return root


class NotWebSocket(Resource):
    """An upstream that answers 200 to everything, counting requests."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    def render_GET(self, request: Request) -> bytes:
        """200 with a body, even to an upgrade request."""
        self.requests += 1
        return b"no websocket here"


class WebSocketTests(TestCase):
    """WebSocket pass-through."""

    def _listen(self, service: Any, factory: TrackingFactory) -> None:
        service.startService()
        self.addCleanup(factory.all_closed, reactor)
        self.addCleanup(service.stopService)

    def _upstream(self, resource: Resource, certificates: CertificateMap | None = None) -> str:
        port = free_port()
        factory = TrackingFactory(Site(resource))
        endpoint = f"tcp:{port}:interface=127.0.0.1"
        if certificates is None:
            self._listen(http_listener(reactor, endpoint, factory), factory)
            return f"http://127.0.0.1:{port}"
        self._listen(https_listener(reactor, endpoint, factory, certificates), factory)
        return f"https://127.0.0.1:{port}"

    def _front(self, front: Front, certificates: CertificateMap | None = None) -> int:
        port = free_port()
        factory = TrackingFactory(Site(front))
        endpoint = f"tcp:{port}:interface=127.0.0.1"
        if certificates is None:
            self._listen(http_listener(reactor, endpoint, factory), factory)
        else:
            self._listen(https_listener(reactor, endpoint, factory, certificates), factory)
        return port

    async def _echo(self, url: str, policy: IPolicyForHTTPS | None = None) -> None:
        endpoint = (
            WebSocketClientEndpoint.new(reactor, url, tlsPolicy=policy)
            if policy is not None
            else WebSocketClientEndpoint.new(reactor, url)
        )
        client = await endpoint.connect(ClientFactory())
        client.transport.sendTextMessage("hello ✓")
        self.assertEqual(await client.messages.get(), "hello ✓")
        big = bytes(range(256)) * 4096  # 1 MiB: crosses many reads and writes
        client.transport.sendBytesMessage(big)
        self.assertEqual(await client.messages.get(), big)
        client.transport.loseConnection()
        await client.closed

    async def test_echo_over_http(self) -> None:
        """ws:// through the plain listener: text and 1 MiB binary messages come back."""
        front = Front(self._upstream(echo_server()))
        port = self._front(front)
        await self._echo(f"ws://127.0.0.1:{port}/chat")
        await front.tunnels[0].done
        self.assertEqual(front.tunnels[0].status_code, 101)

    async def test_echo_over_https(self) -> None:
        """wss:// through the TLS listener (SNI certificate, verified by the client)."""
        ca = TestAuthority.create()
        certificates = _certificates(ca, "ws.example.test")
        front = Front(self._upstream(echo_server()))
        port = self._front(front, certificates)
        await self._echo(f"wss://127.0.0.1:{port}/chat", TrustOnly(ca, "ws.example.test"))

    async def test_echo_to_a_tls_upstream(self) -> None:
        """The tunnel verifies a TLS upstream with the given policy and relays through it."""
        ca = TestAuthority.create()
        upstream = self._upstream(echo_server(), _certificates(ca, "up.example.test"))
        creator = TrustOnly(ca, "up.example.test").options
        port = self._front(Front(upstream, creator))
        await self._echo(f"ws://127.0.0.1:{port}/chat")

    async def test_echo_through_the_gateway_site(self) -> None:
        """The real data plane (GatewaySite, routing, forwarder) hands the upgrade to the tunnel."""
        upstream = self._upstream(echo_server())
        table = LiveTable()
        proxy = Proxy(hostname="127.0.0.1", target_url=upstream, enable_https=False)
        table.attach(SnapshotFeed(Snapshot(proxies={proxy.hostname: proxy})))
        forwarder = Forwarder(reactor)
        self.addCleanup(forwarder.close)
        port = free_port()
        factory = TrackingFactory(GatewaySite(GatewayResource(table, forwarder), Config(), reactor))
        self._listen(http_listener(reactor, f"tcp:{port}:interface=127.0.0.1", factory), factory)
        await self._echo(f"ws://127.0.0.1:{port}/chat")

    async def test_closing_the_handle_ends_the_stream(self) -> None:
        """``Tunnel.close()`` (token expiry, ATK-27) ends a live WebSocket at once."""
        front = Front(self._upstream(echo_server()))
        port = self._front(front)
        client = await WebSocketClientEndpoint.new(reactor, f"ws://127.0.0.1:{port}/chat").connect(
            ClientFactory()
        )
        client.transport.sendTextMessage("ping")
        self.assertEqual(await client.messages.get(), "ping")
        front.tunnels[0].close()
        await client.closed.addTimeout(5, reactor)
        self.assertEqual(front.tunnels[0].state, "closed")

    async def test_upstream_200_is_not_a_tunnel(self) -> None:
        """An upgrade answered 200 is relayed; the next pipelined request is HTTP (ATK-16)."""
        upstream = NotWebSocket()
        port = self._front(Front(self._upstream(upstream)))
        response = await raw_exchange(reactor, port, UPGRADE + AFTER)
        first, _, second = response.partition(b"no websocket here")
        self.assertTrue(first.startswith(b"HTTP/1.1 200 OK\r\n"), response)
        self.assertIn(b"front saw /after", second)
        self.assertEqual(upstream.requests, 1)

    async def test_unreachable_upstream_is_502(self) -> None:
        """An upstream that refuses connections gives 502 and the connection stays HTTP."""
        port = self._front(Front(f"http://127.0.0.1:{free_port()}"))
        response = await raw_exchange(reactor, port, UPGRADE + AFTER)
        self.assertTrue(response.startswith(b"HTTP/1.1 502 "), response)
        self.assertIn(b"front saw /after", response)


def _certificates(ca: TestAuthority, name: str) -> CertificateMap:
    certificates = CertificateMap()
    certificates.set_fallback(_thd_generate_fallback(reactor.seconds()))
    certificate = ca.issue(name)
    certificates.apply_snapshot(Snapshot(certificates={certificate.cert_name: certificate}))
    return certificates
