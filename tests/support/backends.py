"""Real upstream servers for gateway tests, served in-process on the real reactor.

:func:`start_backend` listens on a free loopback port and serves :class:`BackendResource`:

- ``/sse``: one event at once, then waits for :attr:`BackendState.sse_release` before ending
  (``sse_cut`` counts streams whose connection was dropped first);
- ``/slow``: never answers until the client goes away (records the cancellation);
- ``/large?size=N``: N bytes streamed by a push producer that honours back-pressure
  (:attr:`BackendState.produced` counts what was handed to the transport);
- ``/delay?ms=N``: the echo, N milliseconds later;
- ``/gzip``: :data:`GZIPPED` with ``Content-Encoding: gzip``;
- ``/status/<code>``: an empty answer with that status;
- anything else: an echo, a JSON object with the method, target, headers (in order, repeats
  kept), body length and SHA-256 as the backend received them.

The backend notes when the first request-body bytes arrive (:attr:`BackendState.body_started`),
so tests can tell a streamed upload from a spooled one.  :func:`start_raw_upstream` is a bare
TCP upstream for wire-level cases (an upstream that stops reading, answers before the body
ends, or watches its connection drop).

:class:`SnapshotFeed` is a tiny :class:`~oauthproxy.interfaces.ISnapshotSource` stand-in for
tests that do not need Redis.
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import ipaddress
import json
from collections.abc import Callable
from typing import Any

from attrs import define, field
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ServerEndpoint, wrapServerTLS
from twisted.internet.interfaces import IListeningPort, IPushProducer
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.ssl import PrivateCertificate
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web import server
from twisted.web.resource import Resource
from zope.interface import implementer

from oauthproxy.interfaces import ISnapshotSource, SnapshotListener
from oauthproxy.model import Event, Snapshot

_CHUNK = b"x" * 65536
#: a fixed gzip body: the gateway must pass it on byte for byte
GZIPPED = gzip.compress(b"hello, compressed world\n" * 100, mtime=0)


@define
class BackendState:
    """What the backend saw; tests read it and poke ``sse_release``."""

    requests: list[dict[str, Any]] = field(factory=list)
    produced: int = 0
    slow_started: int = 0
    sse_cut: int = 0
    slow_cancelled: int = 0
    #: ``reactor.seconds()`` when the first request-body bytes arrived (any request)
    body_started: float | None = None
    sse_release: defer.Deferred[None] = field(factory=defer.Deferred)


@implementer(IPushProducer)
class _Streamer:
    """Writes ``size`` bytes to a request, pausing whenever the transport asks it to."""

    def __init__(self, request: server.Request, size: int, state: BackendState) -> None:
        self.request = request
        self.left = size
        self.state = state
        self.paused = False
        self.stopped = False

    def start(self) -> None:
        """Register and start writing."""
        self.request.registerProducer(self, True)
        self.request.notifyFinish().addErrback(lambda _: self.stopProducing())
        self.resumeProducing()

    def resumeProducing(self) -> None:
        """Write until paused or done."""
        self.paused = False
        while not self.paused and not self.stopped and self.left > 0:
            chunk = _CHUNK[: min(self.left, len(_CHUNK))]
            self.left -= len(chunk)
            self.state.produced += len(chunk)
            self.request.write(chunk)
        if self.left == 0 and not self.stopped:
            self.stopped = True
            self.request.unregisterProducer()
            self.request.finish()

    def pauseProducing(self) -> None:
        """The transport's buffer is full."""
        self.paused = True

    def stopProducing(self) -> None:
        """The client went away."""
        self.stopped = True


class BackendResource(Resource):
    """The backend's single leaf resource (see the module docstring)."""

    isLeaf = True

    def __init__(self, state: BackendState, reactor: Any) -> None:
        super().__init__()
        self.state = state
        self.reactor = reactor

    def render(self, request: server.Request) -> Any:
        """Dispatch on the path."""
        path = request.path
        if path == b"/sse":
            request.setHeader(b"content-type", b"text/event-stream")
            request.write(b"data: first\n\n")

            def finish(_: object) -> None:
                if not request._disconnected:
                    request.finish()

            def cut(_: object) -> None:
                self.state.sse_cut += 1

            self.state.sse_release.addCallback(finish)
            request.notifyFinish().addErrback(cut)
            return server.NOT_DONE_YET
        if path == b"/quiet-sse":
            # the head goes out at once; the first event only when the test releases it
            request.setHeader(b"content-type", b"text/event-stream")
            request.write(b"")

            def late(_: object) -> None:
                if not request._disconnected:
                    request.write(b"data: late\n\n")
                    request.finish()

            self.state.sse_release.addCallback(late)
            return server.NOT_DONE_YET
        if path == b"/slow":
            self.state.slow_started += 1

            def gone(_: object) -> None:
                self.state.slow_cancelled += 1

            request.notifyFinish().addErrback(gone)
            return server.NOT_DONE_YET
        if path == b"/large":
            size = int(request.args.get(b"size", [b"0"])[0])
            request.setHeader(b"content-length", b"%d" % size)
            request.setHeader(b"content-type", b"application/octet-stream")
            _Streamer(request, size, self.state).start()
            return server.NOT_DONE_YET
        if path == b"/delay":
            ms = int(request.args.get(b"ms", [b"0"])[0])
            reactor = self.reactor

            def answer() -> None:
                if not request._disconnected:
                    request.write(self._echo(request))
                    request.finish()

            reactor.callLater(ms / 1000, answer)
            return server.NOT_DONE_YET
        if path == b"/gzip":
            request.setHeader(b"content-encoding", b"gzip")
            request.setHeader(b"content-type", b"text/plain")
            return GZIPPED
        if path.startswith(b"/status/"):
            request.setResponseCode(int(path.rsplit(b"/", 1)[1]))
            return b""
        return self._echo(request)

    def _echo(self, request: server.Request) -> bytes:
        """Describe the request as received."""
        digest = hashlib.sha256()
        length = 0
        assert request.content is not None
        request.content.seek(0)
        while chunk := request.content.read(1 << 20):
            digest.update(chunk)
            length += len(chunk)
        seen = {
            "method": request.method.decode(),
            "uri": request.uri.decode("latin-1"),
            "headers": [
                [name.decode("latin-1"), value.decode("latin-1")]
                for name, values in request.requestHeaders.getAllRawHeaders()
                for value in values
            ],
            "body_length": length,
            "body_sha256": digest.hexdigest(),
        }
        self.state.requests.append(seen)
        request.setHeader(b"content-type", b"application/json")
        request.responseHeaders.addRawHeader(b"set-cookie", b"a=1")
        request.responseHeaders.addRawHeader(b"set-cookie", b"b=2")
        request.setHeader(b"x-backend", b"echo")
        return json.dumps(seen).encode()


class _RecordingRequest(server.Request):
    """A backend request that notes when the first body bytes arrive."""

    def handleContentChunk(self, data: bytes) -> None:
        """Record the first body chunk's time, then spool as usual."""
        state: BackendState = self.channel.site.state
        if state.body_started is None:
            state.body_started = self.channel.site.reactor.seconds()
        super().handleContentChunk(data)


@define
class Backend:
    """A running backend: its URL and what it saw."""

    port: IListeningPort
    state: BackendState
    scheme: str = "http"

    @property
    def url(self) -> str:
        """``http(s)://127.0.0.1:<port>``."""
        return f"{self.scheme}://127.0.0.1:{self.port.getHost().port}"


def self_signed_pem() -> tuple[str, str]:
    """A throwaway (certificate PEM, key PEM) for ``127.0.0.1``, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    # OpenSSL checks validity against the wall clock, so the fixture must use it too
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


async def start_backend(
    test: TestCase, reactor: Any, tls_pem: tuple[str, str] | None = None
) -> Backend:
    """Listen on a free loopback port (HTTPS with ``tls_pem``); stopped by a cleanup of ``test``."""
    state = BackendState()
    site = server.Site(BackendResource(state, reactor), reactor=reactor)
    site.requestFactory = _RecordingRequest
    site.state = state  # type: ignore[attr-defined]
    site.log = lambda request: None  # type: ignore[method-assign]
    endpoint: Any = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    if tls_pem is not None:
        options = PrivateCertificate.loadPEM(tls_pem[1] + tls_pem[0]).options()
        endpoint = wrapServerTLS(options, endpoint)
    port = await endpoint.listen(site)
    test.addCleanup(port.stopListening)

    def release_sse() -> None:
        if not state.sse_release.called:
            state.sse_release.callback(None)

    test.addCleanup(release_sse)
    return Backend(port, state, "https" if tls_pem is not None else "http")


@implementer(ISnapshotSource)
@define
class SnapshotFeed:
    """An in-memory snapshot source: ``publish`` a new Snapshot, listeners see it at once."""

    current: Snapshot = field(factory=Snapshot)
    connected: bool = True
    _listeners: list[SnapshotListener] = field(factory=list)

    def subscribe(self, listener: SnapshotListener) -> Callable[[], None]:
        """Call ``listener`` now and after every publish."""
        self._listeners.append(listener)
        listener(self.current, None)
        return lambda: self._listeners.remove(listener)

    def publish(self, snapshot: Snapshot, event: Event | None = None) -> None:
        """Replace the snapshot and notify every listener."""
        self.current = snapshot
        for listener in list(self._listeners):
            listener(snapshot, event)


@define
class RawUpstream:
    """A bare TCP upstream: what it received, and how it behaves once a request head is in.

    ``answer`` is written as soon as a head is complete (an early answer, before the body);
    ``stall`` stops reading after the head (a slow upstream) until :meth:`resume`.
    """

    port: IListeningPort | None = None
    answer: bytes | None = None
    stall: bool = False
    #: every byte received, head included (across connections)
    received: int = 0
    data: bytearray = field(factory=bytearray)
    connections: list[Any] = field(factory=list)
    lost: int = 0

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        assert self.port is not None
        return f"http://127.0.0.1:{self.port.getHost().port}"

    def head_seen(self) -> bool:
        """Whether a complete request head arrived."""
        return b"\r\n\r\n" in self.data

    def resume(self) -> None:
        """Read again (after ``stall``)."""
        self.stall = False
        for transport in self.connections:
            transport.resumeProducing()


class _RawUpstreamProtocol(Protocol):
    """One connection to a :class:`RawUpstream`."""

    def __init__(self, upstream: RawUpstream) -> None:
        self.upstream = upstream
        self.answered = False

    def connectionMade(self) -> None:
        """Track the connection."""
        self.upstream.connections.append(self.transport)

    def dataReceived(self, data: bytes) -> None:
        """Count (keep the first 64 KiB), then act once the head is complete."""
        upstream = self.upstream
        upstream.received += len(data)
        if len(upstream.data) < 65536:
            upstream.data += data[: 65536 - len(upstream.data)]
        if self.answered or not upstream.head_seen():
            return
        self.answered = True
        transport: Any = self.transport
        if upstream.answer is not None:
            transport.write(upstream.answer)
        if upstream.stall:
            transport.pauseProducing()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Note the drop."""
        self.upstream.lost += 1


async def start_raw_upstream(test: TestCase, reactor: Any, upstream: RawUpstream) -> RawUpstream:
    """Listen on a free loopback port with ``upstream``; stopped by a cleanup of ``test``."""
    factory = Factory.forProtocol(lambda: _RawUpstreamProtocol(upstream))
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    upstream.port = port

    def close() -> None:
        for transport in upstream.connections:
            transport.abortConnection()

    test.addCleanup(port.stopListening)
    test.addCleanup(close)
    return upstream
