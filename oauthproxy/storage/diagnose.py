# twisted.internet is partly untyped; mypy strict would flag those calls
# mypy: disable-error-code="no-untyped-call"
"""Why Redis does not answer: one direct connection, for the daemon's start-up messages.

txredisapi retries a failed connection quietly, so "Redis did not answer" alone leaves
an operator guessing.  :func:`diagnose` connects once to the Redis (or the first
sentinel) of an address the way the daemon does, TLS included, sends ``PING`` and says
what went wrong: the connection refused or timed out, the TLS handshake failed (an
unknown CA, a certificate for another name), the server hung up after it (a client
certificate it wants), or it answered with an error (still loading its data).  None
means that it answered (the cause is elsewhere: a password, a database).
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, wrapClientTLS
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHandshakeListener, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from oauthproxy.storage.address import RedisAddress, client_tls


@implementer(IHandshakeListener)
class _Probe(Protocol):
    """Sends ``PING``; ``outcome`` fires with what went wrong, or None once it is answered.

    Without a password an answer is ``+PONG``; with one, ``-NOAUTH`` (the probe does not
    authenticate): either way Redis is reachable.
    """

    def __init__(self, tls: bool) -> None:
        self.tls = tls
        self.handshaken = False
        self.outcome: Deferred[str | None] = Deferred()

    def _settle(self, error: str | None) -> None:
        if not self.outcome.called:
            self.outcome.callback(error)

    def connectionMade(self) -> None:
        """Ask (under TLS the handshake comes first: the transport holds the bytes)."""
        assert self.transport is not None
        self.transport.write(b"PING\r\n")

    def handshakeCompleted(self) -> None:
        """The server's certificate was accepted."""
        self.handshaken = True

    def dataReceived(self, data: bytes) -> None:
        """An answer: Redis is there, unless it answered with an error other than NOAUTH."""
        line = data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
        if line.startswith("-") and not line.startswith("-NOAUTH"):
            self._settle(f"it answered PING with {line[1:]!r}")
        else:
            self._settle(None)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Closed before an answer: why."""
        if self.tls and self.handshaken:
            self._settle(
                "it closed the connection after the TLS handshake (does it ask for a client "
                "certificate? OAUTHPROXY_REDIS_CLIENT_CERT and OAUTHPROXY_REDIS_CLIENT_KEY)"
            )
        elif reason.value is not None and not reason.check(ConnectionDone):
            self._settle(_describe(reason.value))
        else:
            self._settle("it closed the connection without answering PING")


def _describe(error: BaseException) -> str:
    """A one-line reason for a failed connection or handshake."""
    if isinstance(error, SSL.Error):
        reasons = [r[2] for r in error.args[0] if isinstance(r, tuple) and len(r) == 3]
        detail = "; ".join(reasons) or str(error)
        hint = ""
        if "certificate verify failed" in detail:
            hint = " (is OAUTHPROXY_REDIS_CA_BUNDLE the CA that signed Redis' certificate?)"
        return f"the TLS handshake failed: {detail}{hint}"
    text = str(error).strip() or type(error).__name__
    if "hostname" in text.lower() or "VerificationError" in type(error).__name__:
        return f"the TLS certificate does not name the host: {text}"
    return text


def _endpoint(address: RedisAddress, reactor: Any, timeout: float) -> tuple[Any, str, bool]:
    """The endpoint the daemon would connect to first, what to call it, whether TLS."""
    if address.unix_path is not None:
        return UNIXClientEndpoint(reactor, address.unix_path, timeout), address.unix_path, False
    if address.sentinels:
        host, port = address.sentinels[0]
        where = f"the sentinel {host}:{port}"
    else:
        assert address.host is not None
        host, port, where = address.host, address.port, f"{address.host}:{address.port}"
    endpoint: IStreamClientEndpoint = HostnameEndpoint(reactor, host, port, timeout)
    tls = client_tls(address, host)
    if tls is not None:
        endpoint = wrapClientTLS(tls, endpoint)
    return endpoint, where, tls is not None


async def diagnose(address: RedisAddress, reactor: Any, timeout: float) -> str | None:
    """What stops a connection to ``address``, in one line; None if it connects."""
    endpoint, where, tls = _endpoint(address, reactor, timeout)
    probe = _Probe(tls)
    factory = Factory.forProtocol(lambda: probe)
    factory.noisy = False
    try:
        await endpoint.connect(factory)
    except CancelledError:
        raise  # nobody wants the answer any more
    except Exception as e:
        return f"cannot connect to {where}: {_describe(e)}"
    outcome = probe.outcome
    outcome.addTimeout(timeout, reactor, onTimeoutCancel=lambda *_: "no answer to PING in time")
    try:
        error = await outcome
    finally:
        if probe.transport is not None:
            probe.transport.loseConnection()
    return None if error is None else f"{where}: {error}"
