"""Certificate authorities from PEM text, for the daemon's TLS clients (pure).

Three clients trust CAs an operator gives as PEM: an HTTPS upstream with its own
``upstream_ca_pem`` and Redis with ``OAUTHPROXY_REDIS_CA_BUNDLE`` trust exactly those
(:func:`only_authorities`); client metadata documents trust them besides the
system's (:class:`~oauthproxy.oauth.resource_cimd.SystemAndExtraAuthorities`, built on
:func:`pem_certificates`).
"""

from __future__ import annotations

from cryptography import x509
from OpenSSL import crypto
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.internet.ssl import Certificate, trustRootFromCertificates


def pem_certificates(pem: bytes) -> list[crypto.X509]:
    """Every certificate of a PEM bundle; ValueError if there is none or one is broken."""
    return [crypto.X509.from_cryptography(c) for c in x509.load_pem_x509_certificates(pem)]


def only_authorities(pem: bytes) -> IOpenSSLTrustRoot:
    """A trust root of exactly the CAs in ``pem`` (the system's are not trusted)."""
    certificates = [Certificate(c) for c in pem_certificates(pem)]  # type: ignore[no-untyped-call]
    trust: IOpenSSLTrustRoot = trustRootFromCertificates(certificates)  # type: ignore[no-untyped-call]
    return trust
