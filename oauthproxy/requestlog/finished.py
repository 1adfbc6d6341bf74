"""Finished gateway requests, read once: the gateway's access-log hook and its sinks.

The metrics count every finished gateway request and the request log keeps it, and
both want the same things of it: its status, host, method, duration and bytes.
:meth:`FinishedRequests.access_log` is the one hook the gateway calls
(``GatewaySite(..., access_log=finished.access_log)``): it keeps references to what the
finished request holds (:func:`~oauthproxy.requestlog.record.finished_request`, no
work beyond reading attributes), and every ``every`` requests, and on a timer every
``interval`` seconds, a :class:`~oauthproxy.requestlog.record.RowMaker` makes their
rows together and hands them, with the requests' notes, to each sink
(:class:`RowSink`): the metrics count them, the request-log writer keeps them.

Reading each request once, for both, in batches is what makes the request log cheap
next to the metrics.  When each read the request on its own, the metrics' hook cost
4.0 us per request and the log's 1.7 (``bench/metrics_hook.py``); now the metrics cost
2.6 and the log adds 0.4 to that.  The batch decodes each repeating host, method and
path once, while what the rows are made from is still in the CPU's caches, and the
metrics add up a batch before they touch a counter.  The sinks see a request at most
``interval`` seconds after it finished; a metrics scrape hands over what is kept first
(:attr:`Metrics.before_scrape <oauthproxy.metrics.registry.Metrics.before_scrape>`).

Requests the authorization server answered also go to ``authorization_server`` at
once, with the request itself (the OAuth metrics read the token request's form).
"""

from __future__ import annotations

import os
import random
import secrets
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from attrs import define, field
from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from oauthproxy.requestlog.record import (
    Finished,
    RequestNotes,
    Row,
    RowMaker,
    finished_request,
)

_log = Logger()

#: correlation ids need to be unique, not secret (they are shown to operators and are
#: no credential): a generator seeded from the OS, once per process (a forked worker
#: reseeds, so workers never repeat each other), is far cheaper per request than
#: reading the OS's randomness each time
_tokens = random.Random(secrets.randbits(128))
#: tokens made ahead, ``_TOKENS_AHEAD`` at a time: one ``getrandbits`` and one ``hex``
#: for all of them costs a third of making each on its own
_ahead: list[str] = []
_TOKENS_AHEAD = 256


def _reseed() -> None:
    """In a forked child: a seed of its own, and none of the parent's tokens made ahead."""
    _tokens.seed(secrets.randbits(128))
    _ahead.clear()


os.register_at_fork(after_in_child=_reseed)


def random_token() -> str:
    """The random part of a correlation id: 8 hex digits."""
    if not _ahead:
        digits = _tokens.getrandbits(32 * _TOKENS_AHEAD).to_bytes(4 * _TOKENS_AHEAD).hex()
        _ahead.extend(digits[i : i + 8] for i in range(0, 8 * _TOKENS_AHEAD, 8))
    return _ahead.pop()


class RowSink(Protocol):
    """What :class:`FinishedRequests` hands the rows of finished requests to."""

    def take(self, rows: Sequence[Row], notes: Sequence[RequestNotes | None]) -> None:
        """Take ``rows`` (oldest first) and the notes of their requests (same order)."""


@define(eq=False)
class FinishedRequests(Service):
    """Reads finished gateway requests once and hands their rows to the sinks in batches
    (see the module docstring)."""

    clock: IReactorTime
    sinks: Sequence[RowSink]
    #: called at once with each request the authorization server answered
    authorization_server: Callable[[Any], None] | None = None
    new_token: Callable[[], str] = random_token
    #: finished requests kept before their rows are made
    every: int = 64
    #: seconds between two batches at most
    interval: float = 0.25
    #: requests whose row could not be made (a bug; logged)
    unrecordable: int = field(default=0, init=False)
    _pending: list[Finished] = field(factory=list, init=False)
    _rows: RowMaker = field(init=False)
    _loop: LoopingCall | None = field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        """Make rows with this pipeline's correlation-id tokens."""
        self._rows = RowMaker(self.new_token)

    def access_log(self, request: Any) -> None:
        """The gateway's access-log hook: keep what the finished ``request`` holds.

        Never raises into twisted.web: a request that cannot be read is counted and
        logged (that is a bug, not an expected condition).
        """
        try:
            finished = finished_request(request, self.clock.seconds())
        except Exception:
            self._unrecordable()
            return
        pending = self._pending
        pending.append(finished)
        notes = finished[1]
        if notes is not None and notes.authorization_server and self.authorization_server:
            try:
                self.authorization_server(request)
            except Exception:
                _log.failure("could not count an answer of the authorization server")
        if len(pending) >= self.every:
            self.drain()

    def drain(self) -> None:
        """Make the rows of the requests kept so far and hand them to every sink."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        notes: list[RequestNotes | None] = []
        rows = self._rows.rows(pending, self._unrecordable, notes)
        for sink in self.sinks:
            try:
                sink.take(rows, notes)
            except Exception:
                _log.failure("{sink} could not take {count} rows", sink=sink, count=len(rows))

    def _unrecordable(self) -> None:
        """Count and log a request whose row could not be made."""
        self.unrecordable += 1
        _log.failure("could not read a finished request")

    def startService(self) -> None:
        """Hand rows over every ``interval`` seconds, however few requests finished."""
        super().startService()  # type: ignore[no-untyped-call]
        self._loop = LoopingCall(self.drain)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=False)

    def stopService(self) -> None:
        """Stop the timer and hand over what is kept (before the sinks stop)."""
        super().stopService()  # type: ignore[no-untyped-call]
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        self.drain()
