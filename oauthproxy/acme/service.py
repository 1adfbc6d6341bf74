"""The issuing service: orders, renews and retries certificates, one daemon at a time per name.

:class:`IssuingService` watches the certificate records in the store.  A record that
is ``pending`` is ordered; a ``ready`` one is renewed when
:func:`~oauthproxy.acme.certs.renewal_due`; a failed attempt is retried at its
``retry_at``.  It looks every ``renewal_check_interval`` seconds and, in between,
wakes itself for the earliest scheduled time, so short-lived certificates and
retries are handled on time without polling hot.  At most ``cert_gen_max_workers``
orders run at once; each is a :class:`~oauthproxy.acme.ordering.CertificateOrderer`
attempt (cluster lock, order, stored outcome).

It also offers what the admin API needs: :meth:`IssuingService.request_certificate`,
:meth:`IssuingService.renew` and status reads.
"""

from __future__ import annotations

import random as _random
import re
from collections.abc import Callable

from attrs import define, evolve, field
from twisted.application.service import Service
from twisted.internet.defer import (
    Deferred,
    DeferredSemaphore,
    ensureDeferred,
    gatherResults,
    succeed,
)
from twisted.internet.interfaces import IDelayedCall, IReactorFromThreads, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from oauthproxy.acme.certs import normalize_domains
from oauthproxy.acme.client import IOrderClient, ThreadedOrderClient
from oauthproxy.acme.ordering import CertificateOrderer
from oauthproxy.config import Config
from oauthproxy.errors import Conflict, InvalidInput, NotFound
from oauthproxy.interfaces import IStorage
from oauthproxy.model import ADMIN_TOKEN_NAME, Certificate

#: never wake up sooner than this after a scan, whatever the records say
MIN_WAKEUP = 1.0
_CERT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def make_issuing_service(
    reactor: IReactorFromThreads,
    clock: IReactorTime,
    storage: IStorage,
    config: Config,
    lock_ttl: float | None = None,
) -> IssuingService:
    """The production wiring: an :class:`IssuingService` with its own ACME thread pool.

    The pool (at most ``cert_gen_max_workers`` threads) starts and stops with the service.
    ``lock_ttl`` None means ``config.acme_lock_ttl`` (OAUTHPROXY_ACME_LOCK_TTL).
    """
    pool = ThreadPool(minthreads=0, maxthreads=max(config.cert_gen_max_workers, 1), name="acme")
    orders = ThreadedOrderClient(reactor, clock, pool, config.acme_ca_bundle)
    return IssuingService(
        storage=storage,
        config=config,
        clock=clock,
        orders=orders,
        pool=pool,
        lock_ttl=config.acme_lock_ttl if lock_ttl is None else lock_ttl,
    )


@define(eq=False)
class IssuingService(Service):
    """Issues and renews the certificates recorded in ``storage`` (see the module docstring)."""

    storage: IStorage
    config: Config
    clock: IReactorTime
    orders: IOrderClient
    #: started and stopped with the service when given
    pool: ThreadPool | None = None
    #: returns floats in [0, 1) for the jitter of retries
    random: Callable[[], float] = field(factory=lambda: _random.SystemRandom().random)
    #: seconds the cluster lock lives without a refresh
    lock_ttl: float = 60.0
    #: seconds an order may take from answering the challenges to the chain
    order_timeout: float = 90.0
    #: told each attempt's outcome: the record, a Failure, or None (nothing ordered)
    on_attempt: Callable[[Certificate | Failure | None], None] = lambda result: None

    _log = Logger()
    _orderer: CertificateOrderer = field(init=False)
    #: cert_name -> callers waiting for the attempt in flight
    _waiters: dict[str, list[Deferred[Certificate | None]]] = field(factory=dict, init=False)
    #: cert_name -> fires when the attempt in flight has finished
    _tasks: dict[str, Deferred[None]] = field(factory=dict, init=False)
    _slots: DeferredSemaphore = field(init=False)
    _tick: LoopingCall | None = field(default=None, init=False)
    _wakeup: IDelayedCall | None = field(default=None, init=False)
    #: the scan after an attempt finished
    _rescan: IDelayedCall | None = field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        """Bound concurrent orders by ``cert_gen_max_workers``."""
        self._slots = DeferredSemaphore(max(self.config.cert_gen_max_workers, 1))
        self._orderer = CertificateOrderer(
            storage=self.storage,
            config=self.config,
            clock=self.clock,
            orders=self.orders,
            random=self.random,
            lock_ttl=self.lock_ttl,
            order_timeout=self.order_timeout,
        )

    # -- lifecycle ------------------------------------------------------------------

    def startService(self) -> None:
        """Start the pool and the periodic check (the first one at once)."""
        super().startService()  # type: ignore[no-untyped-call]
        if self.pool is not None:
            self.pool.start()
        self._tick = LoopingCall(self._scan_logged)
        self._tick.clock = self.clock
        self._tick.start(self.config.renewal_check_interval, now=True)

    def stopService(self) -> Deferred[None]:
        """Stop scheduling, abandon orders waiting for the CA, then stop the pool.

        Abandoned orders are not failures: their records stay due, and the next
        daemon (or this one after a restart) orders them again.
        """
        super().stopService()  # type: ignore[no-untyped-call]
        if self._tick is not None and self._tick.running:
            self._tick.stop()
        self._cancel_wakeup()
        self._cancel_rescan()
        self.orders.cancel_all()
        in_flight = list(self._tasks.values())

        def stop_pool(_: object) -> None:
            self._cancel_rescan()
            if self.pool is not None:
                self.pool.stop()

        done: Deferred[None] = gatherResults(in_flight, consumeErrors=True).addBoth(stop_pool)
        return done

    # -- API for the admin endpoints ----------------------------------------------------

    def request_certificate(
        self,
        cert_name: str,
        domains: tuple[str, ...] | list[str],
        email: str | None = None,
        staging: bool = False,
        owner: str = ADMIN_TOKEN_NAME,
    ) -> Deferred[Certificate]:
        """Record a new ``pending`` certificate and start ordering it in the background.

        Fires with the stored record; ``InvalidInput`` for a bad name or domain list,
        ``Conflict`` if ``cert_name`` exists.  Watch the outcome with :meth:`get`
        or :meth:`wait`.
        """
        return ensureDeferred(self._request(cert_name, tuple(domains), email, staging, owner))

    async def _request(
        self, cert_name: str, domains: tuple[str, ...], email: str | None, staging: bool, owner: str
    ) -> Certificate:
        if not _CERT_NAME.match(cert_name):
            raise InvalidInput(
                f"certificate name {cert_name!r} must be 1-128 letters, digits, '.', '_' or '-'",
                field="cert_name",
            )
        names = normalize_domains(domains)
        now = self.clock.seconds()
        record = Certificate(
            cert_name=cert_name,
            domains=names,
            email=self.config.admin_email if email is None else email,
            staging=staging,
            acme_directory_url=self._orderer.directory(staging),
            status="pending",
            owner=owner,
            created_at=now,
            updated_at=now,
        )
        await self._orderer.certificates.create(record)
        self._start_in_background(cert_name)
        return record

    def renew(self, cert_name: str) -> Deferred[Certificate | None]:
        """Order ``cert_name`` again now, whatever its schedule; fires with the resulting record.

        ``NotFound`` if there is no such certificate; ``Conflict`` while the CA's
        failure budget for one of its names is spent.  Fires with None when another
        daemon holds the order (it will store the outcome).
        """
        return ensureDeferred(self._renew(cert_name))

    async def _renew(self, cert_name: str) -> Certificate | None:
        record = await self.get(cert_name)
        self._orderer.load_budget(await self._orderer.certificates.list())
        now = self.clock.seconds()
        allowed = self._orderer.budget.next_allowed(record.domains, now)
        if allowed > now:
            raise Conflict(
                f"too many failed validations for {', '.join(record.domains)}; "
                f"retry in {int(allowed - now) + 1} seconds"
            )
        return await self._start(cert_name, forced=True)

    def convert(self, cert_name: str, staging: bool) -> Deferred[Certificate]:
        """Move ``cert_name`` to the staging or production directory and order it there.

        The record is updated at once (the certificate it has keeps being served) and
        left due (``retry_at`` now), so whichever daemon orders next orders it from the
        new directory, even if an order (a renewal) was running: that order's outcome
        is dropped (the later request wins, never silently lost).  Fires with the
        updated record; ``NotFound`` if there is no such certificate.
        """
        return ensureDeferred(self._convert(cert_name, staging))

    async def _convert(self, cert_name: str, staging: bool) -> Certificate:
        record = await self.get(cert_name)
        moved = evolve(
            record,
            staging=staging,
            acme_directory_url=self._orderer.directory(staging),
            status="ready" if record.status == "ready" else "pending",
            error=None,
            # due now, in the record: every daemon's scan sees it, whoever holds the lock
            retry_at=self.clock.seconds(),
            failures=0,
            # an order in flight at the other directory is not resumed here
            order_url=None,
            order_account_url=None,
            updated_at=self.clock.seconds(),
        )
        await self._orderer.certificates.update(moved)
        self._orderer.not_before.pop(cert_name, None)
        # if an attempt is in flight here, it finds the record changed and drops its
        # outcome; the scan after it (see _finished) orders the record as it is now
        self._start_in_background(cert_name)
        return moved

    def get(self, cert_name: str) -> Deferred[Certificate]:
        """The stored record of ``cert_name``; ``NotFound`` if there is none."""

        def found(record: Certificate | None) -> Certificate:
            if record is None:
                raise NotFound(f"no certificate named {cert_name!r}", field="cert_name")
            return record

        return self._orderer.certificates.get(cert_name).addCallback(found)

    def list_certificates(self) -> Deferred[list[Certificate]]:
        """Every certificate record, sorted by name."""
        return self._orderer.certificates.list()

    def is_ordering(self, cert_name: str) -> bool:
        """Whether this daemon has an attempt for ``cert_name`` in flight."""
        return cert_name in self._tasks

    def wait(self, cert_name: str) -> Deferred[Certificate | None]:
        """The record after the attempt in flight here (the current record if none is)."""
        if cert_name in self._tasks:
            return self._observe(cert_name)
        return ensureDeferred(self._current(cert_name))

    async def _current(self, cert_name: str) -> Certificate | None:
        return await self._orderer.certificates.get(cert_name)

    def check_now(self) -> Deferred[None]:
        """Scan every record once and start what is due (also run by the periodic tick)."""
        return ensureDeferred(self._scan())

    # -- scheduling --------------------------------------------------------------------

    async def _scan(self) -> None:
        if not self.running:
            return
        records = await self._orderer.certificates.list()
        now = self.clock.seconds()
        self._orderer.load_budget(records)
        upcoming: list[float] = []
        for record in records:
            when = self._orderer.due_at(record, now)
            if when is None or record.cert_name in self._tasks:
                continue
            if when <= now:
                self._start_in_background(record.cert_name)
            else:
                upcoming.append(when)
        self._schedule_wakeup(min(upcoming, default=None), now)

    def _scan_logged(self) -> Deferred[None]:
        """A scan whose failure is logged, so that the periodic tick keeps running."""

        def failed(failure: Failure) -> None:
            if not self.running:
                # stopped meanwhile (e.g. a listener could not open): storage is closing
                self._log.debug("certificate scan ended by the shutdown")
                return
            self._log.failure("certificate scan failed", failure)

        return self.check_now().addErrback(failed)

    def _schedule_wakeup(self, when: float | None, now: float) -> None:
        """Wake for ``when`` if it comes before the next periodic tick."""
        self._cancel_wakeup()
        if when is None or not self.running:
            return
        delay = max(when - now, MIN_WAKEUP)
        if delay < self.config.renewal_check_interval:
            self._wakeup = self.clock.callLater(delay, self._woken)

    def _woken(self) -> None:
        self._wakeup = None
        self._scan_logged()

    def _cancel_wakeup(self) -> None:
        if self._wakeup is not None and self._wakeup.active():
            self._wakeup.cancel()
        self._wakeup = None

    def _cancel_rescan(self) -> None:
        if self._rescan is not None and self._rescan.active():
            self._rescan.cancel()
        self._rescan = None

    def _start(self, cert_name: str, forced: bool) -> Deferred[Certificate | None]:
        """Start an attempt for ``cert_name`` unless one is in flight; observe its outcome."""
        if cert_name in self._tasks:
            return self._observe(cert_name)
        # registered before the attempt runs, which may finish synchronously
        self._tasks[cert_name] = Deferred()
        self._waiters[cert_name] = []
        waiter = self._observe(cert_name)
        attempt = self._slots.run(self._attempt, cert_name, forced)
        attempt.addBoth(self._finished, cert_name)
        return waiter

    def _start_in_background(self, cert_name: str) -> None:
        """Start an attempt nobody waits for (its failure is logged by :meth:`_finished`)."""
        self._start(cert_name, forced=False).addErrback(lambda _: None)

    def _attempt(self, cert_name: str, forced: bool) -> Deferred[Certificate | None]:
        """An orderer attempt, unless the service stopped while it waited for a slot."""
        if not self.running:
            return succeed(None)
        return self._orderer.attempt(cert_name, forced)

    def _observe(self, cert_name: str) -> Deferred[Certificate | None]:
        waiter: Deferred[Certificate | None] = Deferred()
        self._waiters[cert_name].append(waiter)
        return waiter

    def _finished(self, result: Certificate | Failure | None, cert_name: str) -> None:
        """Hand the outcome to the waiters and look again at the schedule."""
        self.on_attempt(result)
        done = self._tasks.pop(cert_name)
        waiters = self._waiters.pop(cert_name, [])
        if isinstance(result, Failure):
            self._log.failure("attempt for {cert_name} failed", result, cert_name=cert_name)
            # e.g. the store failed before the outcome could be recorded: no hot loop
            self._orderer.not_before[cert_name] = self.clock.seconds() + self.lock_ttl
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)
        done.callback(None)
        # not a nested scan: the scan that started this attempt may still be running
        # (attempts can finish synchronously) and would replace the wakeup it schedules
        if self.running and (self._rescan is None or not self._rescan.active()):
            self._rescan = self.clock.callLater(0, self._scan_logged)
