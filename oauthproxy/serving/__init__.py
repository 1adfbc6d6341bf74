"""What every HTTP listener of the daemon shares: strict framing, a head deadline, drain.

The gateway's and the admin API's listeners both speak HTTP through twisted.web; this
package holds what they must agree on and what stock twisted.web lacks:

- :mod:`~oauthproxy.serving.channel`: :class:`~.channel.StrictChannel`, the HTTP/1.1
  channel with a request-head deadline (ATK-18), the limits answered with the right
  status, and a ``draining`` mode for graceful shutdown;
- :mod:`~oauthproxy.serving.drain`: how the daemon closes a connection of any kind
  (HTTP/1.1, HTTP/2, a WebSocket tunnel) without cutting what is in flight.
"""
