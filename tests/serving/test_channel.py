"""The HTTP/1.1 channel's parsing of whole heads, against its line-by-line parsing.

:class:`~oauthproxy.serving.channel.StrictChannel` parses a request head that arrives
whole in one read in one go, and leaves everything else to twisted.web's line parser.
Both must reach the same outcome for every head (ATK-14/15): the hypothesis test here
sends each generated head (and what follows it) once in one piece and once byte by byte,
which only the line parser can take, and compares the answers and requests.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Request

from oauthproxy.config import Config
from oauthproxy.serving.site import StrictSite

_DATE = re.compile(rb"\r\nDate: [^\r]*")
#: a refusal (always the last answer): its status stays, its text may name another flaw
_REFUSAL = re.compile(rb"(HTTP/1.1 4\d\d [^\r]*)\r\n.*", re.DOTALL)


class Echo(Resource):
    """Answers every request at once with what it saw; keeps a list of them."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[Any, ...]] = []

    def render(self, request: Request) -> bytes:
        """Record the request, answer with its parts (two ``Set-Cookie`` values too)."""
        assert request.content is not None
        headers = sorted(request.requestHeaders.getAllRawHeaders())
        seen = (request.method, request.uri, request.clientproto, headers,
                request.content.read())  # fmt: skip
        self.seen.append(seen)
        request.responseHeaders.setRawHeaders(b"set-cookie", [b"a=1", b"b=2"])
        return repr(seen).encode()


def serve(chunks: list[bytes]) -> tuple[bytes, bool, list[tuple[Any, ...]]]:
    """Feed ``chunks`` to a fresh channel: its answer, whether it closes, the requests.

    The answer has no Date, and of a refusal only its status line: a head with two flaws
    is refused for the one the parser meets first, which depends on where reads end.
    """
    resource = Echo()
    config = Config(redis_url="redis://127.0.0.1", max_header_count=8)
    site = StrictSite(resource, config, MemoryReactorClock())
    protocol = site.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    for chunk in chunks:
        if transport.disconnecting:
            break
        protocol.dataReceived(chunk)
    protocol.connectionLost(None)
    answer = _REFUSAL.sub(rb"\1", _DATE.sub(b"", transport.value()))
    return answer, transport.disconnecting, resource.seen


_METHODS = [b"GET", b"POST", b"HEAD", b"G(T", b"", b"OPTIONS", b"A" * 40]
_TARGETS = [b"/", b"/a?b=c", b"http://h/x", b"http://u@h/", b"", b"/\x7f", b"*", b"/ x"]
_VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"http/1.1"]
_NAMES = [b"Host", b"host", b"X-A", b"Content-Length", b"Transfer-Encoding", b"Connection",
          b"Expect", b"Bad Name", b"", b"Cookie", b"x\x00"]  # fmt: skip
_VALUES = [b"raw.test", b"a.test:80", b"u@h", b"", b"0", b"5", b"chunked", b"close", b"x\x00y",
           b" spaced ", b"100-continue", b"a=b", b"x\ry", b"1, 2", b"-1"]  # fmt: skip
_AFTER = [b"", b"hello", b"GET /2 HTTP/1.1\r\nHost: raw.test\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n",
          b"GET /3 HTTP/1.1\nHost: raw.test\n\n", b"\r\n"]  # fmt: skip

header_lines = st.one_of(
    st.builds(lambda n, v: n + b": " + v, st.sampled_from(_NAMES), st.sampled_from(_VALUES)),
    st.sampled_from([b" folded", b"\tfolded", b"nocolon", b"Host:raw.test"]),
)
line_ends = st.sampled_from([b"\r\n"] * 8 + [b"\n", b"\r"])


@st.composite
def requests(draw: Any) -> bytes:
    """A request head (mostly well-formed, with every kind of flaw) and what follows it."""
    line = b" ".join([draw(st.sampled_from(_METHODS)), draw(st.sampled_from(_TARGETS)),
                      draw(st.sampled_from(_VERSIONS))])  # fmt: skip
    if draw(st.booleans()):
        lines = [line, b"Host: raw.test", *draw(st.lists(header_lines, max_size=10))]
    else:
        lines = [line, *draw(st.lists(header_lines, max_size=10))]
    head = b"".join(part + draw(line_ends) for part in lines) + draw(line_ends)
    return head + draw(st.sampled_from(_AFTER))


class WholeHeadTests(SynchronousTestCase):
    """A head in one read and the same head in pieces are one and the same request."""

    @settings(max_examples=400, deadline=None)
    @given(requests(), st.lists(st.integers(min_value=1, max_value=300), max_size=3))
    def test_whole_head_and_byte_by_byte_agree(self, data: bytes, cuts: list[int]) -> None:
        """Same answer, same close, same requests (method, target, headers, body), whether
        the bytes come in one read, cut anywhere, or one at a time."""
        bytewise = serve([data[i : i + 1] for i in range(len(data))])
        self.assertEqual(serve([data]), bytewise)
        ends = sorted({0, len(data), *(cut for cut in cuts if cut < len(data))})
        self.assertEqual(serve([data[a:b] for a, b in pairwise(ends)]), bytewise)

    def test_pipelined_requests_in_one_read_are_all_answered_in_order(self) -> None:
        """A thousand pipelined requests in one read: a thousand answers, no recursion."""
        data = b"".join(b"GET /%d HTTP/1.1\r\nHost: raw.test\r\n\r\n" % i for i in range(1000))
        answer, closing, seen = serve([data])
        self.assertEqual([request[1] for request in seen], [b"/%d" % i for i in range(1000)])
        self.assertEqual(answer.count(b"HTTP/1.1 200 OK\r\n"), 1000)
        self.assertFalse(closing)

    def test_bare_lf_in_a_pipelined_head_after_a_synchronous_answer_is_refused(self) -> None:
        """The rest of a read after an answered head is checked as a head too (ATK-14)."""
        second = b"GET /2 HTTP/1.1\nHost: raw.test\n\n"
        data = b"GET /1 HTTP/1.1\r\nHost: raw.test\r\n\r\n" + second
        for chunks in ([data], [data[:1], data[1:]]):
            answer, closing, seen = serve(chunks)
            self.assertEqual([request[1] for request in seen], [b"/1"])
            self.assertTrue(answer.endswith(b"HTTP/1.1 400 Bad Request"), answer)
            self.assertTrue(closing)

    def test_response_head_has_one_line_per_header_value(self) -> None:
        """Multiple values of one header are written as one line each, in order."""
        answer, _, _ = serve([b"GET / HTTP/1.1\r\nHost: raw.test\r\n\r\n"])
        head = answer.split(b"\r\n\r\n", 1)[0]
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"), head)
        self.assertIn(b"\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2", head)
