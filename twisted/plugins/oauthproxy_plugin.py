"""twistd plugin: ``twistd oauthproxy`` (see :mod:`oauthproxy.tap`)."""

from twisted.application.service import ServiceMaker

oauthproxy = ServiceMaker(  # type: ignore[no-untyped-call]
    "oauthproxy",
    "oauthproxy.tap",
    "Reverse proxy with ACME certificates and an OAuth 2.1 authorization server",
    "oauthproxy",
)
