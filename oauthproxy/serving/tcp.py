# twisted.internet.tcp is untyped; mypy strict would flag every use of it
# mypy: disable-error-code="no-untyped-call,no-untyped-def,misc"
"""The gateway's TCP: writes at the end of the reactor's turn, accepts in small batches.

**Writes.** TCP transports here write at the end of the reactor's turn, not after an
``EPOLLOUT``.

A Twisted TCP transport never sends in ``write()``: it buffers, registers for
``EPOLLOUT`` (an ``epoll_ctl``), sends when the next ``epoll_wait`` says the socket is
writable, and unregisters once the buffer is empty (another ``epoll_ctl``).  A proxied
request writes on two sockets (the request upstream, the answer to the client), so
that is four ``epoll_ctl`` calls and two extra trips through the reactor's dispatch
per request, and the profile of a Twisted proxy puts 12-17 % of its CPU there
(``shared/bench/BASELINE.md``).  Sending straight from ``write()`` would cost a
syscall per write instead and split an answer's head and body into two packets.

Here ``startWriting`` of a connected transport only notes the transport; one
``callLater(0)`` per turn of the reactor then does for every noted transport what the
reactor would do on ``EPOLLOUT`` (``doWrite``: one send of everything written this
turn, producers resumed, a requested close carried out), and registers for
``EPOLLOUT`` only what the kernel did not take.  The writes of a turn still go out in
one send, just without the round trip through epoll.

**Accepts.** Twisted's listening port accepts up to ``numberAccepts`` connections per
readable event and raises that by 20 every time it fills it, without a bound: a burst
of 10,000 connections (``bench/idle_connections.py``) held the reactor for 114 ms in
one batch while other clients waited.  :class:`Port` accepts at most
:data:`MAX_ACCEPTS` per turn, so a burst is taken in slices between other work.

:func:`tuned_reactor` wraps a reactor so that TCP ports it listens on (also adopted
sockets, e.g. systemd's) and TCP connections it makes use these classes; the
gateway's listeners and upstream connections are made through it.
"""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from twisted.internet import tcp
from twisted.internet.abstract import FileDescriptor
from zope.interface import directlyProvides, providedBy


class _Turn:
    """The transports with data to send this turn of one reactor, and the call that sends."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.pending: list[Any] = []
        self.call: Any = None

    def note(self, transport: Any) -> None:
        """Send ``transport``'s buffer at the end of this turn."""
        self.pending.append(transport)
        if self.call is None:
            self.call = self.reactor.callLater(0, self.flush)

    def flush(self) -> None:
        """What the reactor does on ``EPOLLOUT``, for every noted transport, now."""
        self.call = None
        pending, self.pending = self.pending, []
        reactor = self.reactor
        for transport in pending:
            transport._coalesced = False
            if not transport.connected or getattr(transport, "_aborting", False):
                continue
            why = transport.doWrite()
            if why:
                reactor._disconnectSelectable(transport, why, False)
            elif len(transport.dataBuffer) - transport.offset or transport._tempDataLen:
                FileDescriptor.startWriting(transport)  # the kernel is full: wait for EPOLLOUT


_turns: WeakKeyDictionary[Any, _Turn] = WeakKeyDictionary()


class _EndOfTurnWrites:
    """``startWriting`` that sends at the end of the turn (see the module docstring)."""

    _coalesced = False

    def startWriting(self) -> None:
        """Note a connected transport for the end of the turn; anything else as usual."""
        transport: Any = self  # a tcp.Connection (this mixin comes first in its MRO)
        reactor = transport.reactor
        if not transport.connected or transport.fileno() in reactor._writes:
            FileDescriptor.startWriting(transport)  # connecting, or already waiting for EPOLLOUT
            return
        if self._coalesced:
            return
        self._coalesced = True
        turn = _turns.get(reactor)
        if turn is None:
            turn = _turns[reactor] = _Turn(reactor)
        turn.note(transport)


class Server(_EndOfTurnWrites, tcp.Server):
    """An accepted TCP connection with end-of-turn writes."""


class Client(_EndOfTurnWrites, tcp.Client):
    """An outgoing TCP connection with end-of-turn writes."""


#: connections accepted per turn of the reactor at most
MAX_ACCEPTS = 64


class Port(tcp.Port):
    """A TCP listening port whose connections are :class:`Server`, accepted in slices."""

    transport = Server

    def doRead(self) -> Any:
        """Accept what is waiting, at most :data:`MAX_ACCEPTS` this turn."""
        self.numberAccepts = min(self.numberAccepts, MAX_ACCEPTS)
        return super().doRead()


class Connector(tcp.Connector):
    """A TCP connector whose connection is a :class:`Client`."""

    def _makeTransport(self) -> Client:
        """The connection, with end-of-turn writes."""
        return Client(self.host, self.port, self.bindAddress, self, self.reactor)


class _CoalescingReactor:
    """The reactor, except that TCP listens, adoptions and connections use the classes here."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        """``IReactorTCP.listenTCP`` with :class:`Port`."""
        listening = Port(port, factory, backlog, interface, self._reactor)
        listening.startListening()
        return listening

    def adoptStreamPort(self, fileDescriptor: int, addressFamily: Any, factory: Any) -> Any:
        """``IReactorSocket.adoptStreamPort`` with :class:`Port` for TCP sockets."""
        import socket

        if addressFamily not in (socket.AF_INET, socket.AF_INET6):
            return self._reactor.adoptStreamPort(fileDescriptor, addressFamily, factory)
        listening = Port._fromListeningDescriptor(
            self._reactor, fileDescriptor, addressFamily, factory
        )
        listening.startListening()
        return listening

    def connectTCP(
        self,
        host: str,
        port: int,
        factory: Any,
        timeout: float = 30.0,
        bindAddress: Any = None,
    ) -> Any:
        """``IReactorTCP.connectTCP`` with :class:`Connector`."""
        connector = Connector(host, port, factory, timeout, bindAddress, self._reactor)
        connector.connect()
        return connector


def tuned_reactor(reactor: Any) -> Any:
    """``reactor`` for endpoints whose TCP should be this module's (see the module docstring).

    Only a reactor with epoll-style writer registration (``_writes``) gets wrapped; any
    other (a test's ``MemoryReactor``, ``Clock``) is returned as it is.
    """
    if not hasattr(reactor, "_writes") or not hasattr(reactor, "_disconnectSelectable"):
        return reactor
    if isinstance(reactor, _CoalescingReactor):
        return reactor
    wrapped = _CoalescingReactor(reactor)
    directlyProvides(wrapped, *providedBy(reactor))
    return wrapped
