"""TLS for the gateway: pick a certificate per SNI name from an in-memory map.

The TLS handshake asks :meth:`CertificateMap.context_for_server_name` for the
``SSL.Context`` of the name the client sent.  That callback runs inside the
handshake and is synchronous, so the map never touches the store: it is
rebuilt from each :class:`~oauthproxy.model.Snapshot` (the storage mirror calls
:meth:`CertificateMap.apply_snapshot` on every change) and swapped whole.

pyOpenSSL refuses changes to a Context that has served a connection, so every
certificate gets its own Context, built once when the certificate (or its
renewal) first appears and reused until its PEMs change.

Names no certificate covers (and clients that send no SNI) get a self-signed
*fallback* certificate, so their handshakes complete and the HTTP layer can
answer 421 instead of the connection just dropping.  The fallback is stored
under :data:`FALLBACK_CERT_NAME` so that every daemon serves the same one
(see :mod:`oauthproxy.gateway.tls`).
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Callable, Iterable

from attrs import define, field, frozen
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.ssl import CertificateOptions
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.web import http
from twisted.web.iweb import IRequest
from zope.interface import implementer

from oauthproxy.errors import InvalidInput
from oauthproxy.model import Certificate, Event, Snapshot

#: the reserved certificate name of the shared self-signed fallback certificate
FALLBACK_CERT_NAME = "_fallback"

_log = Logger()

#: the shape of ``CertificateOptions(contextForServerName=...)``
SniCallback = Callable[[bytes | None], "SSL.Context | None"]


class UnusableCertificate(InvalidInput):
    """A certificate's PEMs cannot be loaded, or its key does not match it."""

    code = "unusable_certificate"


def default_protocols() -> tuple[bytes, ...]:
    """The ALPN protocols every certificate's Context offers: h2 only when Twisted can speak it."""
    if http.H2_ENABLED:
        return (b"h2", b"http/1.1")
    return (b"http/1.1",)


def normalise_server_name(name: bytes | str | None) -> str | None:
    """The lower-case ASCII form of an SNI name or hostname, without a trailing dot.

    Returns None for a missing or non-ASCII name (SNI carries A-labels only).
    """
    if name is None:
        return None
    if isinstance(name, bytes):
        try:
            name = name.decode("ascii")
        except UnicodeDecodeError:
            return None
    elif not name.isascii():
        return None
    name = name.strip().rstrip(".").lower()
    return name or None


def build_context(
    certificate: Certificate,
    protocols: Iterable[bytes],
    sni_callback: SniCallback | None = None,
) -> SSL.Context:
    """A new ``SSL.Context`` serving ``certificate``'s chain and key with ALPN ``protocols``.

    Raises :class:`UnusableCertificate` when the PEMs are missing, malformed or
    do not belong together.
    """
    if not certificate.fullchain_pem or not certificate.private_key_pem:
        raise UnusableCertificate(
            f"certificate {certificate.cert_name!r} has no PEM chain or key",
            field="fullchain_pem",
        )
    try:
        chain = x509.load_pem_x509_certificates(certificate.fullchain_pem.encode("ascii"))
        key = serialization.load_pem_private_key(
            certificate.private_key_pem.encode("ascii"), password=None
        )
        options = CertificateOptions(
            privateKey=crypto.PKey.from_cryptography_key(key),  # type: ignore[arg-type]
            certificate=crypto.X509.from_cryptography(chain[0]),
            extraCertChain=[crypto.X509.from_cryptography(extra) for extra in chain[1:]],
            acceptableProtocols=list(protocols),
            contextForServerName=sni_callback,
        )
        return options.getContext()
    except (ValueError, TypeError, UnicodeEncodeError, SSL.Error) as error:
        raise UnusableCertificate(
            f"certificate {certificate.cert_name!r} cannot be loaded: {error}",
            field="fullchain_pem",
        ) from error


@frozen
class _Loaded:
    """A certificate's Context, remembered with a digest of the PEMs it was built from."""

    pems: bytes
    context: SSL.Context = field(eq=False)
    not_after: float


def _pems(certificate: Certificate) -> bytes:
    """A digest identifying the PEMs (no second plaintext copy of the key is kept)."""
    chain = (certificate.fullchain_pem or "").encode("utf-8", "replace")
    key = (certificate.private_key_pem or "").encode("utf-8", "replace")
    return hashlib.sha256(chain + b"\0" + key).digest()


def _is_servable(certificate: Certificate) -> bool:
    return (
        certificate.status == "ready"
        and bool(certificate.fullchain_pem)
        and bool(certificate.private_key_pem)
        and certificate.cert_name != FALLBACK_CERT_NAME
    )


@implementer(IOpenSSLServerConnectionCreator)
@define
class CertificateMap:
    """Every ready certificate's Context, indexed by the names it serves.

    Also the TLS listeners' connection creator: each connection starts on the
    fallback Context, whose SNI callback switches it to the name's Context.
    """

    protocols: tuple[bytes, ...] = field(factory=default_protocols)
    #: cert_name -> its Context (reused while the PEMs are unchanged)
    _loaded: dict[str, _Loaded] = field(init=False, factory=dict)
    #: lower-case name (exact or ``*.suffix``) -> Context
    _by_name: dict[str, SSL.Context] = field(init=False, factory=dict)
    #: lower-case name -> cert_name, for diagnostics and tests
    _names: dict[str, str] = field(init=False, factory=dict)
    _fallback: _Loaded | None = field(init=False, default=None)
    #: cert_name -> digest of PEMs that could not be loaded (to log each failure once)
    _failed: dict[str, bytes] = field(init=False, factory=dict)
    _waiting: list[Deferred[None]] = field(init=False, factory=list)
    #: the snapshot dicts the index was last built from
    _sources: tuple[object, object] | None = field(init=False, default=None)
    #: called with each new server connection (the TLS metrics watch its handshake)
    on_connection: Callable[[SSL.Connection], None] | None = field(default=None)

    def apply_snapshot(self, snapshot: Snapshot, event: Event | None = None) -> None:
        """Rebuild the name index from ``snapshot`` (a :data:`SnapshotListener`).

        Contexts of unchanged certificates are kept; new and renewed ones are
        built here, once.  A certificate that cannot be loaded is logged and
        left out, and the others still apply.  Snapshots are replaced, never
        mutated, so unchanged ``certificates`` and ``proxies`` dicts (the same
        objects) mean there is nothing to rebuild.
        """
        sources = (snapshot.certificates, snapshot.proxies)
        if self._sources is not None and all(map(operator.is_, sources, self._sources)):
            return  # another kind of record changed: nothing to rebuild
        self._sources = sources
        loaded: dict[str, _Loaded] = {}
        failed: dict[str, bytes] = {}
        for name, certificate in snapshot.certificates.items():
            if name == FALLBACK_CERT_NAME and certificate.status == "ready":
                self._load_fallback(certificate)
                continue
            if not _is_servable(certificate):
                continue
            previous = self._loaded.get(name)
            if previous is not None and previous.pems == _pems(certificate):
                loaded[name] = previous
                continue
            try:
                context = build_context(certificate, self.protocols)
            except UnusableCertificate as error:
                if self._failed.get(name) != _pems(certificate):  # once per bad version
                    _log.error(
                        "skipping certificate {name}: {detail}", name=name, detail=error.detail
                    )
                failed[name] = _pems(certificate)
                continue
            loaded[name] = _Loaded(_pems(certificate), context, certificate.not_after or 0.0)
        names = self._index(snapshot, loaded)
        # Replaced, never mutated: a dict handed out earlier stays consistent.
        self._loaded = loaded
        self._failed = failed
        self._names = names
        self._by_name = {name: loaded[cert_name].context for name, cert_name in names.items()}

    def _index(self, snapshot: Snapshot, loaded: dict[str, _Loaded]) -> dict[str, str]:
        """Name -> cert_name: the latest-expiring certificate per name, explicit choices first."""
        names: dict[str, str] = {}
        ranked = sorted(loaded, key=lambda cert_name: (loaded[cert_name].not_after, cert_name))
        for cert_name in ranked:  # later (longer-lived) certificates overwrite earlier ones
            for domain in snapshot.certificates[cert_name].domains:
                normalised = normalise_server_name(domain)
                if normalised is not None:
                    names[normalised] = cert_name
        for proxy in snapshot.proxies.values():
            hostname = normalise_server_name(proxy.hostname)
            if proxy.cert_name in loaded and hostname is not None:
                names[hostname] = proxy.cert_name
        return names

    def set_fallback(self, certificate: Certificate) -> None:
        """Serve ``certificate`` to unknown names and to clients without SNI."""
        self._load_fallback(certificate)

    def _load_fallback(self, certificate: Certificate) -> None:
        if self._fallback is not None and self._fallback.pems == _pems(certificate):
            return
        try:
            context = build_context(certificate, self.protocols, self.context_for_server_name)
        except UnusableCertificate as error:
            _log.error("cannot use the fallback certificate: {detail}", detail=error.detail)
            return
        self._fallback = _Loaded(_pems(certificate), context, certificate.not_after or 0.0)
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.callback(None)

    def when_ready(self) -> Deferred[None]:
        """Fires once a fallback certificate is loaded, i.e. TLS connections can be accepted."""
        if self._fallback is not None:
            return succeed(None)

        def cancel(waiter: Deferred[None]) -> None:
            if waiter in self._waiting:
                self._waiting.remove(waiter)

        waiter: Deferred[None] = Deferred(cancel)
        self._waiting.append(waiter)
        return waiter

    def certificate_name_for(self, server_name: bytes | str | None) -> str | None:
        """The cert_name a handshake for ``server_name`` is given; None = the fallback."""
        name = normalise_server_name(server_name)
        if name is None:
            return None
        names = self._names
        found = names.get(name)
        if found is None and "." in name:
            found = names.get("*." + name.split(".", 1)[1])
        return found

    def context_for_server_name(self, server_name: bytes | None) -> SSL.Context | None:
        """The SNI callback: the Context for ``server_name``, None to stay on the fallback.

        Runs inside the handshake; reads memory only.  A wildcard ``*.example.com``
        covers exactly one more label (``a.example.com``, not ``a.b.example.com``).
        """
        name = normalise_server_name(server_name)
        if name is None:
            return None
        by_name = self._by_name
        context = by_name.get(name)
        if context is None and "." in name:
            context = by_name.get("*." + name.split(".", 1)[1])
        return context

    def serverConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        """Start a server connection on the fallback Context (the SNI callback may switch it)."""
        fallback = self._fallback
        if fallback is None:
            raise UnusableCertificate("no fallback certificate is loaded yet")
        connection = SSL.Connection(fallback.context, None)
        if self.on_connection is not None:
            self.on_connection(connection)
        return connection


def server_name_of(request: IRequest) -> str | None:
    """The SNI name the client sent on ``request``'s TLS connection.

    None for plain HTTP and for TLS clients that sent no SNI.  Works for
    HTTP/1.1 channels and HTTP/2 streams, behind PROXY protocol or not.
    """
    channel = getattr(request, "channel", None)
    transport = getattr(channel, "transport", None)
    if transport is None:  # an H2Stream has no transport; its connection does
        transport = getattr(getattr(channel, "_conn", None), "transport", None)
    for _ in range(4):  # TLS may sit below a PROXY wrapper: a short, bounded walk down
        if transport is None:
            return None
        if isinstance(transport, TLSMemoryBIOProtocol):
            handle = transport.getHandle()  # type: ignore[no-untyped-call]
            if isinstance(handle, SSL.Connection):
                return normalise_server_name(handle.get_servername())
        transport = getattr(transport, "transport", None)
    return None
