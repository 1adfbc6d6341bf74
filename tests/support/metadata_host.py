# twisted.web and trial are partly untyped; mypy strict would flag calls into them
# mypy: disable-error-code="no-untyped-call"
"""An HTTPS host on loopback serving one client ID metadata document (CIMD, MCP-7).

The daemon fetches CIMD documents over verified TLS, so the host presents a leaf
certificate for ``127.0.0.1`` (an IP SAN) from its own throwaway CA, whose PEM is
written to a file for the daemon's ``OAUTHPROXY_CIMD_CA_BUNDLE``.  The document's
``client_id`` is its own URL, as MCP-7 requires.  The listener runs in the test's
reactor and stops in a cleanup.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
from collections.abc import Mapping
from typing import Any

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor
from twisted.internet.ssl import PrivateCertificate
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from tests.support.tls import TestAuthority

LOOPBACK = "127.0.0.1"


@frozen
class MetadataHost:
    """Where the document is served and the CA file that verifies the host."""

    url: str
    ca_bundle: str


def _leaf_pem(authority: TestAuthority) -> bytes:
    """Key and certificate (IP SAN ``127.0.0.1``) signed by ``authority``, as PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)]))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
            critical=False,
        )
        .sign(authority.key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem + leaf.public_bytes(serialization.Encoding.PEM)


def start_metadata_host(test: TestCase, fields: Mapping[str, Any]) -> MetadataHost:
    """Serve ``fields`` plus ``client_id`` (the URL) at ``https://127.0.0.1:<port>/client.json``."""
    authority = TestAuthority.create("oauthproxy CIMD test CA")
    certificate = PrivateCertificate.loadPEM(_leaf_pem(authority))
    root = Resource()
    port = reactor.listenSSL(  # type: ignore[attr-defined]
        0, Site(root), certificate.options(), interface=LOOPBACK
    )
    test.addCleanup(port.stopListening)
    url = f"https://{LOOPBACK}:{port.getHost().port}/client.json"
    body = json.dumps({**fields, "client_id": url}).encode()
    root.putChild(b"client.json", Data(body, "application/json"))
    bundle = os.path.abspath(test.mktemp())
    with open(bundle, "w", encoding="ascii") as f:
        f.write(authority.ca_pem)
    return MetadataHost(url, bundle)
