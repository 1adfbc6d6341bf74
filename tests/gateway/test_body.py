"""Tests for the streamed request body (the upstream request's IBodyProducer), in memory."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import UNKNOWN_LENGTH

from oauthproxy.gateway.body import HIGH_WATER, LOW_WATER, RequestBody, RequestBodyTooLarge


class _Consumer:
    """An upstream stand-in: collects what is written."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        """Collect."""
        self.data += data


class _ClientTransport:
    """The client connection: records pause/resume of reading."""

    def __init__(self) -> None:
        self.paused = False
        self.pauses = 0

    def pauseProducing(self) -> None:
        """Stop reading."""
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        """Read again."""
        self.paused = False


def started(length: int | None = 10) -> tuple[RequestBody, _Consumer, _ClientTransport, Any]:
    """A body whose upstream request has started; returns the producer's Deferred too."""
    transport = _ClientTransport()
    body = RequestBody(length, transport)
    consumer = _Consumer()
    return body, consumer, transport, body.startProducing(consumer)  # type: ignore[arg-type]


class StreamingTests(SynchronousTestCase):
    """Chunks flow to the upstream as they arrive."""

    def test_length_is_declared_or_unknown(self) -> None:
        """Content-Length is passed on; a chunked body is sent chunked (unknown length)."""
        self.assertEqual(RequestBody(7, _ClientTransport()).length, 7)
        self.assertIs(RequestBody(None, _ClientTransport()).length, UNKNOWN_LENGTH)

    def test_chunks_before_the_upstream_starts_are_sent_at_start(self) -> None:
        """What arrived while connecting is written when the upstream request starts."""
        body = RequestBody(10, _ClientTransport())
        body.feed(b"hello")
        consumer = _Consumer()
        body.startProducing(consumer)  # type: ignore[arg-type]
        self.assertEqual(bytes(consumer.data), b"hello")

    def test_chunks_pass_straight_through(self) -> None:
        """While the upstream accepts, nothing is held."""
        body, consumer, _transport, _done = started()
        body.feed(b"abc")
        self.assertEqual((bytes(consumer.data), body.buffered), (b"abc", 0))

    def test_deferred_fires_when_the_whole_body_is_sent(self) -> None:
        """The producer's Deferred fires once the client's body ended and all of it is out."""
        body, _consumer, _transport, done = started()
        body.feed(b"0123456789")
        self.assertNoResult(done)
        body.end()
        self.successResultOf(done)
        self.assertTrue(body.sent)


class BackPressureTests(SynchronousTestCase):
    """A paused upstream holds chunks here; past the high-water mark the client is paused."""

    def test_paused_upstream_holds_chunks(self) -> None:
        """Nothing is written while the upstream is paused."""
        body, consumer, transport, _done = started(None)
        body.pauseProducing()
        body.feed(b"x" * 100)
        self.assertEqual((len(consumer.data), body.buffered), (0, 100))
        self.assertFalse(transport.paused)

    def test_client_paused_past_high_water(self) -> None:
        """More than HIGH_WATER held pauses the client (once)."""
        body, _consumer, transport, _done = started(None)
        body.pauseProducing()
        for _ in range(3):
            body.feed(b"x" * HIGH_WATER)
        self.assertTrue(transport.paused)
        self.assertEqual(transport.pauses, 1)

    def test_upstream_resume_drains_and_resumes_client(self) -> None:
        """The upstream draining sends what waits and lets the client send again."""
        body, consumer, transport, _done = started(None)
        body.pauseProducing()
        body.feed(b"x" * (HIGH_WATER + 1))
        body.resumeProducing()
        self.assertEqual(len(consumer.data), HIGH_WATER + 1)
        self.assertLessEqual(body.buffered, LOW_WATER)
        self.assertFalse(transport.paused)

    def test_progress_hook_on_resume(self) -> None:
        """The forwarder's read timeout hears about upstream progress."""
        body, _consumer, _transport, _done = started(None)
        calls: list[None] = []
        body.on_progress = lambda: calls.append(None)
        body.pauseProducing()
        body.resumeProducing()
        self.assertEqual(len(calls), 1)


class EndingTests(SynchronousTestCase):
    """Failure, cancellation, stop and 100-continue."""

    def test_failure_errbacks_the_upstream_request(self) -> None:
        """Too large (or client gone): the Deferred fails, so the upstream request aborts."""
        body, _consumer, _transport, done = started(None)
        body.fail(Failure(RequestBodyTooLarge("too much")))
        self.failureResultOf(done, RequestBodyTooLarge)

    def test_failure_before_start_fails_start(self) -> None:
        """A body that failed before the upstream connected never starts."""
        body = RequestBody(10, _ClientTransport())
        body.fail(Failure(RequestBodyTooLarge("too much")))
        self.failureResultOf(body.startProducing(_Consumer()), RequestBodyTooLarge)  # type: ignore[arg-type]

    def test_stopped_body_discards_and_never_fires(self) -> None:
        """After stopProducing the rest is dropped and the Deferred stays silent."""
        body, consumer, transport, done = started()
        body.pauseProducing()
        body.feed(b"x" * (HIGH_WATER + 1))
        body.stopProducing()
        body.feed(b"more")
        body.fail(Failure(RequestBodyTooLarge("late")))
        self.assertNoResult(done)
        self.assertEqual((len(consumer.data), body.buffered), (0, 0))
        self.assertFalse(transport.paused)  # the rest is read and dropped

    def test_cancel_stops_the_body(self) -> None:
        """Cancelling the upstream request (timeout, client gone) stops the body."""
        body, _consumer, _transport, done = started()
        done.cancel()
        self.failureResultOf(done, CancelledError)
        self.assertTrue(body.stopped)

    def test_continue_sent_when_upstream_request_starts(self) -> None:
        """``100 Continue`` goes out at startProducing, not before."""
        sent: list[None] = []
        body = RequestBody(5, _ClientTransport(), lambda: sent.append(None))
        body.expect_continue = True
        self.assertEqual(sent, [])
        body.startProducing(_Consumer())  # type: ignore[arg-type]
        self.assertEqual(len(sent), 1)
