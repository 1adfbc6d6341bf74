"""Tests for the gateway Site's connection hygiene, driven in memory (no sockets)."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from oauthproxy.config import Config
from oauthproxy.gateway.channel import LINGER_SECONDS
from oauthproxy.gateway.site import GatewaySite


class _Recorder(Resource):
    """Answers ``ok`` and remembers every request it rendered."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Any] = []

    def render(self, request: Any) -> bytes:
        """Record and answer."""
        self.seen.append(request)
        return b"ok"


class _Holder(_Recorder):
    """Records requests and answers none of them (the test finishes them)."""

    def render(self, request: Any) -> Any:
        """Record; answer later."""
        self.seen.append(request)
        return NOT_DONE_YET


def connect(
    recorder: _Recorder | None = None, **limits: Any
) -> tuple[Any, StringTransport, Clock, _Recorder]:
    """A protocol of a GatewaySite with ``limits``, connected to a StringTransport."""
    clock = Clock()
    recorder = recorder or _Recorder()
    site = GatewaySite(recorder, Config(**limits), clock)
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, clock, recorder


class HeadDeadlineTests(SynchronousTestCase):
    """ATK-18: the request head must arrive within ``request_header_timeout``."""

    def test_slow_head_gets_408(self) -> None:
        """A head still incomplete at the deadline gets 408 and the connection closes."""
        protocol, transport, clock, recorder = connect(request_header_timeout=5.0)
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n")
        clock.advance(2)
        protocol.dataReceived(b"X-Drip: 1\r\n")  # activity does not extend the deadline
        clock.advance(3)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408"))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(recorder.seen, [])

    def test_head_in_time_is_served(self) -> None:
        """A head completed before the deadline is answered and no 408 follows."""
        protocol, transport, clock, recorder = connect(request_header_timeout=5.0)
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        clock.advance(10)
        self.assertEqual(len(recorder.seen), 1)
        self.assertNotIn(b"408", transport.value())

    def test_deadline_starts_at_first_byte_of_next_head(self) -> None:
        """An idle keep-alive connection is the idle timeout's business, not a 408."""
        protocol, transport, clock, recorder = connect(request_header_timeout=5.0)
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        clock.advance(6)
        protocol.dataReceived(b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(len(recorder.seen), 2)
        self.assertNotIn(b"408", transport.value())


class BodyLimitTests(SynchronousTestCase):
    """Request bodies over ``max_request_body`` get 413."""

    def test_declared_length_over_limit_is_413_without_rendering(self) -> None:
        """A Content-Length over the limit is refused before any body byte."""
        protocol, transport, _clock, recorder = connect(max_request_body=10)
        protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 413"))
        self.assertTrue(transport.disconnecting)
        protocol.dataReceived(b"x" * 11)
        self.assertEqual(recorder.seen, [])

    def test_body_at_limit_is_served(self) -> None:
        """Exactly ``max_request_body`` bytes pass."""
        protocol, _transport, _clock, recorder = connect(max_request_body=10)
        protocol.dataReceived(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n" + b"x" * 10
        )
        self.assertEqual(len(recorder.seen), 1)

    def test_form_body_is_not_parsed(self) -> None:
        """A urlencoded POST is not read into ``args``; its Content-Type reaches the resource."""
        protocol, _transport, _clock, recorder = connect()
        protocol.dataReceived(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 3\r\n\r\na=1"
        )
        request = recorder.seen[0]
        self.assertEqual(request.args, {})
        self.assertEqual(
            request.requestHeaders.getRawHeaders(b"content-type"),
            [b"application/x-www-form-urlencoded"],
        )


class HeaderLimitTests(SynchronousTestCase):
    """ATK-18: header size and count limits come from the config."""

    def test_header_count_over_limit_is_431(self) -> None:
        """More than ``max_header_count`` headers (issue 10 defect 6: 431, not a bare 400)."""
        protocol, transport, _clock, _recorder = connect(max_header_count=3)
        protocol.dataReceived(
            b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(5)) + b"\r\n"
        )
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 431"))
        self.assertTrue(transport.disconnecting)

    def test_head_over_byte_limit_is_431(self) -> None:
        """More than ``max_header_bytes`` in the head."""
        protocol, transport, _clock, _recorder = connect(max_header_bytes=100)
        protocol.dataReceived(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 200 + b"\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 431"))


POST_HEAD = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n"


class StreamedBodyTests(SynchronousTestCase):
    """HTTP/1.1 requests with a body are dispatched at the head and their body streams."""

    def test_request_is_dispatched_before_its_body(self) -> None:
        """The resource sees the request as soon as the head is complete."""
        protocol, _transport, _clock, holder = connect(_Holder())
        protocol.dataReceived(POST_HEAD + b"\r\n")
        self.assertEqual(len(holder.seen), 1)
        self.assertIsNotNone(holder.seen[0].body)

    def test_body_chunks_reach_the_streamed_body(self) -> None:
        """Body bytes arrive in ``request.body`` (nothing is spooled to ``content``)."""
        protocol, _transport, _clock, holder = connect(_Holder())
        protocol.dataReceived(POST_HEAD + b"\r\n" + b"01234")
        body = holder.seen[0].body
        self.assertEqual((body.received, body.complete), (5, False))
        protocol.dataReceived(b"56789")
        self.assertEqual((body.received, body.complete), (10, True))
        self.assertEqual(holder.seen[0].content.read(), b"")

    def test_get_is_not_streamed(self) -> None:
        """A request without a body takes the stock path (no body object)."""
        protocol, _transport, _clock, holder = connect(_Holder())
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertIsNone(holder.seen[0].body)

    def test_no_automatic_100_continue(self) -> None:
        """``100 Continue`` waits for the upstream request, not the head."""
        protocol, transport, _clock, holder = connect(_Holder())
        protocol.dataReceived(POST_HEAD + b"Expect: 100-continue\r\n\r\n")
        self.assertEqual(transport.value(), b"")
        self.assertTrue(holder.seen[0].body.expect_continue)

    def test_answer_after_body_keeps_alive_for_pipelined_request(self) -> None:
        """Answered after its whole body, the connection serves the next (pipelined) request."""
        protocol, transport, _clock, holder = connect(_Holder())
        protocol.dataReceived(POST_HEAD + b"\r\n0123456789GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(len(holder.seen), 1)  # the GET waits for the POST's answer
        holder.seen[0].write(b"one")
        holder.seen[0].finish()
        self.assertEqual(len(holder.seen), 2)
        self.assertFalse(transport.disconnecting)
        self.assertNotIn(b"Connection: close", transport.value())

    def test_early_answer_says_close_then_closes_when_body_ends(self) -> None:
        """An answer before the body's end carries ``Connection: close``; the rest of the body
        is read and dropped, then the connection closes."""
        protocol, transport, _clock, holder = connect(_Holder())
        protocol.dataReceived(POST_HEAD + b"\r\n0123")
        holder.seen[0].setResponseCode(401)
        holder.seen[0].finish()
        self.assertIn(b"Connection: close", transport.value())
        self.assertFalse(transport.disconnecting)
        protocol.dataReceived(b"456789GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(len(holder.seen), 1)  # nothing after the body is parsed

    def test_early_answer_lingers_at_most_linger_seconds(self) -> None:
        """A client that never finishes its body is closed after ``LINGER_SECONDS``."""
        protocol, transport, clock, holder = connect(_Holder())
        protocol.dataReceived(POST_HEAD + b"\r\n0123")
        holder.seen[0].finish()
        clock.advance(LINGER_SECONDS - 0.1)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.2)
        self.assertTrue(transport.disconnecting)

    def test_chunked_body_over_limit_mid_stream_is_413(self) -> None:
        """A chunked body crossing the limit after dispatch: 413, connection closing, and the
        streamed body failed (so the upstream request aborts)."""
        protocol, transport, _clock, holder = connect(_Holder(), max_request_body=10)
        protocol.dataReceived(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n01234567\r\n"
        )
        body = holder.seen[0].body
        protocol.dataReceived(b"8\r\n89abcdef\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 413"))
        self.assertTrue(transport.disconnecting)
        self.assertIsNotNone(body.failure)
