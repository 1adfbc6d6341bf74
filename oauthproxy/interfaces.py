"""Interfaces at the seams between oauthproxy's components.

Stores return Deferreds and raise (errback with) :mod:`oauthproxy.errors`:
``NotFound``, ``Conflict``, ``StorageUnavailable``.  Every write goes to Redis
together with its :class:`~oauthproxy.model.Event` in one MULTI/EXEC, so a record
never changes without its event.  Each interface has an in-memory twin in
:mod:`oauthproxy.testing` and one contract test suite that runs against both.

Event types are ``<kind>_created``, ``<kind>_updated`` and ``<kind>_deleted`` for the
kinds ``proxy``, ``route``, ``certificate``, ``token`` and ``service``; an update
that makes a certificate ``ready`` is published as ``certificate_ready``.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from oauthproxy.model import (
    ApiToken,
    Certificate,
    Event,
    ExternalService,
    Proxy,
    Route,
    Snapshot,
)


class IProxyStore(Interface):
    """Proxies keyed by lower-case hostname."""

    def get(hostname: str) -> Deferred[Proxy | None]:
        """The proxy for ``hostname``, or None."""

    def list() -> Deferred[list[Proxy]]:
        """Every proxy, sorted by hostname."""

    def create(proxy: Proxy) -> Deferred[None]:
        """Store a new proxy; ``Conflict`` if the hostname is taken."""

    def update(proxy: Proxy) -> Deferred[None]:
        """Replace an existing proxy; ``NotFound`` if there is none."""

    def delete(hostname: str) -> Deferred[None]:
        """Remove a proxy; ``NotFound`` if there is none."""


class IRouteStore(Interface):
    """Routes keyed by route_id."""

    def get(route_id: str) -> Deferred[Route | None]:
        """The route, or None."""

    def list() -> Deferred[list[Route]]:
        """Every route, sorted by route_id."""

    def create(route: Route) -> Deferred[None]:
        """Store a new route; ``Conflict`` if the id is taken."""

    def update(route: Route) -> Deferred[None]:
        """Replace an existing route; ``NotFound`` if there is none."""

    def delete(route_id: str) -> Deferred[None]:
        """Remove a route; ``NotFound`` if there is none."""


class ICertificateStore(Interface):
    """Certificates keyed by cert_name; private keys are encrypted at rest."""

    def get(cert_name: str) -> Deferred[Certificate | None]:
        """The certificate (private key decrypted), or None."""

    def list() -> Deferred[list[Certificate]]:
        """Every certificate, sorted by name."""

    def create(certificate: Certificate) -> Deferred[None]:
        """Store a new certificate; ``Conflict`` if the name is taken."""

    def update(certificate: Certificate) -> Deferred[None]:
        """Replace an existing certificate; ``NotFound`` if there is none."""

    def delete(cert_name: str) -> Deferred[None]:
        """Remove a certificate; ``NotFound`` if there is none."""


class ITokenStore(Interface):
    """API tokens keyed by name, findable by the SHA-256 hex digest of their value."""

    def get(name: str) -> Deferred[ApiToken | None]:
        """The token record, or None."""

    def list() -> Deferred[list[ApiToken]]:
        """Every token, sorted by name."""

    def create(token: ApiToken) -> Deferred[None]:
        """Store a new token; ``Conflict`` if the name (or hash) is taken."""

    def update(token: ApiToken) -> Deferred[None]:
        """Replace an existing token (e.g. rotation); ``NotFound`` if there is none."""

    def delete(name: str) -> Deferred[None]:
        """Remove a token; ``NotFound`` if there is none."""

    def find_by_hash(token_hash: str) -> Deferred[ApiToken | None]:
        """The token whose value hashes to ``token_hash``, or None."""

    def touch(name: str, when: float) -> Deferred[None]:
        """Record a use of the token (no event: usage is not configuration)."""


class IServiceStore(Interface):
    """External services keyed by name."""

    def get(name: str) -> Deferred[ExternalService | None]:
        """The service, or None."""

    def list() -> Deferred[list[ExternalService]]:
        """Every service, sorted by name."""

    def create(service: ExternalService) -> Deferred[None]:
        """Store a new service; ``Conflict`` if the name is taken."""

    def update(service: ExternalService) -> Deferred[None]:
        """Replace an existing service; ``NotFound`` if there is none."""

    def delete(name: str) -> Deferred[None]:
        """Remove a service; ``NotFound`` if there is none."""


class IEventLog(Interface):
    """The ``events`` stream, read side."""

    def last_id() -> Deferred[str]:
        """The id of the newest event, ``"0-0"`` when there is none."""

    def read(after: str, block: float) -> Deferred[list[Event]]:
        """Events newer than ``after``, oldest first; waits up to ``block`` seconds for one."""


class IChallengeStore(Interface):
    """ACME HTTP-01 key authorizations, shared by every daemon (expire by themselves)."""

    def put(token: str, key_authorization: str, ttl: float) -> Deferred[None]:
        """Publish the answer for ``token`` for ``ttl`` seconds."""

    def get(token: str) -> Deferred[str | None]:
        """The key authorization for ``token``, or None."""

    def delete(token: str) -> Deferred[None]:
        """Stop answering for ``token``."""


class ILocks(Interface):
    """Cluster-wide locks with a TTL and a fencing token (monotonic per lock name)."""

    def acquire(name: str, ttl: float) -> Deferred[int | None]:
        """Take the lock; the fencing token, or None if another holder has it."""

    def refresh(name: str, fencing_token: int, ttl: float) -> Deferred[bool]:
        """Extend a held lock; False if it was lost (expired and taken)."""

    def release(name: str, fencing_token: int) -> Deferred[None]:
        """Release the lock if still held with this fencing token."""


class IStorage(Interface):
    """The whole store, as handed to components by ``tap.makeService``."""

    proxies = Attribute("IProxyStore")
    routes = Attribute("IRouteStore")
    certificates = Attribute("ICertificateStore")
    tokens = Attribute("ITokenStore")
    services = Attribute("IServiceStore")
    events = Attribute("IEventLog")
    challenges = Attribute("IChallengeStore")
    locks = Attribute("ILocks")

    def ping() -> Deferred[bool]:
        """True if the store answered within its timeout, False otherwise (never errbacks)."""


SnapshotListener = Callable[[Snapshot, "Event | None"], None]


class ISnapshotSource(Interface):
    """The in-memory mirror of the store that the data plane reads (never Redis itself)."""

    current = Attribute("The latest Snapshot")
    connected = Attribute("bool: whether the event tail is currently connected")

    def subscribe(listener: SnapshotListener) -> Callable[[], None]:
        """Call ``listener(snapshot, event)`` after every change (event None = full reload).

        Returns a function that unsubscribes.  The listener is also called once at
        once with the current snapshot.
        """
