# twisted.internet is partly untyped; mypy strict would flag those calls
# mypy: disable-error-code="no-untyped-call"
"""Why Redis does not answer: one direct connection, for the daemon's start-up messages.

txredisapi retries a failed connection quietly, so "Redis did not answer" alone leaves
an operator guessing.  :func:`diagnose` connects once to the Redis (or the first
sentinel) of an address the way the daemon does, TLS included, and says what went
wrong: the connection refused or timed out, or the TLS handshake failed (an unknown
CA, a certificate for another name).  None means that it connected (the cause is
elsewhere: a password, a database, Redis still loading).
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IHandshakeListener, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from oauthproxy.storage.address import RedisAddress, client_tls


@implementer(IHandshakeListener)
class _Probe(Protocol):
    """Connected (and, under TLS, handshaken) or not: ``outcome`` fires with the error."""

    def __init__(self, tls: bool) -> None:
        self.tls = tls
        self.outcome: Deferred[str | None] = Deferred()

    def _settle(self, error: str | None) -> None:
        if not self.outcome.called:
            self.outcome.callback(error)

    def connectionMade(self) -> None:
        """TCP is up: enough without TLS (TLS waits for the handshake)."""
        if not self.tls:
            self._settle(None)

    def handshakeCompleted(self) -> None:
        """The server's certificate was accepted."""
        self._settle(None)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Closed before the handshake finished: why."""
        self._settle(_describe(reason.value) if reason.value is not None else "connection lost")


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
    outcome.addTimeout(timeout, reactor, onTimeoutCancel=lambda *_: "no TLS handshake in time")
    try:
        error = await outcome
    finally:
        if probe.transport is not None:
            probe.transport.loseConnection()
    return None if error is None else f"{where}: {error}"
