"""One certificate order at a time: lock, order, store the outcome.

:class:`CertificateOrderer` is the part of the issuing service
(:mod:`oauthproxy.acme.service`) that handles a single certificate:

1. takes the cluster lock ``acme:<cert_name>`` (TTL + fencing token, refreshed while
   the order runs); a daemon killed mid-order loses it by TTL and the record, still
   due, is ordered by whoever takes the lock next;
2. re-reads the record under the lock (another daemon may have finished it);
3. gets (or creates and stores) the account key for the ACME directory, makes a
   certificate key, creates the order (:class:`~oauthproxy.acme.client.IOrderClient`,
   off the reactor thread) or resumes the one a daemon that died mid-order left in
   the record (``order_url``), stores the order's URL in the record, publishes the
   HTTP-01 answers to the shared challenge store, completes the order, withdraws the
   answers;
4. writes the key and chain with ``status="ready"`` only if the lock is still its own
   (the storage layer publishes ``certificate_ready``; every daemon's SNI map loads
   it), or on failure the readable ``error``, ``failures`` and a backed-off, jittered
   ``retry_at`` that also respects the CA's failed-authorization budget.  Records
   carry the schedule, so it survives restarts.

Requests on one certificate are serialised by the lock, and the later one wins: an
order whose record changed under it (a ``convert`` to the other directory, or new
names, while it ran) stores nothing, neither chain nor failure, and the record, which
the change left due, is ordered again at once for what it says now.

A certificate that is (nearly) due for renewal the moment it arrives (it expires at
once, or the CA's clock lags far behind ours) is stored and served, but counts as a
failed attempt: the next order waits for a backed-off ``retry_at`` instead of
following at once, and never sooner than ``MIN_RENEWAL_INTERVAL`` after the issuance.
"""

from __future__ import annotations

import datetime
import random as _random
from collections.abc import Callable

from attrs import define, evolve, field
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from oauthproxy.acme.certs import (
    CertificateInfo,
    FailureBudget,
    backoff_delay,
    due_at_issuance,
    parse_certificate,
    renewal_due,
)
from oauthproxy.acme.client import AcmeOrderError, IOrderClient, OrderCancelled, OrderRequest
from oauthproxy.config import Config
from oauthproxy.errors import OAuthProxyError
from oauthproxy.interfaces import (
    IAccountKeyStore,
    ICertificateStore,
    IChallengeStore,
    ILocks,
    IStorage,
)
from oauthproxy.model import Certificate, CertStatus

#: seconds HTTP-01 answers stay in the shared store (orders finish well within it)
CHALLENGE_TTL = 600.0


@define(eq=False)
class CertificateOrderer:
    """Orders single certificates for the issuing service (see the module docstring)."""

    storage: IStorage
    config: Config
    clock: IReactorTime
    orders: IOrderClient
    #: returns floats in [0, 1) for the jitter of retries
    random: Callable[[], float] = field(factory=lambda: _random.SystemRandom().random)
    #: seconds the cluster lock lives without a refresh
    lock_ttl: float = 60.0
    #: seconds an order may take from answering the challenges to the chain
    order_timeout: float = 90.0
    #: failed authorizations per identifier, as last read from every record (plus the
    #: failures this daemon saw since)
    budget: FailureBudget = field(factory=FailureBudget)
    #: cert_name -> not before this time (after a failure or a lock held elsewhere);
    #: kept in memory too, so that a store that cannot record a failure causes no hot loop
    not_before: dict[str, float] = field(factory=dict)

    _log = Logger()

    @property
    def certificates(self) -> ICertificateStore:
        """The certificate store, typed."""
        store: ICertificateStore = self.storage.certificates
        return store

    @property
    def _locks(self) -> ILocks:
        locks: ILocks = self.storage.locks
        return locks

    @property
    def _challenges(self) -> IChallengeStore:
        challenges: IChallengeStore = self.storage.challenges
        return challenges

    @property
    def _accounts(self) -> IAccountKeyStore:
        accounts: IAccountKeyStore = self.storage.accounts
        return accounts

    def load_budget(self, records: list[Certificate]) -> None:
        """Rebuild :attr:`budget` from the failed authorizations that ``records`` keep.

        The records are shared by every daemon and survive restarts, so the CA's limit
        holds cluster-wide and across restarts.
        """
        self.budget = FailureBudget.from_entries(
            entry for record in records for entry in record.failed_authorizations
        ).prune(self.clock.seconds())

    def directory(self, staging: bool) -> str:
        """The ACME directory for production or staging certificates."""
        return self.config.acme_staging_url if staging else self.config.acme_directory_url

    def due_at(self, record: Certificate, now: float) -> float | None:
        """When ``record`` next needs an attempt; None = only when asked.

        Renewal time for ready certificates, ``retry_at`` after failures, now for new
        ones; never before this daemon's own hold-off or the CA's failure budget.
        """
        if record.status == "ready" and record.retry_at is None:
            if record.not_before is None or record.not_after is None:
                when = now
            else:
                threshold = self.config.renewal_threshold_days * 86400.0
                # issued_at is None only for chains that did not come from an order here;
                # the first renewal sets it, so a chain that is due on arrival cannot loop
                when = renewal_due(record.not_before, record.not_after, threshold, record.issued_at)
        elif record.status == "failed" and record.retry_at is None:
            return None
        else:
            when = record.retry_at if record.retry_at is not None else now
        when = max(when, self.not_before.get(record.cert_name, when))
        return max(when, self.budget.next_allowed(record.domains, now))

    def attempt(self, cert_name: str, forced: bool) -> Deferred[Certificate | None]:
        """Lock, re-check and order ``cert_name``; the record afterwards (None if not ours).

        ``forced`` orders even if the record is not due (an explicit renewal).
        """
        return ensureDeferred(self._attempt(cert_name, forced))

    async def _attempt(self, cert_name: str, forced: bool) -> Certificate | None:
        lock_name = f"acme:{cert_name}"
        token = await self._locks.acquire(lock_name, self.lock_ttl)
        if token is None:
            # another daemon orders it; look again once its lock would have expired
            self.not_before[cert_name] = self.clock.seconds() + self.lock_ttl
            return None
        lost: list[bool] = []
        refresher = LoopingCall(self._refresh, lock_name, token, lost)
        refresher.clock = self.clock
        refresher.start(self.lock_ttl / 3.0, now=False)
        try:
            self.load_budget(await self.certificates.list())
            record = await self.certificates.get(cert_name)
            if record is None:
                return None
            now = self.clock.seconds()
            when = self.due_at(record, now)
            if not forced and (when is None or when > now):
                return record
            return await self._order(record, lock_name, token, lost)
        finally:
            refresher.stop()
            await self._locks.release(lock_name, token)

    def _refresh(self, lock_name: str, token: int, lost: list[bool]) -> Deferred[None]:
        """Extend the lock; remember when it was lost."""

        def result(held: bool) -> None:
            if not held:
                lost.append(True)

        def failed(failure: Failure) -> None:
            self._log.failure("cannot refresh lock {lock}", failure, lock=lock_name)

        return self._locks.refresh(lock_name, token, self.lock_ttl).addCallbacks(result, failed)

    async def _order(
        self, record: Certificate, lock_name: str, token: int, lost: list[bool]
    ) -> Certificate | None:
        """One ACME order for ``record``; stores and returns the outcome."""
        directory = record.acme_directory_url or self.directory(record.staging)
        published: list[str] = []
        try:
            account_key = await self._accounts.get(directory)
            if account_key is None:
                account_key = await self.orders.generate_key("account")
                await self._accounts.put(directory, account_key)
            private_key = await self.orders.generate_key("certificate")
            resume = record.order_url if record.acme_directory_url == directory else None
            pending = await self.orders.begin(
                OrderRequest(
                    directory,
                    record.domains,
                    record.email,
                    account_key,
                    private_key,
                    resume_url=resume,
                    resume_account_url=record.order_account_url if resume else None,
                )
            )
            await self._remember_order(record, pending.order_url, pending.account_url, lost)
            for challenge in pending.challenges:
                await self._challenges.put(
                    challenge.token, challenge.key_authorization, CHALLENGE_TTL
                )
                published.append(challenge.token)
            fullchain = await self.orders.complete(pending, self.order_timeout)
            info = parse_certificate(fullchain)
        except OrderCancelled:
            # not the order's fault: the record stays due for whoever orders next
            self._log.info("order for {cert_name} abandoned", cert_name=record.cert_name)
            return None
        except AcmeOrderError as e:
            return await self._failed(record, e.detail, e.failed_identifiers)
        except OAuthProxyError as e:
            return await self._failed(record, e.detail, ())
        except Exception as e:
            # a bug or an unexpected library error still ends as a recorded failure with
            # a retry time, never as a record that stays due and is ordered again at once
            self._log.failure("unexpected error ordering {cert_name}", cert_name=record.cert_name)
            return await self._failed(record, f"unexpected error: {e!r}", ())
        finally:
            for challenge_token in published:
                await self._forget_challenge(challenge_token)
        # fencing: write only while the lock is still ours
        if lost or not await self._locks.refresh(lock_name, token, self.lock_ttl):
            self._log.warn("lost lock {lock} during the order; not storing", lock=lock_name)
            return None
        current = await self.certificates.get(record.cert_name)
        if current is None or self._superseded(record, current):
            return None
        issued = self._issued(current, fullchain, private_key, info, directory)
        await self.certificates.update(issued)
        self._log.info(
            "certificate {cert_name} issued for {domains} until {not_after}",
            cert_name=record.cert_name,
            domains=",".join(info.domains),
            not_after=info.not_after,
        )
        return issued

    def _superseded(self, ordered: Certificate, current: Certificate) -> bool:
        """Whether the record changed what to order while ``ordered`` was being ordered.

        The later request wins: this order's outcome is dropped, and the record (left
        due by the change) is ordered again for what it says now.
        """
        changed = (
            current.acme_directory_url != ordered.acme_directory_url
            or current.staging != ordered.staging
            or current.domains != ordered.domains
        )
        if changed:
            self._log.info(
                "order for {cert_name} superseded by a change to the record; ordering again",
                cert_name=ordered.cert_name,
            )
            self.not_before.pop(ordered.cert_name, None)
        return changed

    def _issued(
        self,
        current: Certificate,
        fullchain: str,
        private_key: str,
        info: CertificateInfo,
        directory: str,
    ) -> Certificate:
        """The record with the new chain; a backed-off retry if it is due already."""
        now = self.clock.seconds()
        threshold = self.config.renewal_threshold_days * 86400.0
        error = None
        retry_at = None
        failures = 0
        if due_at_issuance(info.not_before, info.not_after, threshold, now):
            # the CA's clock or lifetime is off: ordering again at once would get the
            # same answer, in a loop; back off as after a failure (the chain is served)
            failures = current.failures + 1
            retry_at = now + backoff_delay(failures, self.random)
            error = (
                f"the CA issued a certificate valid only until {_utc(info.not_after)}, "
                f"due for renewal already; next attempt at {_utc(retry_at)}"
            )
            self.not_before[current.cert_name] = retry_at
            self._log.warn(
                "certificate {cert_name}: {error}", cert_name=current.cert_name, error=error
            )
        else:
            self.not_before.pop(current.cert_name, None)
        return evolve(
            current,
            status="ready",
            fullchain_pem=fullchain,
            private_key_pem=private_key,
            not_before=info.not_before,
            not_after=info.not_after,
            issuer=info.issuer,
            fingerprint_sha256=info.fingerprint_sha256,
            acme_directory_url=directory,
            error=error,
            retry_at=retry_at,
            failures=failures,
            issued_at=now,
            order_url=None,
            order_account_url=None,
            updated_at=now,
        )

    async def _remember_order(
        self, record: Certificate, order_url: str, account_url: str, lost: list[bool]
    ) -> None:
        """Store the order in flight in the record, for whoever attempts after a crash."""
        if not order_url or lost or record.order_url == order_url:
            return
        current = await self.certificates.get(record.cert_name)
        if current is None or self._superseded(record, current):
            return
        await self.certificates.update(
            evolve(current, order_url=order_url, order_account_url=account_url or None)
        )

    async def _forget_challenge(self, challenge_token: str) -> None:
        try:
            await self._challenges.delete(challenge_token)
        except OAuthProxyError as e:
            # it expires by itself after CHALLENGE_TTL
            self._log.warn("cannot delete challenge {token}: {e}", token=challenge_token, e=e)

    async def _failed(
        self, record: Certificate, reason: str, failed_identifiers: tuple[str, ...]
    ) -> Certificate | None:
        """Store the failure with its reason and the next retry time."""
        now = self.clock.seconds()
        self.budget = self.budget.record(failed_identifiers, now)
        failures = record.failures + 1
        retry_at = max(
            now + backoff_delay(failures, self.random),
            self.budget.next_allowed(record.domains, now),
        )
        current = await self.certificates.get(record.cert_name)
        if current is None or self._superseded(record, current):
            return None
        self.not_before[record.cert_name] = retry_at
        self._log.warn(
            "certificate {cert_name} failed ({failures} in a row), retry at {retry_at}: {reason}",
            cert_name=record.cert_name,
            failures=failures,
            retry_at=retry_at,
            reason=reason,
        )
        window_start = now - self.budget.window
        failed_authorizations = tuple(
            (name, when) for name, when in current.failed_authorizations if when > window_start
        ) + tuple((name, now) for name in failed_identifiers)
        # a renewal that fails keeps serving the certificate it has
        status: CertStatus = (
            "ready" if current.status == "ready" and current.fullchain_pem else "failed"
        )
        failed = evolve(
            current,
            status=status,
            error=reason,
            failures=failures,
            failed_authorizations=failed_authorizations,
            retry_at=retry_at,
            # the order failed or never was: the next attempt places a new one
            order_url=None,
            order_account_url=None,
            updated_at=now,
        )
        await self.certificates.update(failed)
        return failed


def _utc(when: float) -> str:
    """``when`` as an ISO 8601 UTC time to the second, for readable reasons."""
    return datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
