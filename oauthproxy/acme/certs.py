"""Certificate facts and issuance timing, as pure functions over values.

Nothing here does I/O or reads a clock: callers pass ``now`` (POSIX seconds from
an injected clock) and a ``random`` source.  The issuing service
(:mod:`oauthproxy.acme.service`) glues these to storage and to the ACME client:

- :func:`parse_certificate` turns a PEM chain into the facts the certificate
  record keeps (names, validity, issuer, fingerprint);
- :func:`renewal_due` says when a certificate should be renewed, and
  :func:`due_at_issuance` whether a new one is (nearly) due already;
- :func:`backoff_delay` spaces out retries after failures;
- :class:`FailureBudget` keeps failed authorizations under the CA's limit
  (Let's Encrypt allows 5 per identifier per hour).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from attrs import field, frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from oauthproxy.errors import InvalidInput

#: the CA's limit of failed authorizations per identifier (Let's Encrypt: 5 per hour)
FAILED_AUTHORIZATIONS_LIMIT = 5
#: the window of that limit, seconds
FAILED_AUTHORIZATIONS_WINDOW = 3600.0
#: first retry delay after a failure; doubling from here keeps any hour to at most
#: four attempts (300 + 600 + 1200 + 2400 > 3600) even before the budget is consulted
BACKOFF_BASE = 300.0
#: retries are at least daily, whatever the number of failures
BACKOFF_CAP = 86400.0
#: seconds after a successful issuance before the certificate may be renewed, whatever
#: its dates say (a CA issuing certificates that are already expiring causes no loop)
MIN_RENEWAL_INTERVAL = 10.0

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@frozen
class CertificateInfo:
    """What a leaf certificate says about itself."""

    #: subjectAltName DNS names, in certificate order
    domains: tuple[str, ...]
    not_before: float
    not_after: float
    #: the issuer's common name (or its full RFC 4514 name when it has none)
    issuer: str
    #: lower-case hex SHA-256 of the leaf's DER encoding
    fingerprint_sha256: str


def parse_certificate(fullchain_pem: str) -> CertificateInfo:
    """Read the leaf (first certificate) of a PEM chain.

    Raises :class:`~oauthproxy.errors.InvalidInput` when the text holds no
    readable certificate.
    """
    try:
        chain = x509.load_pem_x509_certificates(fullchain_pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as e:
        raise InvalidInput(f"not a PEM certificate chain: {e}", field="fullchain_pem") from e
    leaf = chain[0]
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        domains = tuple(san.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        domains = ()
    common_names = leaf.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    issuer = str(common_names[0].value) if common_names else leaf.issuer.rfc4514_string()
    return CertificateInfo(
        domains=domains,
        not_before=leaf.not_valid_before_utc.timestamp(),
        not_after=leaf.not_valid_after_utc.timestamp(),
        issuer=issuer,
        fingerprint_sha256=leaf.fingerprint(hashes.SHA256()).hex(),
    )


def renewal_schedule(
    not_before: float, not_after: float, threshold_seconds: float, issued_at: float | None = None
) -> float:
    """When the dates alone say to renew (no minimum interval; see :func:`renewal_due`).

    ``threshold_seconds`` before expiry, or at two thirds of the lifetime, whichever
    comes first (a 90-day certificate with the default 30-day threshold: day 60 either
    way), but never before a third of the lifetime has passed.  A threshold that covers
    the whole lifetime (a short-lived certificate) would make the certificate due at
    issuance, and renewed again after every issuance; such certificates are renewed at
    two thirds of their lifetime instead.

    The lifetime is counted from ``issued_at`` (when we received the certificate, on
    our clock) when that is later than ``not_before``: a CA that backdates
    ``not_before`` or whose clock lags ours must not make a fresh certificate look old.
    """
    start = not_before if issued_at is None else max(not_before, issued_at)
    lifetime = max(not_after - start, 0.0)
    two_thirds = start + lifetime * 2.0 / 3.0
    before_expiry = not_after - threshold_seconds
    if before_expiry <= start:
        return two_thirds
    return min(max(before_expiry, start + lifetime / 3.0), two_thirds)


def renewal_due(
    not_before: float, not_after: float, threshold_seconds: float, issued_at: float | None = None
) -> float:
    """When to renew: :func:`renewal_schedule`, never sooner than :data:`MIN_RENEWAL_INTERVAL`
    after ``issued_at`` (the last successful issuance), so that a certificate that is
    already expiring when it arrives is not ordered again in a loop.
    """
    when = renewal_schedule(not_before, not_after, threshold_seconds, issued_at)
    if issued_at is None:
        return when
    return max(when, issued_at + MIN_RENEWAL_INTERVAL)


def due_at_issuance(
    not_before: float, not_after: float, threshold_seconds: float, issued_at: float
) -> bool:
    """Whether a certificate received at ``issued_at`` is (nearly) due for renewal already.

    True when its dates make it due within :data:`MIN_RENEWAL_INTERVAL` of its
    issuance: it expires (almost) at once, or the CA's clock is far behind ours.  The
    issuing service treats such an issuance like a failure (it keeps serving the
    certificate, but the next order waits for a backed-off ``retry_at``), so that a CA
    handing out expiring certificates is not asked again and again.
    """
    schedule = renewal_schedule(not_before, not_after, threshold_seconds, issued_at)
    return schedule <= issued_at + MIN_RENEWAL_INTERVAL


def backoff_delay(failures: int, random: Callable[[], float]) -> float:
    """Seconds to wait before retry number ``failures`` (1 = after the first failure).

    Exponential from :data:`BACKOFF_BASE`, capped at :data:`BACKOFF_CAP`, with up to
    25 % of jitter added (never subtracted, so that the spacing that keeps the CA's
    limit holds for every draw).  ``random`` returns a float in [0, 1).
    """
    exponent = min(max(failures, 1) - 1, 20)
    delay = min(BACKOFF_BASE * (2.0**exponent), BACKOFF_CAP)
    return delay * (1.0 + 0.25 * random())


@frozen
class FailureBudget:
    """Failed authorizations per identifier within the CA's sliding window.

    An immutable value: :meth:`record` and :meth:`prune` return new budgets.  The
    issuing service asks :meth:`next_allowed` before ordering and never orders an
    identifier whose budget is spent, so that no identifier ever collects more than
    ``limit`` failures within ``window`` seconds.
    """

    limit: int = FAILED_AUTHORIZATIONS_LIMIT
    window: float = FAILED_AUTHORIZATIONS_WINDOW
    #: identifier -> times of its failed authorizations, oldest first
    failures: dict[str, tuple[float, ...]] = field(factory=dict)

    @classmethod
    def from_entries(cls, entries: Iterable[tuple[str, float]]) -> FailureBudget:
        """A budget holding ``(identifier, time)`` failures (as certificate records keep them)."""
        failures: dict[str, list[float]] = {}
        for name, when in entries:
            failures.setdefault(name, []).append(when)
        return cls(failures={name: tuple(sorted(times)) for name, times in failures.items()})

    def record(self, identifiers: Iterable[str], when: float) -> FailureBudget:
        """A budget with one more failure at ``when`` for each of ``identifiers``."""
        failures = dict(self.failures)
        for name in set(identifiers):
            failures[name] = tuple(sorted((*failures.get(name, ()), when)))
        return FailureBudget(self.limit, self.window, failures)

    def prune(self, now: float) -> FailureBudget:
        """A budget without the failures that have left the window."""
        failures = {}
        for name, times in self.failures.items():
            recent = tuple(t for t in times if t > now - self.window)
            if recent:
                failures[name] = recent
        return FailureBudget(self.limit, self.window, failures)

    def next_allowed(self, identifiers: Iterable[str], now: float) -> float:
        """The earliest time at which ordering all of ``identifiers`` may fail once more.

        ``now`` when every identifier has budget left; otherwise the moment the
        oldest failure that matters leaves the window.
        """
        allowed = now
        for name in identifiers:
            recent = [t for t in self.failures.get(name, ()) if t > now - self.window]
            if len(recent) >= self.limit:
                # the (len - limit + 1)-th oldest must leave for one slot to open
                allowed = max(allowed, recent[len(recent) - self.limit] + self.window)
        return allowed


def normalize_domains(domains: Iterable[str]) -> tuple[str, ...]:
    """Lower-case, de-duplicated DNS names valid for HTTP-01, in the given order.

    Raises :class:`~oauthproxy.errors.InvalidInput` (``field="domains"``) for an
    empty list, a wildcard (HTTP-01 cannot validate one), an IP address or a name
    that is not a valid hostname.
    """
    result: list[str] = []
    for raw in domains:
        name = raw.strip().lower().rstrip(".")
        if name.startswith("*."):
            raise InvalidInput(
                f"wildcard {raw!r} needs DNS-01, only HTTP-01 is supported", "domains"
            )
        labels = name.split(".")
        if len(name) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
            raise InvalidInput(f"{raw!r} is not a valid DNS name", field="domains")
        if labels[-1].isdigit():
            raise InvalidInput(f"{raw!r} is an IP address, not a DNS name", field="domains")
        if name not in result:
            result.append(name)
    if not result:
        raise InvalidInput("at least one domain is required", field="domains")
    if len(result) > 100:
        raise InvalidInput("at most 100 names fit in one certificate", field="domains")
    return tuple(result)
