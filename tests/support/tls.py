"""Throwaway certificates, TLS probes and raw loopback exchanges for gateway tests.

:class:`TestAuthority` is a CA made on the spot (ECDSA P-256: key generation
takes microseconds) that issues :class:`~oauthproxy.model.Certificate` records
ready for the certificate map.  :func:`handshake_in_memory` runs a complete
TLS handshake against a server connection creator without sockets;
:func:`probe_tls` does the same over a real loopback connection.  Both report
which certificate the server presented and which ALPN protocol it chose.
:func:`raw_exchange` sends bytes (optionally over TLS, from a chosen source
address) and returns the whole answer; :class:`TrackingFactory` lets a test
wait until the server side of its connections is closed too.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from typing import Any

from attrs import define, field, frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import (
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import Clock, deferLater
from twisted.protocols.policies import WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.test import iosim
from zope.interface import implementer

from oauthproxy.model import Certificate

_DAY = datetime.timedelta(days=1)


def _now() -> datetime.datetime:
    # Test certificates only need to be valid around the wall-clock time of the run.
    return datetime.datetime.now(datetime.UTC)


@define
class TestAuthority:
    """A throwaway certificate authority."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    _serial: int = field(default=1)

    @classmethod
    def create(cls, name: str = "oauthproxy test CA") -> TestAuthority:
        """A new self-signed CA called ``name``."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - _DAY)
            .not_valid_after(_now() + 30 * _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    @property
    def ca_pem(self) -> str:
        """The CA certificate as PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def issue(
        self,
        *domains: str,
        cert_name: str | None = None,
        common_name: str | None = None,
        ip_addresses: Sequence[str] = (),
    ) -> Certificate:
        """A ready certificate record for ``domains`` (fullchain = leaf + this CA).

        ``ip_addresses`` are named too (for servers reached by address, e.g. Redis
        behind Sentinel, which hands out its servers' addresses).
        """
        key = ec.generate_private_key(ec.SECP256R1())
        self._serial += 1
        leaf = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or domains[0])])
            )
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(self._serial)
            .not_valid_before(_now() - _DAY)
            .not_valid_after(_now() + 30 * _DAY)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName(domain) for domain in domains]
                    + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
                ),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        chain = leaf.public_bytes(serialization.Encoding.PEM) + self.certificate.public_bytes(
            serialization.Encoding.PEM
        )
        return Certificate(
            cert_name=cert_name or domains[0],
            domains=tuple(domains),
            status="ready",
            fullchain_pem=chain.decode("ascii"),
            private_key_pem=key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode("ascii"),
            not_after=leaf.not_valid_after_utc.timestamp(),
        )


def common_name(certificate: x509.Certificate | None) -> str | None:
    """The subject CN of ``certificate`` (None for no certificate)."""
    if certificate is None:
        return None
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


@frozen
class TLSOutcome:
    """What a client saw of a TLS handshake."""

    #: the server's leaf certificate; None if the handshake failed before it
    certificate: x509.Certificate | None
    #: the ALPN protocol the server chose, if any
    alpn: bytes | None
    #: the failure that ended the handshake, if it did not complete
    error: Failure | None = None

    @property
    def common_name(self) -> str | None:
        """The presented certificate's CN."""
        return common_name(self.certificate)


@implementer(IOpenSSLClientConnectionCreator)
@frozen
class ProbeClient:
    """A TLS client that sends ``server_name`` (SNI) and offers ``protocols``, verifying nothing."""

    server_name: str | None
    protocols: Sequence[bytes] = (b"h2", b"http/1.1")

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        """A fresh client connection (no verification: the test inspects the certificate)."""
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_verify(SSL.VERIFY_NONE, lambda *args: True)
        if self.protocols:
            context.set_alpn_protos(list(self.protocols))
        connection = SSL.Connection(context, None)
        if self.server_name is not None:
            connection.set_tlsext_host_name(self.server_name.encode("ascii"))
        return connection


@implementer(IHandshakeListener)
class _Observer(Protocol):
    """Records the outcome of the handshake and hangs up."""

    def __init__(self) -> None:
        self.outcome: Deferred[TLSOutcome] = Deferred()

    def _result(self, error: Failure | None) -> TLSOutcome:
        assert self.transport is not None
        handle = self.transport.getHandle()  # type: ignore[attr-defined]
        peer = handle.get_peer_certificate()
        alpn = handle.get_alpn_proto_negotiated() or None
        return TLSOutcome(peer.to_cryptography() if peer is not None else None, alpn, error)

    def handshakeCompleted(self) -> None:
        """Report the certificate and ALPN, then close."""
        if not self.outcome.called:
            self.outcome.callback(self._result(None))
        assert self.transport is not None
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """A connection lost before the handshake completed is a failed handshake."""
        if not self.outcome.called:
            self.outcome.callback(TLSOutcome(None, None, reason))


def handshake_in_memory(
    server: IOpenSSLServerConnectionCreator,
    server_name: str | None,
    protocols: Sequence[bytes] = (b"h2", b"http/1.1"),
) -> TLSOutcome:
    """Run a TLS handshake between ``server`` and a probe client in memory (no sockets)."""
    clock = Clock()  # TLS write aggregation schedules calls: keep them off the real reactor
    server_factory = TLSMemoryBIOFactory(server, False, Factory.forProtocol(Protocol), clock)
    server_side = server_factory.buildProtocol(None)
    observer = _Observer()
    client_factory = TLSMemoryBIOFactory(
        ProbeClient(server_name, protocols), True, Factory.forProtocol(lambda: observer), clock
    )
    client_side = client_factory.buildProtocol(None)
    pump = iosim.connect(
        server_side,
        iosim.makeFakeServer(server_side),
        client_side,
        iosim.makeFakeClient(client_side),
        greet=False,
    )
    for _ in range(20):  # a handshake takes a few round trips; bounded
        pump.flush()
        clock.advance(0.01)
        if observer.outcome.called:
            break
    results: list[TLSOutcome] = []
    observer.outcome.addCallback(results.append)
    if not results:
        raise AssertionError("the in-memory TLS handshake did not finish")
    return results[0]


def probe_tls(
    reactor: object,
    port: int,
    server_name: str | None,
    protocols: Sequence[bytes] = (b"h2", b"http/1.1"),
    host: str = "127.0.0.1",
) -> Deferred[TLSOutcome]:
    """Handshake with a real listener on ``host:port`` and report what it presented."""
    endpoint = wrapClientTLS(
        ProbeClient(server_name, protocols), TCP4ClientEndpoint(reactor, host, port, timeout=5)
    )
    observer = _Observer()
    connectProtocol(endpoint, observer)  # type: ignore[no-untyped-call]
    return observer.outcome


class _Exchange(Protocol):
    """Sends ``data`` on connect and collects everything until the server closes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.received = b""
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        """Send the request bytes."""
        assert self.transport is not None
        self.transport.write(self.data)

    def dataReceived(self, data: bytes) -> None:
        """Keep the answer."""
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """The answer is complete when the server closes."""
        if not self.done.called:
            self.done.callback(self.received)


async def raw_exchange(
    reactor: Any,
    port: int,
    data: bytes,
    *,
    bind: str | None = None,
    tls: IOpenSSLClientConnectionCreator | None = None,
    timeout: float = 10.0,
) -> bytes:
    """Send ``data`` to ``127.0.0.1:port`` (from ``bind``, over ``tls``); all bytes until close.

    The request should ask the server to close (``Connection: close``).
    """
    endpoint: Any = TCP4ClientEndpoint(
        reactor, "127.0.0.1", port, timeout=5, bindAddress=(bind, 0) if bind else None
    )
    if tls is not None:
        endpoint = wrapClientTLS(tls, endpoint)
    exchange = _Exchange(data)
    await connectProtocol(endpoint, exchange)  # type: ignore[no-untyped-call]
    exchange.done.addTimeout(timeout, reactor)
    return await exchange.done


class TrackingFactory(WrappingFactory):
    """Wraps a server factory and knows its open connections, so tests can wait them out."""

    async def all_closed(self, reactor: Any, timeout: float = 5.0) -> None:
        """Wait (bounded) until every connection made through this factory is gone."""
        for _ in range(int(timeout / 0.02)):
            if not self.protocols:
                return
            await deferLater(reactor, 0.02, lambda: None)
        raise AssertionError(f"{len(self.protocols)} connection(s) still open after {timeout} s")
