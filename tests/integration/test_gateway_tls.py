"""Integration: the HTTPS listener picks certificates by SNI from the store, live; h2 with curl.

A real TLS listener on loopback (built by ``https_listener``) is fed by a
:class:`~oauthproxy.gateway.tls.CertificateMapService` following a storage
:class:`~oauthproxy.storage.mirror.Mirror`.  Certificates are written to the
store; clients (a TLS probe, curl) check what the next handshake presents.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from oauthproxy.gateway.listeners import https_listener
from oauthproxy.gateway.sni import CertificateMap, server_name_of
from oauthproxy.gateway.tls import FALLBACK_DOMAIN, CertificateMapService
from oauthproxy.storage.mirror import Mirror
from oauthproxy.testing import MemoryStorage
from tests.support.haproxy import free_port
from tests.support.tls import TestAuthority, TrackingFactory, probe_tls

reactor: Any = _reactor


class InfoResource(Resource):
    """Answers with what the gateway knows about the connection, as JSON."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        """The SNI name, protocol version, client address and TLS flag."""
        request.setHeader(b"content-type", b"application/json")
        info = {
            "sni": server_name_of(request),
            "proto": request.clientproto.decode(),
            "client": request.getClientAddress().host,  # type: ignore[attr-defined]
            "secure": request.isSecure(),
        }
        return json.dumps(info).encode()


class TLSGateway:
    """A store, its mirror, the certificate map and an HTTPS listener, all cleaned up."""

    def __init__(self, test: TestCase) -> None:
        self.test = test
        self.storage = MemoryStorage(reactor)
        self.certificates = CertificateMap()
        self.port = free_port()
        self.factory = TrackingFactory(Site(InfoResource()))

    async def start(self) -> None:
        """Start mirror, map service and listener; return once the port is bound."""
        mirror = Mirror(self.storage, reactor, block=0.2)
        mirror.startService()
        self.test.addCleanup(mirror.stopService)
        await mirror.when_loaded()
        service = CertificateMapService(
            self.certificates, mirror, self.storage.certificates, reactor, reactor
        )
        service.startService()
        self.test.addCleanup(service.stopService)
        listener = https_listener(
            reactor, f"tcp:{self.port}:interface=127.0.0.1", self.factory, self.certificates
        )
        listener.startService()
        self.test.addCleanup(self.factory.all_closed, reactor)
        self.test.addCleanup(listener.stopService)
        await self.certificates.when_ready()

    async def presented(self, server_name: str | None) -> str | None:
        """The CN of the certificate the listener presents for ``server_name``."""
        return (await probe_tls(reactor, self.port, server_name)).common_name

    async def presented_within(self, server_name: str, expected: str, seconds: float) -> str | None:
        """Poll (bounded) until ``expected`` is presented; the last CN seen."""
        seen = None
        for _ in range(int(seconds / 0.05)):
            seen = await self.presented(server_name)
            if seen == expected:
                break
            await deferLater(reactor, 0.05, lambda: None)
        return seen


async def curl(*args: str) -> tuple[str, str, int]:
    """Run curl (must be installed); its stdout, stderr and exit code."""
    executable = shutil.which("curl")
    if executable is None:
        raise AssertionError("curl is not installed")
    out, err, code = await getProcessOutputAndValue(executable, args, env={})
    return out.decode(), err.decode(), code


class CertificateLiveTests(TestCase):
    """Certificates written to the store are served without restarting the listener."""

    async def test_added_certificate_is_presented_by_the_next_handshake(self) -> None:
        """Before: the fallback.  After storing a certificate: that certificate, within 1 s."""
        gateway = TLSGateway(self)
        await gateway.start()
        self.assertEqual(await gateway.presented("app.example.test"), FALLBACK_DOMAIN)
        ca = TestAuthority.create()
        await gateway.storage.certificates.create(ca.issue("app.example.test"))
        seen = await gateway.presented_within("app.example.test", "app.example.test", 1.0)
        self.assertEqual(seen, "app.example.test")

    async def test_deleted_certificate_falls_back(self) -> None:
        """After the certificate is deleted from the store the fallback is presented again."""
        gateway = TLSGateway(self)
        ca = TestAuthority.create()
        await gateway.storage.certificates.create(ca.issue("app.example.test"))
        await gateway.start()
        self.assertEqual(await gateway.presented("app.example.test"), "app.example.test")
        await gateway.storage.certificates.delete("app.example.test")
        seen = await gateway.presented_within("app.example.test", FALLBACK_DOMAIN, 1.0)
        self.assertEqual(seen, FALLBACK_DOMAIN)

    async def test_fallback_is_stored_once_for_every_daemon(self) -> None:
        """The generated fallback lands in the store, so other daemons present the same one."""
        gateway = TLSGateway(self)
        await gateway.start()
        stored = await gateway.storage.certificates.get("_fallback")
        assert stored is not None
        outcome = await probe_tls(reactor, gateway.port, None)
        assert outcome.certificate is not None
        self.assertIn(str(outcome.certificate.serial_number), _serial_of(stored.fullchain_pem))


def _serial_of(pem: str | None) -> str:
    from cryptography import x509

    assert pem is not None
    return str(x509.load_pem_x509_certificate(pem.encode()).serial_number)


class CurlTests(TestCase):
    """A real HTTP client negotiates HTTP/2 and the request sees its SNI name."""

    async def _gateway(self) -> tuple[TLSGateway, str]:
        gateway = TLSGateway(self)
        ca = TestAuthority.create()
        await gateway.storage.certificates.create(ca.issue("app.example.test"))
        await gateway.start()
        directory = Path(tempfile.mkdtemp(prefix="gateway-tls-"))
        self.addCleanup(shutil.rmtree, directory, True)
        ca_file = directory / "ca.pem"
        ca_file.write_text(ca.ca_pem)
        return gateway, str(ca_file)

    async def test_curl_http2_negotiates_h2(self) -> None:
        """``curl --http2`` gets HTTP/2 over ALPN; the resource runs on an h2 stream."""
        gateway, ca_file = await self._gateway()
        out, err, code = await curl(
            "-sS",
            "--http2",
            "--cacert",
            ca_file,
            "--resolve",
            f"app.example.test:{gateway.port}:127.0.0.1",
            "-w",
            "\n%{http_version}",
            f"https://app.example.test:{gateway.port}/",
        )
        self.assertEqual(code, 0, err)
        body, version = out.rsplit("\n", 1)
        self.assertEqual(version, "2")
        info = json.loads(body)
        self.assertEqual(
            (info["proto"], info["sni"], info["secure"]), ("HTTP/2", "app.example.test", True)
        )

    async def test_curl_http11_sees_the_sni_name(self) -> None:
        """Over HTTP/1.1 the request also reports the SNI name, and curl verifies the chain."""
        gateway, ca_file = await self._gateway()
        out, err, code = await curl(
            "-sS",
            "--http1.1",
            "--cacert",
            ca_file,
            "--resolve",
            f"app.example.test:{gateway.port}:127.0.0.1",
            f"https://app.example.test:{gateway.port}/",
        )
        self.assertEqual(code, 0, err)
        info = json.loads(out)
        self.assertEqual((info["proto"], info["sni"]), ("HTTP/1.1", "app.example.test"))
