"""In-memory twins used by the ACME tests.

:class:`FakeOrderClient` is the twin of :class:`~oauthproxy.acme.client.IOrderClient`:
each call returns a Deferred the test fires (or that fires at once with a canned
chain), and every order is recorded.  Storage comes from
:class:`oauthproxy.testing.MemoryStorage`.
"""

from __future__ import annotations

import datetime

from attrs import define, field
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from oauthproxy.acme.client import (
    HttpChallenge,
    IOrderClient,
    KeyKind,
    OrderCancelled,
    OrderRequest,
    PendingOrder,
)

EPOCH = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
#: the account URL the fake CA reports for every order
ACCOUNT_URL = "https://acme.test/acct/1"


def make_chain(
    domains: list[str],
    days: int = 90,
    issuer_cn: str = "Test CA",
    start: datetime.datetime | None = None,
    seconds: int = 0,
) -> tuple[str, bytes]:
    """A PEM chain (leaf + issuer) for ``domains`` and the leaf's DER.

    The leaf is valid from ``start`` (default :data:`EPOCH`, read at call time so that
    tests can patch it) for ``days`` days and ``seconds`` seconds.
    """
    if start is None:
        start = EPOCH
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(EPOCH)
        .not_valid_after(EPOCH + datetime.timedelta(days=365))
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days, seconds=seconds))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in domains]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, ca))
    return pem.decode("ascii"), leaf.public_bytes(serialization.Encoding.DER)


@implementer(IOrderClient)
@define
class FakeOrderClient:
    """Records orders; completes them with ``chain`` unless ``manual`` is set.

    With ``manual`` the test fires ``completions[i]`` itself (callback with a chain,
    errback with an :class:`~oauthproxy.acme.client.AcmeOrderError`).
    """

    chain: str = ""
    manual: bool = False
    requests: list[OrderRequest] = field(factory=list)
    completions: list[Deferred[str]] = field(factory=list)
    keys: list[KeyKind] = field(factory=list)
    #: raised by :meth:`begin` when set (an unexpected library error)
    begin_error: Exception | None = None
    cancelled: bool = False
    #: order URLs the fake CA still has pending: :meth:`begin` resumes these
    resumable: set[str] = field(factory=set)

    def generate_key(self, kind: KeyKind) -> Deferred[str]:
        """A distinct fake PEM per call."""
        self.keys.append(kind)
        return succeed(f"{kind}-key-{len(self.keys)}")

    def begin(self, request: OrderRequest) -> Deferred[PendingOrder]:
        """Record the order; one challenge per domain.

        A ``resume_url`` in :attr:`resumable` is resumed (same URL, ``resumed``); any
        other request gets a new order ``https://acme.test/order/<n>``.
        """
        self.requests.append(request)
        if self.begin_error is not None:
            raise self.begin_error
        n = len(self.requests)
        found = tuple(
            HttpChallenge(domain, f"token{n}-{i}", f"token{n}-{i}.thumb")
            for i, domain in enumerate(request.domains)
        )
        resumed = request.resume_url is not None and request.resume_url in self.resumable
        url = request.resume_url if resumed else f"https://acme.test/order/{n}"
        assert url is not None
        self.resumable.add(url)
        return succeed(PendingOrder(found, n, url, ACCOUNT_URL, resumed))

    def complete(self, order: PendingOrder, timeout: float) -> Deferred[str]:
        """The canned chain, or a Deferred left for the test to fire."""
        if not self.manual:
            return succeed(self.chain)
        d: Deferred[str] = Deferred()
        self.completions.append(d)
        return d

    def cancel_all(self) -> None:
        """Abandon the open completions, as the threaded client's polling does."""
        self.cancelled = True
        for d in self.completions:
            if not d.called:
                d.errback(OrderCancelled("abandoned"))
