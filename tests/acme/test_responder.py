"""Tests for :class:`oauthproxy.acme.responder.ChallengeResource` (no sockets)."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from oauthproxy.acme.responder import ChallengeResource
from oauthproxy.testing import MemoryStorage


class ChallengeResourceTests(SynchronousTestCase):
    """Answers to HTTP-01 requests, from the shared challenge store."""

    def setUp(self) -> None:
        """A store holding one answer and the resource over it."""
        self.clock = Clock()
        self.storage = MemoryStorage(self.clock)
        self.successResultOf(self.storage.challenges.put("tok-EN_1", "tok-EN_1.thumb", 60.0))
        self.resource = ChallengeResource(self.storage.challenges)

    def get(self, *segments: bytes) -> DummyRequest:
        """Render a GET for the path after ``/.well-known/acme-challenge/``."""
        request = DummyRequest(list(segments))
        self.assertEqual(self.resource.render(request), NOT_DONE_YET)
        return request

    def body(self, request: DummyRequest) -> bytes:
        """What was written."""
        return b"".join(request.written)

    def test_known_token_is_answered_as_plain_text(self) -> None:
        """The key authorization comes back with 200 and text/plain."""
        request = self.get(b"tok-EN_1")
        self.assertEqual(request.responseCode, 200)
        self.assertEqual(self.body(request), b"tok-EN_1.thumb")
        self.assertEqual(
            request.responseHeaders.getRawHeaders(b"content-type"), [b"text/plain; charset=utf-8"]
        )
        self.assertEqual(request.finished, 1)

    def test_unknown_token_is_404(self) -> None:
        """A token nobody published gets 404."""
        request = self.get(b"unknown")
        self.assertEqual(request.responseCode, 404)
        self.assertEqual(request.finished, 1)

    def test_expired_token_is_404(self) -> None:
        """An answer past its TTL is no longer served."""
        self.clock.advance(61)
        self.assertEqual(self.get(b"tok-EN_1").responseCode, 404)

    def test_malformed_paths_are_404(self) -> None:
        """Extra segments, an empty path and non-base64url characters are not tokens."""
        for segments in ([b"tok-EN_1", b"x"], [], [b"tok.EN"], [b"%2e%2e"]):
            request = DummyRequest(segments)
            self.assertEqual(self.resource.render(request), b"no such challenge\n")
            self.assertEqual(request.responseCode, 404)

    def test_store_failure_is_503(self) -> None:
        """When the store cannot answer, the CA gets 503 (and may retry), not a wrong 404."""
        self.storage.set_available(False)
        request = self.get(b"tok-EN_1")
        self.assertEqual(request.responseCode, 503)
        self.assertEqual(request.finished, 1)
        self.assertEqual(len(self.flushLoggedErrors()), 1)

    def test_head_gets_the_status_without_body(self) -> None:
        """HEAD is answered like GET (twisted.web drops the body)."""
        request = DummyRequest([b"tok-EN_1"])
        request.method = b"HEAD"
        self.assertEqual(self.resource.render(request), NOT_DONE_YET)
        self.assertEqual(request.responseCode, 200)
