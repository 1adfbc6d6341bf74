"""Automatic certificates for HTTPS proxies: order one for every name that has none.

:class:`AutoCertService` follows the snapshot (``ISnapshotSource.subscribe``).  For each
proxy with ``enable_https`` it asks :func:`plan_certificate` whether the hostname is
covered: by the proxy's explicit ``cert_name``, or by any certificate whose names cover
it (wildcards included), ``ready`` or ``pending``.  When none is, it asks the issuing
service (:meth:`~oauthproxy.acme.service.IssuingService.request_certificate`) for one
named after the hostname (:func:`auto_cert_name`), production unless ``Proxy.staging``,
owned by the proxy's owner, with ADMIN_EMAIL as contact.  The issuing service then owns
the order, its retries and renewals; a failed automatic certificate is retried by it,
never re-requested here.  When the proxy's ``staging`` flag changes, its automatic
certificate is converted to the other directory (the seed's ``proxy-update
--production-cert``); the certificate it has is served until the new one is ready.

Several daemons follow the same snapshot and may ask at the same moment: the store
creates a certificate once and the others get ``Conflict``, which is expected.
Hostnames no public CA can certify (IP literals, ``localhost``, single labels, special-use
names) are skipped with one log line each.

:func:`covers` and :func:`is_public_name` are pure and shared with the admin API.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from attrs import define, field, frozen
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from oauthproxy.acme.certs import normalize_domains
from oauthproxy.errors import Conflict, InvalidInput
from oauthproxy.gateway.sni import FALLBACK_CERT_NAME
from oauthproxy.interfaces import ISnapshotSource
from oauthproxy.model import ADMIN_TOKEN_NAME, Certificate, Event, Proxy, Snapshot

#: automatic certificate names stay short enough for every API path and Proxy.cert_name
MAX_AUTO_NAME = 64
#: seconds a request stays "asked for" while its record has not reached the snapshot yet,
#: and the pause after a request failed for another reason than Conflict
REQUEST_HOLD = 60.0
#: special-use suffixes (RFC 6761, RFC 6762, ICANN's .internal) no public CA certifies
_PRIVATE_SUFFIXES = ("localhost", "local", "invalid", "internal", "home.arpa")


def covers(domains: Iterable[str], hostname: str) -> bool:
    """Whether a certificate for ``domains`` is valid for ``hostname``.

    Names compare case-insensitively without a trailing dot; ``*.example.com`` covers
    exactly one more label (``a.example.com``, neither ``example.com`` nor
    ``a.b.example.com``), as TLS clients check (RFC 6125 6.4.3).
    """
    host = hostname.strip().rstrip(".").lower()
    if not host:
        return False
    parent = host.split(".", 1)[1] if "." in host else None
    for raw in domains:
        name = raw.strip().rstrip(".").lower()
        if name == host:
            return True
        if parent is not None and name.startswith("*.") and name[2:] == parent:
            return True
    return False


def is_public_name(hostname: str) -> str | None:
    """None if a public CA could certify ``hostname`` over HTTP-01; else why not."""
    host = hostname.strip().rstrip(".").lower()
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        return "an IP address"
    if "." not in host:
        return "a single-label name"
    if any(host == suffix or host.endswith("." + suffix) for suffix in _PRIVATE_SUFFIXES):
        return "a special-use name"
    try:
        normalize_domains([host])
    except InvalidInput as error:
        return error.detail
    return None


def auto_cert_name(hostname: str, hashed: bool = False) -> str:
    """The automatic certificate's name for ``hostname``: ``proxy-`` and dashes for dots.

    Names longer than :data:`MAX_AUTO_NAME`, and the ``hashed`` variant (for the rare
    hostname whose plain name is taken by a certificate for another name, e.g. ``a-b.com``
    and ``a.b-com``), end in eight hex digits of the hostname's SHA-256.
    """
    host = hostname.strip().rstrip(".").lower()
    name = "proxy-" + host.replace(".", "-")
    if not hashed and len(name) <= MAX_AUTO_NAME:
        return name
    digest = hashlib.sha256(host.encode("utf-8")).hexdigest()[:8]
    return f"{name[: MAX_AUTO_NAME - 9].rstrip('-')}-{digest}"


@frozen
class Order:
    """Request certificate ``cert_name`` for ``hostname``."""

    cert_name: str
    hostname: str
    staging: bool
    owner: str


@frozen
class Convert:
    """Move automatic certificate ``cert_name`` to the staging (or production) directory."""

    cert_name: str
    hostname: str
    staging: bool


@frozen
class Unsupported:
    """``hostname`` cannot get a public certificate (``reason`` says why)."""

    hostname: str
    reason: str


def _usable(certificate: Certificate | None, hostname: str) -> bool:
    """A ready or pending certificate (not the fallback) covering ``hostname``."""
    return (
        certificate is not None
        and certificate.cert_name != FALLBACK_CERT_NAME
        and certificate.status in ("ready", "pending")
        and covers(certificate.domains, hostname)
    )


def _own_certificate(hostname: str, certificates: Mapping[str, Certificate]) -> Certificate | None:
    """The automatic certificate of ``hostname``, if it exists (either name variant)."""
    for hashed in (False, True):
        existing = certificates.get(auto_cert_name(hostname, hashed))
        if existing is not None and covers(existing.domains, hostname):
            return existing
    return None


def plan_certificate(
    proxy: Proxy, certificates: Mapping[str, Certificate]
) -> Order | Convert | Unsupported | None:
    """What ``proxy`` needs: an :class:`Order`, a :class:`Convert`, :class:`Unsupported`, or None.

    The proxy's own automatic certificate follows its ``staging`` flag (the seed's
    ``proxy-update --production-cert``) unless the proxy names a certificate itself.
    A failed automatic certificate is left to the issuing service's retries.
    """
    if not proxy.enable_https:
        return None
    hostname = proxy.hostname.strip().rstrip(".").lower()
    if proxy.cert_name is not None and _usable(certificates.get(proxy.cert_name), hostname):
        return None
    own = _own_certificate(hostname, certificates)
    if own is not None and own.staging != proxy.staging:
        return Convert(own.cert_name, hostname, proxy.staging)
    if own is not None or any(_usable(c, hostname) for c in certificates.values()):
        return None
    reason = is_public_name(hostname)
    if reason is not None:
        return Unsupported(hostname, reason)
    for hashed in (False, True):
        name = auto_cert_name(hostname, hashed)
        if name not in certificates:
            return Order(name, hostname, proxy.staging, proxy.owner or ADMIN_TOKEN_NAME)
    return None


class CertificateRequester(Protocol):
    """What autocert needs of the issuing service."""

    def request_certificate(
        self,
        cert_name: str,
        domains: tuple[str, ...] | list[str],
        email: str | None = None,
        staging: bool = False,
        owner: str = ADMIN_TOKEN_NAME,
    ) -> Deferred[Certificate]:
        """Record a pending certificate and order it in the background."""

    def convert(self, cert_name: str, staging: bool) -> Deferred[Certificate]:
        """Move the certificate to the other directory and order it there."""


@define(eq=False)
class AutoCertService(Service):
    """Requests certificates for HTTPS proxies that have none (see the module docstring)."""

    source: ISnapshotSource
    issuing: CertificateRequester
    clock: IReactorTime
    #: contact for automatic certificates; None = the issuing service's default (ADMIN_EMAIL)
    email: str | None = None

    _log = Logger()
    _unsubscribe: Callable[[], None] | None = field(default=None, init=False)
    #: cert_name -> (until when it counts as asked for, the staging flag asked for), kept
    #: until the snapshot shows the record so (the request is in flight or just done)
    _asked: dict[str, tuple[float, bool]] = field(factory=dict, init=False)
    #: hostnames already logged as unsupported (one line each, not one per snapshot)
    _skipped: set[str] = field(factory=set, init=False)

    def startService(self) -> None:
        """Follow the snapshot (the current one is looked at at once)."""
        super().startService()  # type: ignore[no-untyped-call]
        self._unsubscribe = self.source.subscribe(self.apply)

    def stopService(self) -> None:
        """Stop following the snapshot; requests in flight finish on their own."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        super().stopService()  # type: ignore[no-untyped-call]

    def apply(self, snapshot: Snapshot, event: Event | None = None) -> None:
        """Request what the proxies of ``snapshot`` lack (a snapshot listener)."""
        now = self.clock.seconds()
        for name, (until, staging) in list(self._asked.items()):
            seen = snapshot.certificates.get(name)
            if (seen is not None and seen.staging == staging) or until <= now:
                del self._asked[name]
        for proxy in snapshot.proxies.values():
            decision = plan_certificate(proxy, snapshot.certificates)
            if isinstance(decision, Unsupported):
                if decision.hostname not in self._skipped:
                    self._skipped.add(decision.hostname)
                    self._log.info(
                        "no automatic certificate for {hostname}: {reason}",
                        hostname=decision.hostname,
                        reason=decision.reason,
                    )
            elif isinstance(decision, Order) and decision.cert_name not in self._asked:
                self._request(decision, now)
            elif isinstance(decision, Convert) and decision.cert_name not in self._asked:
                self._convert(decision, now)

    def _request(self, order: Order, now: float) -> None:
        """Ask the issuing service for ``order``'s certificate (outcome in the background)."""
        self._asked[order.cert_name] = (now + REQUEST_HOLD, order.staging)
        self._log.info(
            "requesting certificate {cert_name} for {hostname}",
            cert_name=order.cert_name,
            hostname=order.hostname,
        )
        requested = self.issuing.request_certificate(
            order.cert_name, (order.hostname,), self.email, order.staging, order.owner
        )
        requested.addErrback(self._refused, order)

    def _convert(self, change: Convert, now: float) -> None:
        """Move the automatic certificate to the directory the proxy now asks for."""
        self._asked[change.cert_name] = (now + REQUEST_HOLD, change.staging)
        self._log.info(
            "moving certificate {cert_name} for {hostname} to {directory}",
            cert_name=change.cert_name,
            hostname=change.hostname,
            directory="staging" if change.staging else "production",
        )
        converting = self.issuing.convert(change.cert_name, change.staging)
        converting.addErrback(self._refused, change)

    def _refused(self, failure: Failure, order: Order | Convert) -> None:
        """Conflict: another daemon (or the operator) created it first; else log it."""
        if failure.check(Conflict):  # type: ignore[no-untyped-call]
            return
        self._log.failure(
            "cannot request certificate {cert_name} for {hostname}",
            failure,
            cert_name=order.cert_name,
            hostname=order.hostname,
        )
