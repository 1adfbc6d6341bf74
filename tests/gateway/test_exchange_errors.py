"""``upstream_error``: the request log's words for why an exchange failed (pure)."""

from __future__ import annotations

from OpenSSL import SSL
from twisted.internet import error
from twisted.internet.defer import TimeoutError
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web._newclient import ResponseNeverReceived

from oauthproxy.gateway.exchange import upstream_error


class UpstreamErrorTests(SynchronousTestCase):
    """Each failure kind gets its name; twisted.web's wrappers are looked through."""

    def test_kinds(self) -> None:
        """Refused, DNS, timeout, TLS, reset."""
        cases = {
            error.ConnectionRefusedError(): "upstream refused the connection",
            error.DNSLookupError(): "upstream name did not resolve",
            error.TimeoutError(): "upstream connect timed out",
            TimeoutError(): "upstream connect timed out",
            SSL.Error([("SSL routines", "", "wrong version number")]): "upstream TLS error",
            error.ConnectionLost(): "upstream reset the connection",
        }
        for exception, text in cases.items():
            self.assertEqual(upstream_error(Failure(exception)), text, exception)

    def test_wrapped_reasons_are_looked_through(self) -> None:
        """``ResponseNeverReceived([Failure(TLS error)])`` is a TLS error."""
        wrapped = ResponseNeverReceived([Failure(SSL.Error([]))])
        self.assertEqual(upstream_error(Failure(wrapped)), "upstream TLS error")
