"""Integration: HAProxy sends PROXY v1/v2 headers to the gateway's PROXY listeners.

A client bound to 127.0.0.7 connects through a real HAProxy (which connects
from 127.0.0.1); the resource behind the listener must see 127.0.0.7.  A
listener that does not trust HAProxy's address refuses the connection
(ATK-19).  For ``proxy-https`` the TLS handshake runs *after* the header.
The last test puts the whole data plane (``GatewaySite``, forwarding) behind
the PROXY listener and checks X-Forwarded-For at a real backend.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

from oauthproxy.config import Config
from oauthproxy.gateway.forward import Forwarder
from oauthproxy.gateway.hosts import GatewayResource
from oauthproxy.gateway.listeners import proxy_http_listener, proxy_https_listener
from oauthproxy.gateway.proxyproto import TrustedNetworks
from oauthproxy.gateway.site import GatewaySite
from oauthproxy.gateway.sni import CertificateMap
from oauthproxy.gateway.table import LiveTable
from oauthproxy.gateway.tls import _thd_generate_fallback
from oauthproxy.model import Proxy, Snapshot
from tests.integration.test_gateway_tls import InfoResource
from tests.support.backends import SnapshotFeed, start_backend
from tests.support.haproxy import free_port, start_haproxy
from tests.support.tls import ProbeClient, TestAuthority, TrackingFactory, raw_exchange

reactor: Any = _reactor

CLIENT_ADDRESS = "127.0.0.7"
REQUEST = b"GET /who HTTP/1.1\r\nHost: app.example.test\r\nConnection: close\r\n\r\n"


def _body(response: bytes) -> dict[str, Any]:
    head, _, body = response.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise AssertionError(f"unexpected answer {response[:200]!r}")
    result: dict[str, Any] = json.loads(body)
    return result


class ProxyGateway:
    """A PROXY listener (http or https) serving :class:`InfoResource`."""

    def __init__(self, test: TestCase, trusted: tuple[str, ...] = ("127.0.0.0/8",)) -> None:
        self.test = test
        self.trusted = TrustedNetworks.parse(trusted)
        self.port = free_port()
        self.factory = TrackingFactory(Site(InfoResource()))

    def _start(self, service: Any) -> None:
        service.startService()
        self.test.addCleanup(self.factory.all_closed, reactor)
        self.test.addCleanup(service.stopService)

    def start_http(self) -> None:
        """Listen with socket -> PROXY -> HTTP."""
        self._start(
            proxy_http_listener(
                reactor, f"tcp:{self.port}:interface=127.0.0.1", self.factory, self.trusted, 5.0
            )
        )

    def start_https(self) -> None:
        """Listen with socket -> PROXY -> TLS -> HTTP, with a certificate for app.example.test."""
        certificates = CertificateMap()
        certificates.set_fallback(_thd_generate_fallback(reactor.seconds()))
        certificate = TestAuthority.create().issue("app.example.test")
        certificates.apply_snapshot(Snapshot(certificates={certificate.cert_name: certificate}))
        self._start(
            proxy_https_listener(
                reactor,
                f"tcp:{self.port}:interface=127.0.0.1",
                self.factory,
                certificates,
                self.trusted,
                5.0,
            )
        )


class HAProxyTests(TestCase):
    """The client's real address arrives through HAProxy."""

    async def test_send_proxy_v1_reveals_the_client(self) -> None:
        """With ``send-proxy`` the resource sees 127.0.0.7, not HAProxy's 127.0.0.1."""
        gateway = ProxyGateway(self)
        gateway.start_http()
        haproxy = start_haproxy(self, gateway.port, "send-proxy")
        response = await raw_exchange(reactor, haproxy.front_port, REQUEST, bind=CLIENT_ADDRESS)
        self.assertEqual(_body(response)["client"], CLIENT_ADDRESS)

    async def test_send_proxy_v2_reveals_the_client(self) -> None:
        """With ``send-proxy-v2`` the resource sees 127.0.0.7."""
        gateway = ProxyGateway(self)
        gateway.start_http()
        haproxy = start_haproxy(self, gateway.port, "send-proxy-v2")
        response = await raw_exchange(reactor, haproxy.front_port, REQUEST, bind=CLIENT_ADDRESS)
        self.assertEqual(_body(response)["client"], CLIENT_ADDRESS)

    async def test_tls_inside_proxy(self) -> None:
        """``proxy-https``: the header, then TLS with SNI; the client address survives both."""
        gateway = ProxyGateway(self)
        gateway.start_https()
        haproxy = start_haproxy(self, gateway.port, "send-proxy-v2")
        response = await raw_exchange(
            reactor,
            haproxy.front_port,
            REQUEST,
            bind=CLIENT_ADDRESS,
            tls=ProbeClient("app.example.test", (b"http/1.1",)),
        )
        info = _body(response)
        self.assertEqual(
            (info["client"], info["sni"], info["secure"]),
            (CLIENT_ADDRESS, "app.example.test", True),
        )

    async def test_untrusted_source_is_refused(self) -> None:
        """A listener that does not trust HAProxy's address answers nothing (ATK-19)."""
        gateway = ProxyGateway(self, trusted=("10.0.0.0/8",))
        gateway.start_http()
        haproxy = start_haproxy(self, gateway.port, "send-proxy")
        response = await raw_exchange(reactor, haproxy.front_port, REQUEST, bind=CLIENT_ADDRESS)
        self.assertEqual(response, b"")

    async def test_direct_request_without_header_is_refused(self) -> None:
        """Plain HTTP straight to a PROXY listener is dropped: no guessing (ATK-19)."""
        gateway = ProxyGateway(self)
        gateway.start_http()
        response = await raw_exchange(reactor, gateway.port, REQUEST, bind=CLIENT_ADDRESS)
        self.assertEqual(response, b"")


class FullGatewayTests(TestCase):
    """The whole data plane behind HAProxy: the backend sees the client in X-Forwarded-For."""

    async def test_backend_sees_the_real_client_in_x_forwarded_for(self) -> None:
        """A spoofed X-Forwarded-For is replaced by the address from the PROXY header."""
        backend = await start_backend(self, reactor)
        table = LiveTable()
        table.attach(
            SnapshotFeed(
                Snapshot(
                    proxies={
                        "app.example.test": Proxy(
                            hostname="app.example.test",
                            target_url=backend.url,
                            enable_https=False,
                        )
                    }
                )
            )
        )
        forwarder = Forwarder(reactor)
        self.addCleanup(forwarder.close)
        site = GatewaySite(GatewayResource(table, forwarder), Config(), reactor)
        factory = TrackingFactory(site)
        port = free_port()
        service = proxy_http_listener(
            reactor,
            f"tcp:{port}:interface=127.0.0.1",
            factory,
            TrustedNetworks.parse(["127.0.0.1/32"]),
            5.0,
        )
        service.startService()
        self.addCleanup(factory.all_closed, reactor)
        self.addCleanup(service.stopService)
        haproxy = start_haproxy(self, port, "send-proxy-v2")
        request = (
            b"GET /echo HTTP/1.1\r\nHost: app.example.test\r\nX-Forwarded-For: 6.6.6.6\r\n"
            b"Connection: close\r\n\r\n"
        )
        response = await raw_exchange(reactor, haproxy.front_port, request, bind=CLIENT_ADDRESS)
        seen = _body(response)
        forwarded = [value for name, value in seen["headers"] if name.lower() == "x-forwarded-for"]
        self.assertEqual(forwarded, [CLIENT_ADDRESS])
