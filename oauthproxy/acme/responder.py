"""The HTTP-01 responder: answers ``/.well-known/acme-challenge/<token>`` from the shared store.

The gateway mounts :class:`ChallengeResource` at ``/.well-known/acme-challenge/`` on
every host of its plain-HTTP listener, ahead of the per-host dispatch, so that a CA
validating any name reaches it (whatever port the Host header carries).  The resource
is a leaf: it sees only the path after that prefix.  Key authorizations come from the
:class:`~oauthproxy.interfaces.IChallengeStore`, which every daemon shares, so whichever
daemon the CA reaches answers for an order that another daemon placed.
"""

from __future__ import annotations

import re

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from oauthproxy.interfaces import IChallengeStore

#: ACME tokens are base64url without padding (RFC 8555 §8.3); anything else is not ours
_TOKEN = re.compile(rb"^[A-Za-z0-9_-]{1,256}$")


class ChallengeResource(Resource):
    """A twisted.web leaf answering HTTP-01 challenges as ``text/plain``."""

    isLeaf = True
    _log = Logger()

    def __init__(self, challenges: IChallengeStore) -> None:
        """Answer from ``challenges``."""
        super().__init__()  # type: ignore[no-untyped-call]
        self._challenges = challenges

    def render_GET(self, request: Request) -> bytes | int:
        """The key authorization for the token in the path.

        404 for an unknown or malformed token, 503 when the store fails.
        """
        segments = [s for s in request.postpath or [] if s]
        if len(segments) != 1 or not _TOKEN.match(segments[0]):
            return self._plain(request, 404, b"no such challenge\n")
        token = segments[0].decode("ascii")
        finished = request.notifyFinish()
        gone: list[bool] = []
        finished.addErrback(lambda _: gone.append(True))

        def answer(key_authorization: str | None) -> None:
            if gone:
                return
            if key_authorization is None:
                body = self._plain(request, 404, b"no such challenge\n")
            else:
                body = self._plain(request, 200, key_authorization.encode("ascii"))
            request.write(body)  # type: ignore[no-untyped-call]
            request.finish()  # type: ignore[no-untyped-call]

        def unavailable(failure: Failure) -> None:
            self._log.failure("challenge store failed for token {token}", failure, token=token)
            if not gone:
                request.write(self._plain(request, 503, b"challenge store unavailable\n"))  # type: ignore[no-untyped-call]
                request.finish()  # type: ignore[no-untyped-call]

        lookup: Deferred[str | None] = self._challenges.get(token)
        lookup.addCallbacks(answer, unavailable)
        return NOT_DONE_YET

    @staticmethod
    def _plain(request: Request, code: int, body: bytes) -> bytes:
        """Set the status and plain-text headers, return ``body``."""
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")  # type: ignore[no-untyped-call]
        request.setHeader(b"content-length", str(len(body)).encode("ascii"))  # type: ignore[no-untyped-call]
        request.setHeader(b"cache-control", b"no-store")  # type: ignore[no-untyped-call]
        return body
