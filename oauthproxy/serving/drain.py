"""Graceful close of one HTTP connection, whatever it speaks (the daemon's drain).

On SIGTERM the daemon stops listening, then calls :func:`drain` on every open
connection until none is left or ``OAUTHPROXY_DRAIN_TIMEOUT`` has passed (then it
aborts the rest).  What a connection is, is found below twisted.web's generic
wrapper (``_GenericHTTPChannelProtocol._channel``), which is all the listener sees:

- an HTTP/1.1 :class:`~oauthproxy.serving.channel.StrictChannel`: idle, it closes now;
  busy (a request in flight, a stream, a WebSocket tunnel, a head arriving), its answer
  says ``Connection: close`` and the connection closes after it;
- an HTTP/2 ``H2Connection``: once it has no open stream, it sends GOAWAY (no error)
  and closes; streams in flight finish first;
- any other protocol with a ``drain()`` method of its own (a guarded port's TCP relay:
  it has no request to stop after, so it runs until a side closes it or the timeout
  aborts it, as nginx's and HAProxy's stream proxies do);
- anything else is closed (after what was written is sent).
"""

from __future__ import annotations

from typing import Any

from twisted.web import http

from oauthproxy.serving.channel import StrictChannel

#: set on an H2Connection once its GOAWAY went out
_GOAWAY_SENT = "_oauthproxy_goaway_sent"


def channel_of(protocol: object) -> object:
    """The HTTP channel of a listener's protocol (below twisted.web's generic wrapper)."""
    return getattr(protocol, "_channel", protocol)


def drain(protocol: object) -> bool:
    """Ask the connection to close once idle; whether it is closing already."""
    channel: Any = channel_of(protocol)
    if isinstance(channel, StrictChannel):
        return channel.drain()
    if http.H2_ENABLED:
        from twisted.web._http2 import H2Connection

        if isinstance(channel, H2Connection):
            return _drain_h2(channel)
    own = getattr(channel, "drain", None)
    if callable(own):
        return bool(own())
    transport = getattr(channel, "transport", None)
    if transport is not None:
        transport.loseConnection()
    return True


def _drain_h2(connection: Any) -> bool:
    """GOAWAY and close once no stream is open (each stream finishes first)."""
    if connection.streams:
        return False
    if not getattr(connection, _GOAWAY_SENT, False):
        setattr(connection, _GOAWAY_SENT, True)
        transport = connection.transport
        if transport is not None:
            connection.conn.close_connection(error_code=0)  # NO_ERROR
            transport.write(connection.conn.data_to_send())
            transport.loseConnection()
    return True
