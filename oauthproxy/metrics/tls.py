"""TLS handshake metrics, from OpenSSL's info callback on each gateway connection.

:meth:`TLSMetrics.watch` is the certificate map's per-connection hook
(:attr:`~oauthproxy.gateway.sni.CertificateMap.on_connection`): it sets an info
callback on the new ``SSL.Connection`` (per connection, so it survives the SNI
callback's switch to the name's Context).  A finished handshake counts in
``oauthproxy_tls_handshakes_total``; a fatal alert, sent or received, in
``oauthproxy_tls_handshake_failures_total`` by the alert's name (a bounded set).
"""

from __future__ import annotations

from attrs import define, field
from OpenSSL import SSL
from prometheus_client import CollectorRegistry, Counter

#: TLS alert codes (RFC 8446 6) -> label; others are "other"
ALERTS = {
    10: "unexpected_message",
    20: "bad_record_mac",
    40: "handshake_failure",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    109: "missing_extension",
    112: "unrecognized_name",
    120: "no_application_protocol",
}
_FATAL = 2


@define(eq=False)
class TLSMetrics:
    """Handshakes and handshake failures of the gateway's TLS listeners."""

    registry: CollectorRegistry
    handshakes: Counter = field(init=False)
    failures: Counter = field(init=False)

    def __attrs_post_init__(self) -> None:
        """Register the counters (every failure reason starts at zero once seen)."""
        self.handshakes = Counter(
            "oauthproxy_tls_handshakes", "TLS handshakes completed", registry=self.registry
        )
        self.failures = Counter(
            "oauthproxy_tls_handshake_failures",
            "TLS connections ended by a fatal alert, by the alert",
            ["reason"],
            registry=self.registry,
        )

    def watch(self, connection: SSL.Connection) -> None:
        """Follow ``connection``'s handshake (the certificate map calls this for each one)."""
        connection.set_info_callback(self._info)

    def _info(self, connection: SSL.Connection, where: int, ret: int) -> None:
        """OpenSSL's progress report: count finished handshakes and fatal alerts."""
        if where & SSL.SSL_CB_HANDSHAKE_DONE:
            self.handshakes.inc()
        elif where & SSL.SSL_CB_ALERT and (ret >> 8) == _FATAL:
            self.failures.labels(ALERTS.get(ret & 0xFF, "other")).inc()
