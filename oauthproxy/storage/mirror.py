"""The in-memory mirror of the store that the data plane reads.

:class:`Mirror` is a service providing
:class:`~oauthproxy.interfaces.ISnapshotSource` over any
:class:`~oauthproxy.interfaces.IStorage`.  It is a small state machine:

1. **load**: read ``events.last_id()`` *first*, then list every record into a
   :class:`~oauthproxy.model.Snapshot` at that id (changes racing with the
   listing are replayed from the stream, harmlessly, because events carry the
   whole record);
2. **tail**: ``events.read(after=last id, block=...)`` in a loop, applying each
   newer event and replacing ``current`` whole;
3. **back off** on any failure: ``connected`` turns False, the last snapshot keeps
   being served, and after an exponential delay with jitter the mirror resumes the
   tail at its last id if the stream still holds that event (a Redis that came
   back with its data, or the replica Sentinel promoted: every event after it is
   still there, so none is missed and none applied twice), else goes back to 1 (a
   full reload: events were trimmed, or the store lost them).

Besides the tail, :meth:`Mirror.catch_up` makes this instance's own writes visible
before they return (read-your-writes, :mod:`oauthproxy.storage.visibility`): it polls
the stream up to the write's event id and applies every event on the way.  A load and
a catch-up never interleave (one lock), so the snapshot never goes back in the stream.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from attrs import evolve
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredLock, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from zope.interface import implementer

from oauthproxy.errors import StorageUnavailable
from oauthproxy.interfaces import ISnapshotSource, IStorage, SnapshotListener
from oauthproxy.model import Event, Snapshot
from oauthproxy.storage.codec import decode_record
from oauthproxy.storage.events import EventsTrimmed, parse_stream_id

T = TypeVar("T")

#: record kind -> the Snapshot field holding records of that kind
SNAPSHOT_FIELDS = {
    "proxy": "proxies",
    "route": "routes",
    "certificate": "certificates",
    "token": "tokens",
    "service": "services",
    "docker_service": "docker_services",
    "auth_rule": "auth_rules",
    "oauth_revocation": "oauth_revocations",
    "oauth_signing_key": "oauth_signing_keys",
}


async def _untracked(d: Deferred[T]) -> T:
    """Await ``d`` without making it the call stopService cancels (a catch-up's load)."""
    return await d


def backoff_delay(failures: int, random_value: float, initial: float, maximum: float) -> float:
    """Seconds to wait after ``failures`` consecutive failures (0-based).

    Doubles from ``initial`` up to ``maximum``, then takes a random point in the
    upper half (``random_value`` in [0, 1)) so that many instances that lost
    the same Redis do not reconnect in lockstep.
    """
    capped = min(maximum, initial * 2.0 ** min(failures, 64))
    return capped * (0.5 + random_value / 2)


def apply_event(snapshot: Snapshot, event: Event) -> Snapshot:
    """The snapshot after ``event``; the same snapshot if the event is not newer.

    Applying an event twice, or an event whose change the snapshot already
    holds, changes nothing: the event carries the record after the change.
    """
    if parse_stream_id(event.event_id) <= parse_stream_id(snapshot.stream_id):
        return snapshot
    name = SNAPSHOT_FIELDS.get(event.kind)
    if name is None:
        # a kind this version does not mirror (newer writer): just move on
        return evolve(snapshot, stream_id=event.event_id)
    records: dict[str, Any] = dict(getattr(snapshot, name))
    if event.record is None:
        records.pop(event.key, None)
    else:
        records[event.key] = decode_record(event.kind, event.record)
    changes: dict[str, Any] = {name: records, "stream_id": event.event_id}
    return evolve(snapshot, **changes)


@implementer(ISnapshotSource)
class Mirror(Service):
    """Keeps :attr:`current` in step with the store; see the module docstring."""

    log = Logger()

    def __init__(
        self,
        storage: IStorage,
        clock: IReactorTime,
        random_value: Callable[[], float] = random.random,
        block: float = 5.0,
        initial_delay: float = 0.5,
        max_delay: float = 30.0,
    ) -> None:
        """
        :param block: seconds one ``events.read`` waits for news.
        :param initial_delay: seconds before the first retry after a failure.
        :param max_delay: longest wait between retries.
        """
        self._storage = storage
        self._clock = clock
        self._random = random_value
        self._block = block
        self._initial_delay = initial_delay
        self._max_delay = max_delay
        self._listeners: list[SnapshotListener] = []
        self._pending: Deferred[Any] | None = None
        self._loop: Deferred[None] | None = None
        self._stopping = False
        self._loaded: list[Deferred[Snapshot]] = []
        #: loads and catch-ups take turns: neither may replace what the other applied
        self._lock = DeferredLock()
        self._unfollow: Callable[[], None] | None = None
        self._backoff: Deferred[None] | None = None
        #: the latest snapshot (replaced whole, never mutated)
        self.current = Snapshot()
        #: whether the last storage call succeeded (the tail is live)
        self.connected = False
        #: how many full loads have completed
        self.reloads = 0

    @property
    def last_id(self) -> str:
        """The id of the last applied event (or of the stream at the last load)."""
        return self.current.stream_id

    def subscribe(self, listener: SnapshotListener) -> Callable[[], None]:
        """Call ``listener(snapshot, event)`` now and after every change."""
        self._listeners.append(listener)
        self._notify_one(listener, self.current, None)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def when_loaded(self) -> Deferred[Snapshot]:
        """Fires with the snapshot once the first full load has completed."""
        if self.reloads:
            return succeed(self.current)
        d: Deferred[Snapshot] = Deferred()
        self._loaded.append(d)
        return d

    def startService(self) -> None:
        """Start loading and tailing."""
        super().startService()  # type: ignore[no-untyped-call]
        self._stopping = False
        self._unfollow = self._storage.visibility.follow(self.catch_up)
        self._loop = Deferred.fromCoroutine(self._run())

    def stopService(self) -> Deferred[None]:
        """Stop the loop; fires once it has ended (no call is left in flight)."""
        super().stopService()  # type: ignore[no-untyped-call]
        self._stopping = True
        if self._unfollow is not None:
            self._unfollow()
            self._unfollow = None
        if self._pending is not None:
            self._pending.cancel()
        loop, self._loop = self._loop, None
        self.connected = False
        return loop if loop is not None else succeed(None)

    async def _wait(self, d: Deferred[T]) -> T:
        """Await ``d`` so that stopService can cancel it."""
        self._pending = d
        try:
            return await d
        finally:
            self._pending = None

    async def _run(self) -> None:
        """Load, tail, back off, reload... until stopped."""
        failures = 0
        #: the last round lost the store (not the stream): the tail may go on
        lost_store = False
        while not self._stopping:
            try:
                if not (lost_store and await self._resumed()):
                    await self._load()
                lost_store = False
                failures = 0
                while not self._stopping:
                    events = await self._wait(self._storage.events.read(self.last_id, self._block))
                    for event in events:
                        self._apply(event)
            except CancelledError:
                if self._stopping:
                    return
                raise
            except EventsTrimmed as e:
                # the store is fine but the tail fell behind: reload at once
                self.log.warn("storage mirror must reload: {error}", error=e.detail)
                self.connected = False
                continue
            except StorageUnavailable as e:
                # expected while Redis is down or restarting: warn, no traceback
                lost_store = True
                self.log.warn(
                    "storage mirror lost the store ({error}); serving snapshot {stream_id}",
                    error=e.detail,
                    stream_id=self.last_id,
                )
                self.connected = False
            except Exception:
                # anything else (a record that does not decode...) is a bug or bad data;
                # the mirror may have missed something, so it reloads all the same
                self.log.failure(
                    "storage mirror failed; serving snapshot {stream_id}", stream_id=self.last_id
                )
                self.connected = False
            if self._stopping:
                return
            delay = backoff_delay(failures, self._random(), self._initial_delay, self._max_delay)
            failures += 1
            self._backoff = deferLater(self._clock, delay, lambda: None)
            try:
                await self._wait(self._backoff)
            except CancelledError:
                if self._stopping:
                    return
            finally:
                self._backoff = None

    async def _resumed(self) -> bool:
        """After losing the store: whether the tail can go on from the last id (no reload)."""
        if not await self._wait(self._storage.events.holds(self.last_id)):
            return False
        self.connected = True
        self.log.info(
            "storage mirror resumes the event stream after {stream_id}", stream_id=self.last_id
        )
        return True

    def retry_now(self) -> None:
        """End a back-off wait at once (the store is known to answer again)."""
        if self._backoff is not None and not self._backoff.called:
            self._backoff.cancel()

    def catch_up(self, event_id: str) -> Deferred[None]:
        """Fires once every event up to ``event_id`` is applied (never fails).

        The storage's :class:`~oauthproxy.storage.visibility.WriteVisibility` calls this
        after each write of this instance.  If the stream cannot be read right now the
        write stands anyway (Redis took it) and the tail applies it when it can.
        """
        if self._caught_up(event_id):
            return succeed(None)
        return Deferred.fromCoroutine(self._catch_up(event_id))

    def _caught_up(self, event_id: str) -> bool:
        """Whether there is nothing to do for ``event_id`` (applied, or not following)."""
        if self._stopping or not self.running:
            return True
        return parse_stream_id(event_id) <= parse_stream_id(self.last_id)

    async def _catch_up(self, event_id: str) -> None:
        """Poll the stream from the last applied id until ``event_id`` is applied."""
        await self._lock.acquire()
        try:
            # before the first load there is no snapshot to keep current: the load has it
            while self.reloads and not self._caught_up(event_id):
                try:
                    events = await self._storage.events.read(self.last_id, 0)
                except EventsTrimmed:
                    await self._load_locked(_untracked)
                    continue
                if not events:
                    return  # the stream lost it (a Redis without persistence restarted)
                for event in events:
                    self._apply(event)
        except StorageUnavailable as e:
            self.log.warn(
                "storage mirror could not apply {event_id} at once ({error})",
                event_id=event_id,
                error=e.detail,
            )
        except Exception:
            # bad data or a bug: the write itself stands; the tail or a reload retries
            self.log.failure("storage mirror could not apply {event_id}", event_id=event_id)
        finally:
            self._lock.release()

    async def _load(self) -> None:
        """Replace the snapshot with a full listing (not while a catch-up applies events)."""
        await self._wait(self._lock.acquire())
        try:
            await self._load_locked(self._wait)
        finally:
            self._lock.release()

    async def _load_locked(self, wait: Callable[[Deferred[Any]], Awaitable[Any]]) -> None:
        """Replace the snapshot with a full listing at the stream's last id.

        ``wait`` awaits each call: :meth:`_wait` from the loop (stopService cancels it).
        """
        storage = self._storage
        stream_id = await wait(storage.events.last_id())
        snapshot = Snapshot(
            stream_id=stream_id,
            proxies={p.hostname.lower(): p for p in await wait(storage.proxies.list())},
            routes={r.route_id: r for r in await wait(storage.routes.list())},
            certificates={c.cert_name: c for c in await wait(storage.certificates.list())},
            tokens={t.name: t for t in await wait(storage.tokens.list())},
            services={s.name: s for s in await wait(storage.services.list())},
            docker_services={s.name: s for s in await wait(storage.docker_services.list())},
            auth_rules={a.config_id: a for a in await wait(storage.auth_rules.list())},
            oauth_revocations={r.jti: r for r in await wait(storage.oauth.revocations.list())},
            oauth_signing_keys={k.kid: k for k in await wait(storage.oauth.signing_keys.list())},
        )
        self.current = snapshot
        self.connected = True
        self.reloads += 1
        self.log.info(
            "storage mirror loaded at {stream_id} (load {reloads})",
            stream_id=stream_id,
            reloads=self.reloads,
        )
        self._notify(None)
        loaded, self._loaded = self._loaded, []
        for d in loaded:
            d.callback(snapshot)

    def _apply(self, event: Event) -> None:
        """Apply one event and tell the listeners if it changed anything."""
        snapshot = apply_event(self.current, event)
        if snapshot is self.current:
            return
        self.current = snapshot
        self._notify(event)

    def _notify(self, event: Event | None) -> None:
        """Call every listener with the current snapshot."""
        for listener in list(self._listeners):
            self._notify_one(listener, self.current, event)

    def _notify_one(
        self, listener: SnapshotListener, snapshot: Snapshot, event: Event | None
    ) -> None:
        """Call one listener; its failure is logged, not spread to the mirror."""
        try:
            listener(snapshot, event)
        except Exception:
            self.log.failure("snapshot listener {listener!r} failed", listener=listener)
