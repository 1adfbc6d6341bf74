"""Interfaces at the seams between oauthproxy's components.

Stores return Deferreds and raise (errback with) :mod:`oauthproxy.errors`:
``NotFound``, ``Conflict``, ``StorageUnavailable``.  Every write goes to Redis
together with its :class:`~oauthproxy.model.Event` in one MULTI/EXEC, so a record
never changes without its event.  Each interface has an in-memory twin in
:mod:`oauthproxy.testing` and one contract test suite that runs against both.

Event types are ``<kind>_created``, ``<kind>_updated`` and ``<kind>_deleted`` for the
kinds ``proxy``, ``route``, ``certificate``, ``token``, ``service``, ``docker_service`` and
``auth_rule``; an update
that makes a certificate ``ready`` is published as ``certificate_ready``.  The OAuth
kinds ``oauth_revocation`` and ``oauth_signing_key`` (:class:`IOAuthStore`) follow the
same rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from oauthproxy.model import (
    ApiToken,
    AuthRule,
    Certificate,
    Claims,
    DockerService,
    Event,
    ExternalService,
    OAuthAccessToken,
    Proxy,
    Route,
    Snapshot,
)

if TYPE_CHECKING:
    from oauthproxy.containers.policy import Reservation
    from oauthproxy.oauth.records import (
        AuthorizationCode,
        InitialAccessToken,
        LoginSession,
        OAuthClient,
        RefreshTokenRecord,
        TokenFamily,
    )
    from oauthproxy.requestlog.noise import NoiseCount
    from oauthproxy.requestlog.record import RequestRecord, Row
    from oauthproxy.storage.health import StorageState


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


class IDockerServiceStore(Interface):
    """Docker services keyed by name; their host ports are reserved with every write.

    A write reserves the record's ports (and, during an update, those of its
    ``previous`` record) and releases the ones it no longer has, in the same atomic
    step as the record and its event: two daemons can never hold one port, and the
    reservations never disagree with the records.  A port another service holds
    (see :func:`oauthproxy.containers.policy.clashes`) makes the write fail with
    ``Conflict`` whose ``field`` is ``ports``; nothing is written then.
    """

    def reservations() -> Deferred[list[Reservation]]:
        """Every reserved host port, sorted by port (declared before ``list``, which shadows it)."""

    def deployment() -> Deferred[str]:
        """This deployment's id (made by the first daemon to ask; labels its containers)."""

    def get(name: str) -> Deferred[DockerService | None]:
        """The service, or None."""

    def list() -> Deferred[list[DockerService]]:
        """Every service, sorted by name."""

    def create(service: DockerService) -> Deferred[None]:
        """Store a new service; ``Conflict`` if the name or a port is taken."""

    def update(service: DockerService) -> Deferred[None]:
        """Replace a service; ``NotFound`` if there is none, ``Conflict`` for a taken port."""

    def delete(name: str) -> Deferred[None]:
        """Remove a service and release its ports; ``NotFound`` if there is none."""


class IAuthRuleStore(Interface):
    """Admin API endpoint auth rules keyed by config_id (event kind ``auth_rule``)."""

    def get(config_id: str) -> Deferred[AuthRule | None]:
        """The rule, or None."""

    def list() -> Deferred[list[AuthRule]]:
        """Every rule, sorted by config_id."""

    def create(rule: AuthRule) -> Deferred[None]:
        """Store a new rule; ``Conflict`` if the id is taken."""

    def update(rule: AuthRule) -> Deferred[None]:
        """Replace an existing rule; ``NotFound`` if there is none."""

    def delete(config_id: str) -> Deferred[None]:
        """Remove a rule; ``NotFound`` if there is none."""


class IAccessTokenVerifier(Interface):
    """Verifies OAuth access tokens for ``auth_type: oauth`` (in memory, synchronous)."""

    def verify(token: str) -> Claims | None:
        """The claims of ``token`` if it is a valid, unexpired access token of ours, else None."""


class IOAuthStore(Interface):
    """State of the OAuth authorization server (:mod:`oauthproxy.storage.oauth`).

    ``revocations`` (OAuthRevocation by jti) and ``signing_keys`` (OAuthSigningKey by
    kid) are record stores of the mirrored kinds ``oauth_revocation`` and
    ``oauth_signing_key``: writes publish events, so every daemon's snapshot has them.
    Everything else is operational state without events; codes, login sessions,
    refresh tokens, families and access-token records expire by themselves.
    """

    revocations = Attribute("record store (get/list/create/update/delete) of OAuthRevocation")
    signing_keys = Attribute("record store (get/list/create/update/delete) of OAuthSigningKey")

    def get_client(client_id: str) -> Deferred[OAuthClient | None]:
        """The client (``last_used_at`` merged in), or None."""

    def list_clients() -> Deferred[list[OAuthClient]]:
        """Every client, sorted by client_id."""

    def register_client(client: OAuthClient, cap: int) -> Deferred[OAuthClient | None]:
        """Store a new dynamically registered client atomically (ATK-28, ATK-37).

        A stored client with the same non-empty ``metadata_key`` is returned instead
        (idempotent DCR).  When ``cap`` clients exist, the oldest registered client that
        was never used (:meth:`touch_client`) is deleted to make room; None when every
        client has been used.
        """

    def put_client(client: OAuthClient) -> Deferred[None]:
        """Store or replace a client (pre-registered, CIMD cache, RFC 7592 update)."""

    def delete_client(client_id: str) -> Deferred[bool]:
        """Remove a client; whether there was one."""

    def touch_client(client_id: str, when: float) -> Deferred[None]:
        """Record a use of the client (keeps the reaper and eviction away)."""

    def put_initial_token(token: InitialAccessToken) -> Deferred[bool]:
        """Store an initial access token; False when one of that name exists."""

    def list_initial_tokens() -> Deferred[list[InitialAccessToken]]:
        """Every initial access token (with its uses), by name."""

    def delete_initial_token(name: str) -> Deferred[bool]:
        """Forget an initial access token; whether there was one."""

    def use_initial_token(token_hash: str, now: float) -> Deferred[InitialAccessToken | None]:
        """Count one registration with the token, atomically, if it is still usable.

        Returns the token with its new use count; None when it is unknown, expired or
        used up (RFC 7591 §3, ATK-37).
        """

    def put_code(code: AuthorizationCode) -> Deferred[None]:
        """Store an authorization code until its ``expires_at``."""

    def redeem_code(code_hash: str, now: float) -> Deferred[AuthorizationCode | None]:
        """Mark the code used, atomically; the record with ``used_at`` of an earlier use."""

    def put_session(session: LoginSession) -> Deferred[None]:
        """Store a login session (GitHub leg) until its ``expires_at``."""

    def take_session(state: str) -> Deferred[LoginSession | None]:
        """The session for ``state``, removed atomically (single use), or None."""

    def put_family(family: TokenFamily, expires_at: float) -> Deferred[TokenFamily]:
        """Store or replace a token family, kept until ``expires_at``; the family as stored.

        Revocation wins: a family already revoked, or revoked before it was first stored
        (a replayed code racing its first redemption), stays revoked and comes back
        with ``revoked_at`` set, so the caller can take back what it just issued.
        """

    def get_family(family_id: str) -> Deferred[TokenFamily | None]:
        """The family, or None."""

    def list_families() -> Deferred[list[TokenFamily]]:
        """Every live family, sorted by creation time."""

    def put_refresh(record: RefreshTokenRecord) -> Deferred[None]:
        """Store or replace a refresh token record until its ``expires_at``."""

    def get_refresh(token_hash: str) -> Deferred[RefreshTokenRecord | None]:
        """The refresh token record, or None."""

    def replace_refresh(
        expected: RefreshTokenRecord, replacement: RefreshTokenRecord
    ) -> Deferred[RefreshTokenRecord | None]:
        """Compare and set: store ``replacement`` only if ``expected`` is what is stored.

        Returns the record stored afterwards: ``replacement`` when this call won, what
        another call stored first otherwise, None when the token is gone.  Rotation
        uses it so that one refresh token is exchanged once, however many race (ATK-34).
        """

    def revoke_family(family_id: str, now: float) -> Deferred[TokenFamily | None]:
        """Mark the family revoked and drop its refresh tokens; the family, or None.

        A family not stored yet is remembered as revoked for a while, so that
        :meth:`put_family` stores it revoked (ATK-35).
        """

    def put_access_token(record: OAuthAccessToken) -> Deferred[None]:
        """Remember an issued access token until its ``expires_at``."""

    def list_access_tokens() -> Deferred[list[OAuthAccessToken]]:
        """Every unexpired issued access token, sorted by issue time."""

    def reap(now: float) -> Deferred[int]:
        """Drop expired families, refresh tokens and access-token records; how many."""


class IEventLog(Interface):
    """The ``events`` stream, read side."""

    def last_id() -> Deferred[str]:
        """The id of the newest event, ``"0-0"`` when there is none."""

    def read(after: str, block: float) -> Deferred[list[Event]]:
        """Events newer than ``after``, oldest first; waits up to ``block`` seconds for one."""

    def holds(event_id: str) -> Deferred[bool]:
        """Whether the stream still has the event ``event_id`` (so nothing after it was lost).

        False for ``"0-0"``, and after trimming, or a Redis that lost its data.
        """


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


class IAccountKeyStore(Interface):
    """ACME account keys, one per directory URL, encrypted at rest."""

    def get(directory_url: str) -> Deferred[str | None]:
        """The account's private key PEM for this directory, or None."""

    def put(directory_url: str, key_pem: str) -> Deferred[None]:
        """Store (or replace) the account key for this directory."""


class IStorage(Interface):
    """The whole store, as handed to components by ``tap.makeService``."""

    proxies = Attribute("IProxyStore")
    routes = Attribute("IRouteStore")
    certificates = Attribute("ICertificateStore")
    tokens = Attribute("ITokenStore")
    services = Attribute("IServiceStore")
    docker_services = Attribute("IDockerServiceStore")
    events = Attribute("IEventLog")
    challenges = Attribute("IChallengeStore")
    locks = Attribute("ILocks")
    accounts = Attribute("IAccountKeyStore")
    auth_rules = Attribute("IAuthRuleStore")
    oauth = Attribute("IOAuthStore")
    request_log = Attribute("IRequestLogStore")
    visibility = Attribute(
        "WriteVisibility: record writes return once this instance's mirror applied them"
    )

    def ping() -> Deferred[bool]:
        """True if the store answered within its timeout, False otherwise (never errbacks)."""

    def check_key() -> Deferred[None]:
        """Fail with a ConfigError if the secret key cannot open the stored data."""

    def probe(deadline: float) -> Deferred[StorageState]:
        """Whether a read and a write each succeed within ``deadline`` (never errbacks)."""


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


class IRequestLogStore(Interface):
    """The request log: records kept ``retention`` seconds, found by index and time.

    Indexes are those of :func:`oauthproxy.requestlog.record.index_entries`:
    ``all`` and ``errors`` (value ``""``), ``ip``, ``host``, ``status`` (``"2xx"``...),
    ``user`` and ``client``.  Records older than the newest written minus
    ``retention`` drop out of the indexes.
    """

    retention = Attribute("float: seconds a record is kept")
    max_records = Attribute("int: records kept at most (the oldest go first)")

    def write(records: Sequence[RequestRecord]) -> Deferred[None]:
        """Store a batch of records with their indexes, visitor counts and follow stream.

        Past ``max_records`` records the oldest are dropped, from every index too.
        """

    def write_rows(rows: Sequence[Row]) -> Deferred[None]:
        """:meth:`write` for records given as rows (``record_row``): the writer's batches."""

    def count_noise(counts: Sequence[NoiseCount]) -> Deferred[None]:
        """Add anonymous-noise counts (per minute, reason and host), kept ``retention``."""

    def noise(since: float, until: float) -> Deferred[list[NoiseCount]]:
        """The noise counts of the minutes in ``[since, until]``, oldest first."""

    def get(correlation_id: str) -> Deferred[RequestRecord | None]:
        """The record with this correlation id, or None."""

    def find(
        index: str, value: str, since: float, until: float, offset: int, count: int
    ) -> Deferred[list[RequestRecord]]:
        """Up to ``count`` records of the index in ``[since, until]``, newest first, after
        skipping ``offset``."""

    def count(index: str, value: str, since: float, until: float) -> Deferred[int]:
        """How many records of the index lie in ``[since, until]``."""

    def hosts(since: float) -> Deferred[list[str]]:
        """Hosts with a request at or after ``since``, sorted."""

    def visitors(host: str, days: Sequence[str]) -> Deferred[int]:
        """Estimated distinct client IPs of ``host`` over the UTC ``days`` (``YYYY-MM-DD``)."""

    def recent(after: str | None, count: int) -> Deferred[tuple[list[RequestRecord], str]]:
        """Records written after the cursor ``after``, oldest first, and the next cursor.

        ``after=None`` gives the newest ``count`` records (what ``logs follow`` shows first).
        """
