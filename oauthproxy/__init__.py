"""oauthproxy: authenticated, automatically encrypted access to backend services.

One ``twistd oauthproxy`` process runs the gateway (HTTP/HTTPS with SNI, PROXY
protocol, WebSocket and SSE), the OAuth 2.1 authorization server, the ACME
issuing service and the Klein admin API, all configured live from Redis.
``oauthproxy.tap.makeService`` is the only place where the parts are wired.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
