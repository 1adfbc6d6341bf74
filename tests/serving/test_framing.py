"""Tests for :mod:`oauthproxy.serving.framing` (pure rules, with hypothesis)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.serving import framing
from oauthproxy.serving.framing import FramingError

LIMIT = 65536


def status(f: object, *args: object) -> int | None:
    """The status ``f(*args)`` refuses with, None if it accepts."""
    try:
        f(*args)  # type: ignore[operator]
    except FramingError as error:
        return error.status
    return None


class RequestLineTests(SynchronousTestCase):
    """RFC 9112 §3 request lines."""

    def test_ordinary_lines_pass(self) -> None:
        """Origin, absolute, authority and asterisk forms."""
        for line in (b"GET / HTTP/1.1", b"POST /a?b=c HTTP/1.0", b"GET http://h/x HTTP/1.1",
                     b"OPTIONS * HTTP/1.1", b"PROPPATCH /dav HTTP/1.1"):  # fmt: skip
            self.assertIsNone(status(framing.check_request_line, line, LIMIT), line)

    def test_refusals_and_their_statuses(self) -> None:
        """400 for malformed, 414 for long, 501 for absurd methods."""
        cases = {
            b"G(ET / HTTP/1.1": 400,
            b"GET  / HTTP/1.1": 400,
            b"GET / HTTP/2.0": 400,
            b"GET /\x7f HTTP/1.1": 400,
            b"GET http://u:p@h/ HTTP/1.1": 400,
            b"GET /" + b"a" * LIMIT + b" HTTP/1.1": 414,
            b"A" * 10_000 + b" / HTTP/1.1": 501,
        }
        for line, expected in cases.items():
            self.assertEqual(status(framing.check_request_line, line, LIMIT), expected, line[:40])

    @given(st.binary(min_size=1, max_size=40))
    def test_a_method_is_accepted_only_if_it_is_a_short_token(self, method: bytes) -> None:
        """Exactly tokens of at most MAX_METHOD characters pass."""
        tchar = set(
            b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
        )
        expected = all(c in tchar for c in method) and len(method) <= framing.MAX_METHOD
        self.assertEqual(status(framing.check_method, method) is None, expected)


class HostTests(SynchronousTestCase):
    """``Host`` is host[:port]."""

    def test_valid_hosts(self) -> None:
        """Names, IPv4, IPv6 literals, with or without a port."""
        for host in (b"a.test", b"a.test:8080", b"192.0.2.1", b"[2001:db8::1]", b"[::1]:443",
                     b"a_b.test."):  # fmt: skip
            self.assertIsNone(status(framing.check_host, host), host)

    def test_invalid_hosts(self) -> None:
        """Userinfo, bad ports, spaces, empty, unbalanced brackets."""
        for host in (b"u@a.test", b"a.test:", b"a.test:x", b"a.test:65536", b"a test", b"",
                     b"[::1", b"[::1]x", b"a.test:80:80", b"a.test/x"):  # fmt: skip
            self.assertEqual(status(framing.check_host, host), 400, host)


class ChunkSizeTests(SynchronousTestCase):
    """RFC 9112 §7.1 chunk sizes."""

    def test_sizes_and_extensions(self) -> None:
        """Hex digits, any case, extensions after ';'."""
        self.assertEqual(framing.chunk_size(b"1A;name=value", LIMIT), 26)
        self.assertEqual(framing.chunk_size(b"0", LIMIT), 0)

    def test_malformed_sizes(self) -> None:
        """Non-hex, signs, prefixes, spaces, more than 16 digits, past the limit."""
        for line in (b"zz", b"+5", b"-5", b"0x5", b" 5", b"5 ", b"", b"1" * 17, b"10001"):
            self.assertEqual(status(framing.chunk_size, line, LIMIT), 400, line)

    @given(st.integers(min_value=0, max_value=LIMIT))
    def test_every_size_within_the_limit_round_trips(self, size: int) -> None:
        """``%x`` of a size reads back as that size."""
        self.assertEqual(framing.chunk_size(b"%x" % size, LIMIT), size)


class LineEndingTests(SynchronousTestCase):
    """CRLF only (a bare LF is refused, not waited on)."""

    def test_crlf_passes_even_across_packets(self) -> None:
        """A CR at the end of the previous packet pairs with a leading LF."""
        self.assertIsNone(status(framing.check_line_ending, b"", b"GET / HTTP/1.1\r\n"))
        self.assertIsNone(status(framing.check_line_ending, b"\r", b"\nHost: a\r\n"))

    def test_bare_lf_is_400(self) -> None:
        """Anywhere in the head."""
        self.assertEqual(status(framing.check_line_ending, b"", b"GET / HTTP/1.1\n"), 400)
        self.assertEqual(status(framing.check_line_ending, b"x", b"\n"), 400)
