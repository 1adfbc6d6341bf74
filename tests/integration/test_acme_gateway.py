"""Automatic HTTPS end to end: Pebble issues through the real gateway, which then serves it.

The gateway is assembled as the composition root does it: a storage
:class:`~oauthproxy.storage.mirror.Mirror`, the live routing table, the
:class:`~oauthproxy.gateway.tls.CertificateMapService` and ``GatewaySite`` over
``GatewayResource`` (with the HTTP-01 responder) behind real HTTP and HTTPS listeners
on loopback.  The issuing service and :class:`~oauthproxy.acme.autocert.AutoCertService`
run next to it.  Pebble (:mod:`tests.support.pebble`, real HTTP-01 validation, no
``PEBBLE_VA_ALWAYS_VALID``) validates against the gateway's HTTP listener; a TLS
client trusting only Pebble's root then talks HTTPS to the gateway, which was never
restarted.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from attrs import frozen
from cryptography import x509
from twisted.internet import reactor as _reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.ssl import Certificate as TwistedCertificate
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from oauthproxy.acme.autocert import AutoCertService
from oauthproxy.acme.responder import ChallengeResource
from oauthproxy.acme.service import IssuingService, make_issuing_service
from oauthproxy.config import Config
from oauthproxy.gateway.forward import Forwarder
from oauthproxy.gateway.hosts import GatewayResource
from oauthproxy.gateway.listeners import http_listener, https_listener
from oauthproxy.gateway.site import GatewaySite
from oauthproxy.gateway.sni import CertificateMap
from oauthproxy.gateway.table import LiveTable
from oauthproxy.gateway.tls import FALLBACK_DOMAIN, CertificateMapService
from oauthproxy.interfaces import IStorage
from oauthproxy.model import Certificate, Proxy
from oauthproxy.storage.crypto import SecretBox
from oauthproxy.storage.mirror import Mirror
from oauthproxy.storage.redis import connect_storage
from oauthproxy.testing import MemoryStorage
from tests.support.backends import start_backend
from tests.support.pebble import Pebble, free_port, start_pebble
from tests.support.redis import RedisServer
from tests.support.tls import TrackingFactory, probe_tls

reactor: Any = _reactor
#: seconds a test waits for an issuance
WAIT = 60.0


@implementer(IAgentEndpointFactory)
@frozen
class GatewayEndpoints:
    """Connects every URL to the gateway's HTTPS port, verifying against ``root`` for its host."""

    port: int
    root: TwistedCertificate

    def endpointForURI(self, uri: Any) -> IStreamClientEndpoint:
        """TLS to 127.0.0.1:port with SNI and verification for the URL's host."""
        options = optionsForClientTLS(uri.host.decode("ascii"), trustRoot=self.root)
        tcp = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, timeout=5)
        endpoint: IStreamClientEndpoint = wrapClientTLS(options, tcp)
        return endpoint


class GatewayDaemon:
    """What one ``twistd oauthproxy`` runs for automatic HTTPS, on ``storage``.

    A storage mirror, the certificate map service, the live routing table, the gateway
    site with the HTTP-01 responder behind real HTTP and HTTPS listeners, the issuing
    service and autocert: assembled as the composition root does it, stopped by the
    test's cleanups.
    """

    def __init__(self, test: TestCase, storage: IStorage, config: Config, http_port: int) -> None:
        self.test = test
        self.storage = storage
        self.config = config
        self.http_port = http_port
        self.https_port = free_port()
        self.mirror = Mirror(storage, reactor, block=0.2)
        self.issuing: IssuingService = make_issuing_service(reactor, reactor, storage, config)
        self.autocert = AutoCertService(self.mirror, self.issuing, reactor)

    async def start(self) -> None:
        """Start everything; return once both listeners accept connections."""
        test = self.test
        self.mirror.startService()
        test.addCleanup(self.mirror.stopService)
        await self.mirror.when_loaded()
        certificates = CertificateMap()
        map_service = CertificateMapService(
            certificates, self.mirror, self.storage.certificates, reactor, reactor
        )
        map_service.startService()
        test.addCleanup(map_service.stopService)
        table = LiveTable(https_port=self.https_port)
        table.attach(self.mirror)
        test.addCleanup(table.detach)
        forwarder = Forwarder(reactor)
        test.addCleanup(forwarder.close)
        acme = ChallengeResource(self.storage.challenges)
        site = GatewaySite(GatewayResource(table, forwarder, acme=acme), self.config, reactor)
        factory = TrackingFactory(site)
        test.addCleanup(factory.all_closed, reactor)
        for listener in (
            http_listener(reactor, f"tcp:{self.http_port}:interface=127.0.0.1", factory),
            https_listener(
                reactor, f"tcp:{self.https_port}:interface=127.0.0.1", factory, certificates
            ),
        ):
            listener.startService()
            test.addCleanup(listener.stopService)
        await certificates.when_ready()
        for service in (self.issuing, self.autocert):
            service.startService()
            test.addCleanup(service.stopService)

    async def wait_ready(self, cert_name: str, pebble: Pebble) -> Certificate:
        """Poll this daemon's snapshot until ``cert_name`` is ready (bounded by WAIT)."""
        record = None
        for _ in range(int(WAIT / 0.2)):
            record = self.mirror.current.certificates.get(cert_name)
            if record is not None and record.status in ("ready", "failed"):
                break
            await deferLater(reactor, 0.2, lambda: None)
        self.test.assertIsNotNone(record, f"{cert_name} was never requested")
        assert record is not None
        self.test.assertEqual(
            record.status, "ready", f"{record.error}\n{pebble.log_text()[-2000:]}"
        )
        return record

    async def https_get(self, hostname: str, pebble: Pebble) -> tuple[int, bytes]:
        """GET / over HTTPS to this gateway for ``hostname``, trusting only Pebble's root."""
        root = TwistedCertificate.loadPEM(pebble.root_pem().encode("ascii"))
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.test.addCleanup(pool.closeCachedConnections)
        endpoints = GatewayEndpoints(self.https_port, root)
        agent = Agent.usingEndpointFactory(reactor, endpoints, pool)
        response = await agent.request(b"GET", f"https://{hostname}/".encode("ascii"))
        body: bytes = await readBody(response)
        return response.code, body


class GatewayTestCase(TestCase):
    """Per test: Pebble validating against ``http_port`` and a backend to proxy to."""

    timeout = 120

    async def setUp(self) -> None:  # type: ignore[override]
        """Pebble (and its DNS) and the backend."""
        workdir = Path(tempfile.mkdtemp(prefix="oauthproxy-acme-gateway-"))
        self.addCleanup(shutil.rmtree, workdir, True)
        self.http_port = free_port()
        self.pebble = start_pebble(workdir, self.http_port)
        self.addCleanup(self.pebble.stop)
        self.backend = await start_backend(self, reactor)
        self.config = Config(
            acme_directory_url=self.pebble.directory_url,
            acme_staging_url=self.pebble.directory_url,
            acme_ca_bundle=self.pebble.ca_bundle,
            admin_email="admin@example.test",
            cert_gen_max_workers=2,
        )


class AutomaticHttpsTests(GatewayTestCase):
    """A proxy with HTTPS gets a Pebble certificate through the gateway and serves it live."""

    async def setUp(self) -> None:  # type: ignore[override]
        """One daemon on MemoryStorage, its HTTP listener on Pebble's validation port."""
        await super().setUp()
        self.storage = MemoryStorage(reactor)
        self.daemon = GatewayDaemon(self, self.storage, self.config, self.http_port)
        await self.daemon.start()
        self.https_port = self.daemon.https_port
        self.mirror = self.daemon.mirror
        self.issuing = self.daemon.issuing

    async def wait_ready(self, cert_name: str) -> Certificate:
        """The daemon's ready record of ``cert_name``."""
        return await self.daemon.wait_ready(cert_name, self.pebble)

    async def https_get(self, hostname: str) -> tuple[int, bytes]:
        """GET / over HTTPS through the daemon, verified against Pebble's root."""
        return await self.daemon.https_get(hostname, self.pebble)

    async def test_https_proxy_gets_a_pebble_certificate_served_without_restart(self) -> None:
        """Creating an HTTPS proxy orders a certificate (HTTP-01 through the gateway); the
        running HTTPS listener then presents it for that name to a client trusting Pebble."""
        before = await probe_tls(reactor, self.https_port, "app.example.com")
        self.assertIn(
            FALLBACK_DOMAIN, str(before.certificate.subject) if before.certificate else ""
        )
        proxy = Proxy(hostname="app.example.com", target_url=self.backend.url, owner="alice")
        await self.storage.proxies.create(proxy)
        record = await self.wait_ready("proxy-app-example-com")
        self.assertEqual((record.domains, record.owner), (("app.example.com",), "alice"))
        self.assertEqual(self.pebble.order_count(), 1)
        code, _ = await self.https_get("app.example.com")
        self.assertEqual(code, 200)
        self.assertEqual(len(self.backend.state.requests), 1)
        after = await probe_tls(reactor, self.https_port, "app.example.com")
        assert after.certificate is not None
        self.assertEqual(
            after.certificate.extensions.get_extension_for_class(
                x509.SubjectAlternativeName
            ).value.get_values_for_type(x509.DNSName),
            ["app.example.com"],
        )

    async def test_three_name_certificate_serves_every_name(self) -> None:
        """A three-name certificate, validated through the gateway, covers three HTTPS
        proxies (so none gets a certificate of its own) and is served for each name."""
        names = ("one.example.com", "two.example.com", "three.example.com")
        await self.issuing.request_certificate("shared", names)
        for name in names:
            await self.storage.proxies.create(Proxy(hostname=name, target_url=self.backend.url))
        record = await self.wait_ready("shared")
        self.assertEqual(record.domains, names)
        for name in names:
            code, _ = await self.https_get(name)
            self.assertEqual(code, 200, name)
        self.assertEqual(self.pebble.order_count(), 1)
        self.assertEqual(sorted(self.mirror.current.certificates), ["_fallback", "shared"])


class SharedRedisTests(GatewayTestCase):
    """Two daemons on one real redis-server, as behind a load balancer."""

    async def test_one_order_for_a_new_proxy_and_both_daemons_serve_it(self) -> None:
        """Both daemons' autocert see the new HTTPS proxy; one order reaches Pebble (its
        validation lands on the first daemon's listener whichever daemon ordered) and
        both HTTPS listeners serve the certificate."""
        server = RedisServer.for_test(self)
        box = SecretBox.generate()
        daemons = []
        for http_port in (self.http_port, free_port()):
            storage = connect_storage(server.address(), box, 5.0, reactor)
            self.addCleanup(storage.close)
            daemon = GatewayDaemon(self, storage, self.config, http_port)
            await daemon.start()
            daemons.append(daemon)
        proxy = Proxy(hostname="lb.example.com", target_url=self.backend.url)
        await daemons[1].storage.proxies.create(proxy)
        for daemon in daemons:
            await daemon.wait_ready("proxy-lb-example-com", self.pebble)
        for daemon in daemons:
            code, _ = await daemon.https_get("lb.example.com", self.pebble)
            self.assertEqual(code, 200)
        await deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(self.pebble.order_count(), 1)
