# twisted.web is untyped; mypy strict would flag every call into it
# mypy: disable-error-code="no-untyped-call"
"""A ``Site`` whose channels are :class:`~oauthproxy.serving.channel.StrictChannel`.

:class:`StrictSite` builds every connection's channel with the configured limits: the
idle timeout between requests (``OAUTHPROXY_IDLE_TIMEOUT``), the request-head deadline
(``OAUTHPROXY_REQUEST_HEADER_TIMEOUT``) and the head limits (``OAUTHPROXY_MAX_HEADER_BYTES``,
``OAUTHPROXY_MAX_HEADER_COUNT``).  The admin API serves one as it is; the gateway's
:class:`~oauthproxy.gateway.site.GatewaySite` is one with its own channel class.
"""

from __future__ import annotations

from typing import Any, ClassVar

from twisted.web import server
from twisted.web.http import _GenericHTTPChannelProtocol
from twisted.web.resource import IResource

from oauthproxy.config import Config
from oauthproxy.serving.channel import StrictChannel


class StrictSite(server.Site):
    """A ``Site`` with the daemon's HTTP limits on every connection."""

    #: the HTTP/1.1 channel class (h2 negotiation still happens in the generic wrapper)
    channel_class: ClassVar[type[StrictChannel]] = StrictChannel
    noisy = False

    def __init__(self, resource: IResource, config: Config, reactor: Any, **kw: Any) -> None:
        super().__init__(resource, timeout=config.idle_timeout, reactor=reactor, **kw)
        self.max_header_bytes = config.max_header_bytes
        self.max_header_count = config.max_header_count
        self.header_timeout = config.request_header_timeout

    def protocol(self) -> _GenericHTTPChannelProtocol:
        """A channel with our limits, inside twisted.web's generic (h2-capable) wrapper."""
        channel = self.channel_class()
        channel.totalHeadersSize = self.max_header_bytes
        # one line may be as long as the whole head (longer: 414 or 431, not a silent drop)
        channel.MAX_LENGTH = self.max_header_bytes
        channel.maxHeaders = self.max_header_count
        channel.header_timeout = self.header_timeout
        channel.max_body = getattr(self, "max_request_body", channel.max_body)
        return _GenericHTTPChannelProtocol(channel)
