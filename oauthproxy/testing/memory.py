"""In-memory record stores, events, challenges, locks and ACME accounts.

Part of :mod:`oauthproxy.testing`; see its docstring.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from attrs import define, evolve, field
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import implementer

from oauthproxy.errors import Conflict, NotFound, StorageUnavailable
from oauthproxy.interfaces import (
    IAccountKeyStore,
    IAuthRuleStore,
    ICertificateStore,
    IChallengeStore,
    IEventLog,
    ILocks,
    IProxyStore,
    IRouteStore,
    IServiceStore,
    ITokenStore,
)
from oauthproxy.model import (
    ApiToken,
    AuthRule,
    Certificate,
    Event,
    ExternalService,
    Proxy,
    Route,
)
from oauthproxy.storage.codec import KEY_FIELDS, Record, decode, encode, record_key
from oauthproxy.storage.events import (
    NO_EVENT_ID,
    READ_COUNT,
    STREAM_MAXLEN,
    Action,
    check_not_trimmed,
    event_type,
    parse_stream_id,
)
from oauthproxy.storage.visibility import WriteVisibility

R = TypeVar("R", bound=Record)
T = TypeVar("T")


@define
class _Waiter:
    """A blocked ``events.read`` call."""

    after: str
    deferred: Deferred[list[Event]]
    timer: IDelayedCall | None = None


@define
class MemoryState:
    """Everything a :class:`MemoryStorage` holds, shared by its stores."""

    clock: IReactorTime
    stream_maxlen: int = STREAM_MAXLEN
    available: bool = True
    #: id of the newest event trimmed from the list ("0-0": none)
    max_deleted_id: str = NO_EVENT_ID
    records: dict[str, dict[str, str]] = field(factory=dict)
    events: list[Event] = field(factory=list)
    sequence: int = 0
    waiters: list[_Waiter] = field(factory=list)
    token_hashes: dict[str, str] = field(factory=dict)
    token_used: dict[str, float] = field(factory=dict)
    challenges: dict[str, tuple[str, float]] = field(factory=dict)
    locks: dict[str, tuple[int, float]] = field(factory=dict)
    fences: dict[str, int] = field(factory=dict)
    accounts: dict[str, str] = field(factory=dict)
    #: host ports of Docker services: ``tcp/14000/127.0.0.1`` -> ``service/port name``
    ports: dict[str, str] = field(factory=dict)
    deployment: str | None = None

    def check(self) -> None:
        """Raise StorageUnavailable while the store is switched off."""
        if not self.available:
            raise StorageUnavailable("memory storage is switched off")

    def run(self, f: Callable[[], T]) -> Deferred[T]:
        """Call ``f`` if available; its result or error as a fired Deferred."""
        try:
            self.check()
            return succeed(f())
        except Exception as e:
            return fail(e)

    def publish(self, type_: str, kind: str, key: str, record: str | None) -> str:
        """Append an event and wake the readers waiting for it; the event's id."""
        self.sequence += 1
        event_id = f"{self.sequence}-0"
        self.events.append(Event(event_id, type_, kind, key, record))
        if len(self.events) > self.stream_maxlen:
            trimmed = len(self.events) - self.stream_maxlen
            self.max_deleted_id = self.events[trimmed - 1].event_id
            del self.events[:trimmed]
        for waiter in list(self.waiters):
            found = self.after(waiter.after)
            if found and waiter in self.waiters:
                self._finish(waiter)
                waiter.deferred.callback(found)
        return event_id

    def after(self, event_id: str) -> list[Event]:
        """Events newer than ``event_id``, oldest first (at most READ_COUNT)."""
        position = parse_stream_id(event_id)
        return [e for e in self.events if parse_stream_id(e.event_id) > position][:READ_COUNT]

    def _finish(self, waiter: _Waiter) -> None:
        """Forget a waiter and its timer (a callback may have done so already)."""
        if waiter in self.waiters:
            self.waiters.remove(waiter)
        if waiter.timer is not None and waiter.timer.active():
            waiter.timer.cancel()

    def wait(self, after: str, block: float) -> Deferred[list[Event]]:
        """A Deferred firing with the next events, or ``[]`` after ``block`` seconds."""

        def cancel(d: Deferred[list[Event]]) -> None:
            self._finish(waiter)

        waiter = _Waiter(after, Deferred(cancel))

        def expire() -> None:
            waiter.timer = None
            self._finish(waiter)
            waiter.deferred.callback([])

        waiter.timer = self.clock.callLater(block, expire)
        self.waiters.append(waiter)
        return waiter.deferred

    def fail_waiters(self) -> None:
        """Fail every blocked read, as a lost connection does."""
        for waiter in list(self.waiters):
            if waiter not in self.waiters:
                continue
            self._finish(waiter)
            waiter.deferred.errback(StorageUnavailable("memory storage was switched off"))

    def live(self, expiring: dict[str, tuple[T, float]], key: str) -> T | None:
        """The value under ``key`` unless it has expired (then it is dropped)."""
        entry = expiring.get(key)
        if entry is None:
            return None
        value, expires_at = entry
        if self.clock.seconds() >= expires_at:
            del expiring[key]
            return None
        return value


@define
class MemoryRecordStore(Generic[R]):
    """The records of one kind, as codec JSON in a dict."""

    state: MemoryState
    kind: str
    record_type: type[R]
    #: the instance's: writes return once its mirror applied them (read-your-writes)
    visibility: WriteVisibility = field(factory=WriteVisibility)

    @property
    def _records(self) -> dict[str, str]:
        """This kind's JSON by key."""
        return self.state.records.setdefault(self.kind, {})

    def _normalise(self, key: str) -> str:
        """Keys as stored: hostnames are case-insensitive."""
        return key.lower() if self.kind == "proxy" else key

    def _decode(self, text: str) -> R:
        """A record from its stored JSON."""
        return decode(self.record_type, text)

    def get(self, key: str) -> Deferred[R | None]:
        """The record under ``key``, or None."""

        def get() -> R | None:
            text = self._records.get(self._normalise(key))
            return None if text is None else self._decode(text)

        return self.state.run(get)

    def list(self) -> Deferred[list[R]]:
        """Every record of this kind, sorted by key."""
        return self.state.run(
            lambda: sorted((self._decode(t) for t in self._records.values()), key=record_key)
        )

    def create(self, record: R) -> Deferred[None]:
        """Store a new record; ``Conflict`` if its key is taken."""
        return self._visible(lambda: self._write("create", record_key(record), record))

    def update(self, record: R) -> Deferred[None]:
        """Replace a record; ``NotFound`` if there is none."""
        return self._visible(lambda: self._write("update", record_key(record), record))

    def delete(self, key: str) -> Deferred[None]:
        """Remove a record; ``NotFound`` if there is none."""
        return self._visible(lambda: self._write("delete", self._normalise(key), None))

    def _visible(self, write: Callable[[], str]) -> Deferred[None]:
        """Run ``write``; fires once the instance's mirror applied its event, as on Redis."""
        return self.state.run(write).addCallback(self.visibility.written)

    def _check_index(self, action: Action, key: str, old: R | None, new: R | None) -> None:
        """Hook: raise Conflict before anything is written (token digests)."""

    def _update_index(self, action: Action, key: str, old: R | None, new: R | None) -> None:
        """Hook: keep secondary indexes in step (token digests)."""

    def _write(self, action: Action, key: str, record: R | None) -> str:
        """Check, write and publish, all at once like the Redis script; the event id."""
        stored = self._records.get(key)
        if action == "create" and stored is not None:
            raise Conflict(f"{self.kind} {key} already exists", field=KEY_FIELDS[self.kind])
        if action != "create" and stored is None:
            raise NotFound(f"no {self.kind} {key}", field=KEY_FIELDS[self.kind])
        old = None if stored is None else self._decode(stored)
        self._check_index(action, key, old, record)
        self._update_index(action, key, old, record)
        json = None if record is None else encode(record)
        if json is None:
            del self._records[key]
        else:
            self._records[key] = json
        return self.state.publish(event_type(self.kind, action, old, record), self.kind, key, json)


@implementer(IProxyStore)
class MemoryProxyStore(MemoryRecordStore[Proxy]):
    """Proxies keyed by lower-case hostname."""


@implementer(IRouteStore)
class MemoryRouteStore(MemoryRecordStore[Route]):
    """Routes keyed by route_id."""


@implementer(ICertificateStore)
class MemoryCertificateStore(MemoryRecordStore[Certificate]):
    """Certificates keyed by name (kept in plaintext: memory is not "at rest")."""


@implementer(IServiceStore)
class MemoryServiceStore(MemoryRecordStore[ExternalService]):
    """External services keyed by name."""


@implementer(IAuthRuleStore)
class MemoryAuthRuleStore(MemoryRecordStore[AuthRule]):
    """Admin API endpoint auth rules keyed by config_id."""


@implementer(ITokenStore)
class MemoryTokenStore(MemoryRecordStore[ApiToken]):
    """API tokens with a digest index; usage is kept apart and publishes nothing."""

    def _check_index(
        self, action: Action, key: str, old: ApiToken | None, new: ApiToken | None
    ) -> None:
        """A digest may belong to one token only."""
        if new is not None and (old is None or new.token_hash != old.token_hash):
            holder = self.state.token_hashes.get(new.token_hash)
            if holder is not None and holder != key:
                raise Conflict("another token has the same value", field="name")

    def _update_index(
        self, action: Action, key: str, old: ApiToken | None, new: ApiToken | None
    ) -> None:
        """Move the digest entry along with the token."""
        if old is not None and (new is None or new.token_hash != old.token_hash):
            self.state.token_hashes.pop(old.token_hash, None)
        if new is None:
            self.state.token_used.pop(key, None)
        else:
            self.state.token_hashes[new.token_hash] = key

    def _decode(self, text: str) -> ApiToken:
        """A token with its last use merged in."""
        token = decode(ApiToken, text)
        used = self.state.token_used.get(token.name)
        if used is None or (token.last_used_at is not None and token.last_used_at >= used):
            return token
        return evolve(token, last_used_at=used)

    def find_by_hash(self, token_hash: str) -> Deferred[ApiToken | None]:
        """The token whose value has this digest, or None."""

        def find() -> ApiToken | None:
            name = self.state.token_hashes.get(token_hash)
            text = None if name is None else self._records.get(name)
            return None if text is None else self._decode(text)

        return self.state.run(find)

    def touch(self, name: str, when: float) -> Deferred[None]:
        """Record a use (ignored for unknown tokens; no event)."""

        def touch() -> None:
            if name in self._records:
                self.state.token_used[name] = when

        return self.state.run(touch)


@implementer(IEventLog)
@define
class MemoryEventLog:
    """The event list, with blocking reads on the state's clock."""

    state: MemoryState

    def last_id(self) -> Deferred[str]:
        """The newest event's id, ``"0-0"`` when there is none."""
        return self.state.run(
            lambda: self.state.events[-1].event_id if self.state.events else NO_EVENT_ID
        )

    def read(self, after: str, block: float) -> Deferred[list[Event]]:
        """Events after ``after``; waits up to ``block`` seconds when there are none."""
        try:
            self.state.check()
        except StorageUnavailable as e:
            return fail(e)
        found = self.state.after(after)
        if found:
            return self.state.run(lambda: self._checked(after, found))
        if block <= 0:
            return succeed(found)
        return self.state.wait(after, block).addCallback(
            lambda events: self._checked(after, events)
        )

    def holds(self, event_id: str) -> Deferred[bool]:
        """Whether the list still has ``event_id``."""
        return self.state.run(lambda: any(e.event_id == event_id for e in self.state.events))

    def _checked(self, after: str, events: list[Event]) -> list[Event]:
        """``events``, unless some after ``after`` were trimmed (EventsTrimmed)."""
        if events:
            kept = any(e.event_id == after for e in self.state.events)
            check_not_trimmed(after, kept, self.state.max_deleted_id != NO_EVENT_ID)
        return events


@implementer(IChallengeStore)
@define
class MemoryChallengeStore:
    """HTTP-01 answers that expire on the state's clock."""

    state: MemoryState

    def put(self, token: str, key_authorization: str, ttl: float) -> Deferred[None]:
        """Answer for ``token`` during ``ttl`` seconds."""

        def put() -> None:
            self.state.challenges[token] = (key_authorization, self.state.clock.seconds() + ttl)

        return self.state.run(put)

    def get(self, token: str) -> Deferred[str | None]:
        """The answer for ``token``, or None once expired or deleted."""
        return self.state.run(lambda: self.state.live(self.state.challenges, token))

    def delete(self, token: str) -> Deferred[None]:
        """Stop answering for ``token``."""
        return self.state.run(lambda: self.state.challenges.pop(token, None) and None)


@implementer(ILocks)
@define
class MemoryLocks:
    """Locks with a TTL on the state's clock and monotonic fencing tokens."""

    state: MemoryState

    def acquire(self, name: str, ttl: float) -> Deferred[int | None]:
        """Take the lock; its fencing token, or None while someone holds it."""

        def acquire() -> int | None:
            if self.state.live(self.state.locks, name) is not None:
                return None
            token = self.state.fences.get(name, 0) + 1
            self.state.fences[name] = token
            self.state.locks[name] = (token, self.state.clock.seconds() + ttl)
            return token

        return self.state.run(acquire)

    def refresh(self, name: str, fencing_token: int, ttl: float) -> Deferred[bool]:
        """Extend the lock if ``fencing_token`` still holds it."""

        def refresh() -> bool:
            if self.state.live(self.state.locks, name) != fencing_token:
                return False
            self.state.locks[name] = (fencing_token, self.state.clock.seconds() + ttl)
            return True

        return self.state.run(refresh)

    def release(self, name: str, fencing_token: int) -> Deferred[None]:
        """Release the lock if ``fencing_token`` still holds it."""

        def release() -> None:
            if self.state.live(self.state.locks, name) == fencing_token:
                del self.state.locks[name]

        return self.state.run(release)


@implementer(IAccountKeyStore)
@define
class MemoryAccountKeyStore:
    """ACME account keys by directory URL."""

    state: MemoryState

    def get(self, directory_url: str) -> Deferred[str | None]:
        """The key PEM for ``directory_url``, or None."""
        return self.state.run(lambda: self.state.accounts.get(directory_url))

    def put(self, directory_url: str, key_pem: str) -> Deferred[None]:
        """Store or replace the key for ``directory_url``."""

        def put() -> None:
            self.state.accounts[directory_url] = key_pem

        return self.state.run(put)
