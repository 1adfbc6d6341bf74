"""FinishedRequests: each finished gateway request read once, its row handed to every sink."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.requestlog.finished import FinishedRequests, random_token
from oauthproxy.requestlog.record import ROW_STATUS, RequestNotes, Row, notes_for
from tests.requestlog.samples import T0, finish_request


class Sink:
    """Keeps every batch it is handed: (rows, notes)."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[tuple[list[Row], list[RequestNotes | None]]] = []
        self.fail = fail

    def take(self, rows: Sequence[Row], notes: Sequence[RequestNotes | None]) -> None:
        """Keep the batch (then fail, if asked to)."""
        self.batches.append((list(rows), list(notes)))
        if self.fail:
            raise RuntimeError("this sink is broken")


class FinishedRequestsTests(SynchronousTestCase):
    """Batches, the timer, shutdown, broken requests and sinks."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.sinks = [Sink(), Sink()]

    def finished(self, **kwargs: Any) -> FinishedRequests:
        """A started pipeline to ``self.sinks`` (stopped in cleanup)."""
        finished = FinishedRequests(self.clock, self.sinks, **kwargs)
        finished.startService()
        self.addCleanup(lambda: finished.running and finished.stopService())
        return finished

    def test_rows_are_made_every_so_many_requests_for_every_sink(self) -> None:
        """The ``every``-th request hands the batch to each sink, rows and notes in step."""
        finished = self.finished(every=3)

        def noted(request: Any) -> None:
            notes_for(request).user = "octocat"

        finish_request(finished.access_log, code=200)
        finish_request(finished.access_log, code=404)
        self.assertEqual([s.batches for s in self.sinks], [[], []])
        finish_request(finished.access_log, code=201, before=noted)
        for sink in self.sinks:
            [(rows, notes)] = sink.batches
            self.assertEqual([row[ROW_STATUS] for row in rows], [200, 404, 201])
            self.assertEqual([n.user if n else None for n in notes], [None, None, "octocat"])

    def test_the_timer_hands_over_fewer(self) -> None:
        """Fewer than ``every`` requests reach the sinks within ``interval`` seconds."""
        finished = self.finished()
        finish_request(finished.access_log)
        self.clock.advance(0.2)
        self.assertEqual(self.sinks[0].batches, [])
        self.clock.advance(0.05)
        self.assertEqual(len(self.sinks[0].batches[0][0]), 1)
        self.clock.advance(0.25)  # nothing new: no empty batch
        self.assertEqual(len(self.sinks[0].batches), 1)

    def test_stopping_hands_over_what_is_kept(self) -> None:
        """Stopped before the writer (tap.compose's order), nothing kept is lost."""
        finished = self.finished()
        finish_request(finished.access_log)
        finished.stopService()
        self.assertEqual(len(self.sinks[1].batches[0][0]), 1)

    def test_a_broken_request_is_counted_and_logged_not_raised(self) -> None:
        """A request that cannot be read never raises into twisted.web, and the requests
        after it are still handed over."""
        finished = self.finished()
        finished.access_log(object())
        finish_request(finished.access_log)
        finished.drain()
        self.assertEqual(finished.unrecordable, 1)
        self.assertEqual(len(self.sinks[0].batches[0][0]), 1)
        self.assertEqual(len(self.flushLoggedErrors(AttributeError)), 1)

    def test_a_broken_sink_does_not_keep_rows_from_the_others(self) -> None:
        """A sink that raises is logged; the next sink still gets the batch."""
        self.sinks.insert(0, Sink(fail=True))
        finished = self.finished()
        finish_request(finished.access_log)
        finished.drain()
        self.assertEqual([len(s.batches) for s in self.sinks], [1, 1, 1])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_authorization_server_answers_are_handed_over_at_once(self) -> None:
        """The OAuth metrics get the request the authorization server answered, itself,
        before the hook returns; other requests are not handed to them."""
        answered: list[Any] = []
        finished = self.finished(authorization_server=answered.append)

        def issuer(request: Any) -> None:
            notes_for(request).authorization_server = True

        finish_request(finished.access_log)
        request = finish_request(finished.access_log, b"/token", method=b"POST", before=issuer)
        self.assertEqual(answered, [request])
        finished.drain()
        self.assertEqual(len(self.sinks[0].batches[0][0]), 2)

    def test_a_failing_authorization_server_hook_loses_no_row(self) -> None:
        """Should the OAuth metrics fail on a request, it is logged, and the request
        still reaches the sinks."""

        def broken(request: Any) -> None:
            raise RuntimeError("cannot read the form")

        def issuer(request: Any) -> None:
            notes_for(request).authorization_server = True

        finished = self.finished(authorization_server=broken)
        finish_request(finished.access_log, b"/token", method=b"POST", before=issuer)
        finished.drain()
        self.assertEqual(len(self.sinks[0].batches[0][0]), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class CorrelationTokenTests(SynchronousTestCase):
    """The random part of the correlation ids the rows get."""

    def test_tokens_are_eight_hex_digits_and_do_not_repeat(self) -> None:
        """Made ahead in blocks, the tokens are still 8 hex digits and distinct across
        several blocks (a repeat would make two requests share a correlation id)."""
        tokens = [random_token() for _ in range(2000)]
        self.assertTrue(all(len(t) == 8 and int(t, 16) >= 0 for t in tokens))
        self.assertEqual(len(set(tokens)), len(tokens))

    def test_a_forked_child_makes_tokens_of_its_own(self) -> None:
        """A worker forked after the parent made tokens ahead does not hand out the
        parent's next ones (workers would repeat each other's correlation ids)."""
        random_token()  # the parent has tokens made ahead
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report its next tokens and leave at once
            os.write(write, " ".join(random_token() for _ in range(8)).encode())
            os._exit(0)
        self.addCleanup(os.close, read)
        os.close(write)
        os.waitpid(pid, 0)
        child = os.read(read, 1000).decode().split()
        parent = [random_token() for _ in range(8)]
        self.assertEqual(len(child), 8)
        self.assertFalse(set(child) & set(parent))
