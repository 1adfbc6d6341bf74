# twisted.web and its client are untyped; mypy strict would flag every call into them
# mypy: disable-error-code="no-untyped-call"
"""The gateway's root resource: host dispatch through the live routing table.

Every request is a leaf here: :class:`GatewayResource` asks the current
:class:`~oauthproxy.gateway.routing.RoutingTable` for one outcome and acts on it — forward
(or tunnel a WebSocket), redirect to HTTPS, the ACME challenge responder, or a short error
(400, 404, 405 for CONNECT, 421, 502).  Error bodies are JSON when the client accepts JSON,
plain text otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.web import server
from twisted.web.resource import IResource, Resource, getChildForRequest
from twisted.web.server import Request

from oauthproxy.gateway import sni
from oauthproxy.gateway.forward import Forwarder
from oauthproxy.gateway.routing import (
    BadRequest,
    Forward,
    Misdirected,
    NotFound,
    RedirectToHttps,
    Reserved,
    Unavailable,
)
from oauthproxy.gateway.table import LiveTable
from oauthproxy.requestlog import noise
from oauthproxy.requestlog.record import notes_for

_ACME_PREPATH = [b".well-known", b"acme-challenge"]
#: statuses of the gateway's own answers that are anonymous noise, and the reason
_NOISE = {
    400: noise.BAD_REQUEST,
    401: noise.UNAUTHENTICATED,
    404: noise.UNKNOWN_HOST,
    405: noise.BAD_REQUEST,
    421: noise.MISDIRECTED,
}


def error_body(request: Request, code: int, error: str, detail: str) -> bytes:
    """Set status and content type for an error and return its body (JSON if accepted)."""
    request.setResponseCode(code)
    accept = request.getHeader(b"accept") or b""
    if b"json" in accept:
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"error": error, "detail": detail}).encode() + b"\n"
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return f"{error}: {detail}\n".encode()


class GatewayResource(Resource):
    """Routes every request by Host and path; see the module docstring."""

    isLeaf = True
    #: asked before a decision is acted on (:class:`~oauthproxy.gateway.guard.Guard`,
    #: set by the composition root); None = no authentication in the gateway
    guard: Any = None

    def __init__(
        self,
        table: LiveTable,
        forwarder: Forwarder,
        acme: IResource | None = None,
        server_name_of: Callable[[Request], str | None] | None = None,
    ) -> None:
        super().__init__()
        self._table = table
        self._forwarder = forwarder
        self._acme = acme
        self._server_name_of = server_name_of or sni.server_name_of

    def render(self, request: Request) -> Any:
        """Decide and act; forwarding returns NOT_DONE_YET.

        Answers to anonymous requests that reach no backend (unknown host, misdirected,
        malformed, refused credentials) are marked as noise for the request log, which
        keeps only a few of them as records (:mod:`oauthproxy.requestlog.noise`).
        """
        body = self._render(request)
        if body is not server.NOT_DONE_YET:
            reason = _NOISE.get(request.code)
            if reason is not None:
                notes_for(request).noise = reason
        return body

    def _render(self, request: Request) -> Any:
        """Decide and act (see :meth:`render`)."""
        method = request.method
        if method == b"CONNECT":
            # ATK-16: a reverse proxy is not a tunnel endpoint
            request.setHeader(b"allow", b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
            return error_body(request, 405, "method_not_allowed", "CONNECT is not supported")
        secure = request.isSecure()
        scheme = "https" if secure else "http"
        sni = self._server_name_of(request) if secure else None
        hosts = request.requestHeaders.getRawHeaders(b"host")
        if hosts is not None and len(hosts) > 1:
            # RFC 9112 §3.2: more than one Host is a 400, never a choice between them
            return error_body(request, 400, "bad_request", "more than one Host header")
        host = hosts[0] if hosts else None
        decision = self._table.current.decide(
            host,
            request.uri,
            method.decode("ascii", "replace"),
            scheme,
            sni,
        )
        guard = self.guard
        if guard is not None:
            decision, answer = guard.check(request, decision, scheme, host)
            if decision is None:
                return answer
        if isinstance(decision, Forward):
            self._forwarder.forward(request, decision, scheme, host)
            return server.NOT_DONE_YET
        if isinstance(decision, RedirectToHttps):
            request.setResponseCode(decision.status)
            request.setHeader(b"location", decision.location)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"redirecting to " + decision.location + b"\n"
        if isinstance(decision, Reserved):
            return self._render_acme(request, decision.token)
        if isinstance(decision, Misdirected):
            return error_body(request, 421, "misdirected_request", decision.reason)
        if isinstance(decision, BadRequest):
            return error_body(request, 400, "bad_request", decision.reason)
        if isinstance(decision, Unavailable):
            return error_body(request, 502, "bad_gateway", decision.reason)
        assert isinstance(decision, NotFound)
        return error_body(request, 404, "not_found", decision.reason)

    def _render_acme(self, request: Request, token: str) -> Any:
        """Hand the challenge to the ACME responder with ``postpath == [token]``."""
        if self._acme is None:
            return error_body(request, 404, "not_found", "no ACME challenge responder")
        request.prepath = list(_ACME_PREPATH)
        request.postpath = [token.encode("ascii")]
        return getChildForRequest(self._acme, request).render(request)
