"""Keep the gateway's :class:`~oauthproxy.gateway.sni.CertificateMap` current.

:class:`CertificateMapService` subscribes the map to the snapshot source (so a
certificate that becomes ready is served by the next handshake, and a deleted
one stops being served) and makes sure the shared self-signed fallback
certificate exists: it is read from the certificate store, or generated once
in a thread and stored under :data:`~oauthproxy.gateway.sni.FALLBACK_CERT_NAME`,
so every daemon behind a load balancer presents the same one.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable

from attrs import define, field
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from oauthproxy.errors import Conflict, OAuthProxyError, StorageUnavailable
from oauthproxy.gateway.sni import FALLBACK_CERT_NAME, CertificateMap
from oauthproxy.interfaces import ICertificateStore, ISnapshotSource
from oauthproxy.model import Certificate

#: the only name in the fallback certificate (``.invalid`` can never be a real host)
FALLBACK_DOMAIN = "fallback.oauthproxy.invalid"
#: ten years: the fallback is never renewed
_FALLBACK_LIFETIME = 10 * 365 * 86400.0

_log = Logger()


def _thd_generate_fallback(now: float) -> Certificate:
    """A new self-signed ECDSA P-256 certificate for :data:`FALLBACK_DOMAIN` (runs in a thread)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, FALLBACK_DOMAIN)])
    not_before = datetime.datetime.fromtimestamp(now - 86400, datetime.UTC)
    not_after = datetime.datetime.fromtimestamp(now + _FALLBACK_LIFETIME, datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(FALLBACK_DOMAIN)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Certificate(
        cert_name=FALLBACK_CERT_NAME,
        domains=(FALLBACK_DOMAIN,),
        status="ready",
        fullchain_pem=certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        private_key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii"),
        not_before=not_before.timestamp(),
        not_after=not_after.timestamp(),
        fingerprint_sha256=hashlib.sha256(
            certificate.public_bytes(serialization.Encoding.DER)
        ).hexdigest(),
        issuer=FALLBACK_DOMAIN,
        created_at=now,
        updated_at=now,
    )


async def ensure_fallback(
    store: ICertificateStore, threads: IReactorThreads, clock: IReactorTime
) -> Certificate:
    """The stored fallback certificate, generated (in a thread) and stored if there is none.

    When another daemon stores one first (``Conflict``), theirs is used.  When
    the store cannot be reached, a fresh one is used for this process only, so
    TLS keeps working; it is not stored.
    """
    try:
        stored = await store.get(FALLBACK_CERT_NAME)
    except OAuthProxyError as error:  # StorageUnavailable, or a record the codec rejects
        _log.warn("fallback certificate not readable ({detail}); using a local one", detail=error)
        return await deferToThreadPool(
            threads, threads.getThreadPool(), _thd_generate_fallback, clock.seconds()
        )
    if stored is not None and stored.fullchain_pem and stored.private_key_pem:
        return stored
    generated = await deferToThreadPool(
        threads, threads.getThreadPool(), _thd_generate_fallback, clock.seconds()
    )
    try:
        await store.create(generated)
    except Conflict:
        winner = await store.get(FALLBACK_CERT_NAME)
        if winner is not None and winner.fullchain_pem and winner.private_key_pem:
            return winner
    except StorageUnavailable as error:
        _log.warn("fallback certificate not stored ({detail}); using it locally", detail=error)
    return generated


@define(slots=False)
class CertificateMapService(Service):
    """Feeds ``certificates`` from ``source`` and loads the fallback certificate on start."""

    certificates: CertificateMap
    source: ISnapshotSource
    store: ICertificateStore
    threads: IReactorThreads
    clock: IReactorTime
    _unsubscribe: Callable[[], None] | None = field(init=False, default=None)

    def startService(self) -> None:
        """Subscribe to snapshots (applied at once) and load or create the fallback."""
        Service.startService(self)  # type: ignore[no-untyped-call]
        self._unsubscribe = self.source.subscribe(self.certificates.apply_snapshot)
        loading = Deferred.fromCoroutine(ensure_fallback(self.store, self.threads, self.clock))
        loading.addCallback(self.certificates.set_fallback)
        loading.addErrback(
            lambda failure: _log.failure("cannot load the fallback certificate", failure)
        )

    def stopService(self) -> None:
        """Stop following snapshots."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        Service.stopService(self)  # type: ignore[no-untyped-call]
