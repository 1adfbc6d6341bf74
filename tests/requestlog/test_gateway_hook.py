"""The request log on the real GatewaySite: every finished request becomes a record.

Driven in memory (StringTransport, Clock): this pins down that ``GatewaySite(...,
access_log=finished.access_log)``, with the writer among the sinks of ``finished``, is
all the composition root needs.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.config import Config
from oauthproxy.gateway.site import GatewaySite
from oauthproxy.requestlog.finished import FinishedRequests
from oauthproxy.requestlog.writer import RequestLogWriter
from oauthproxy.testing import MemoryStorage
from tests.requestlog.samples import T0, Answering


class GatewayHookTests(SynchronousTestCase):
    """GatewaySite + FinishedRequests + RequestLogWriter."""

    def setUp(self) -> None:
        """A GatewaySite answering 201 whose access log is a started writer."""
        self.clock = Clock()
        self.clock.advance(T0)
        self.storage = MemoryStorage(self.clock)
        self.writer = RequestLogWriter(self.storage.request_log, self.clock)
        self.writer.startService()
        self.addCleanup(self.writer.stopService)
        finished = FinishedRequests(self.clock, [self.writer])
        finished.startService()
        self.addCleanup(finished.stopService)
        site = GatewaySite(
            Answering(201, b"created"), Config(), self.clock, access_log=finished.access_log
        )
        self.protocol = site.buildProtocol(IPv4Address("TCP", "203.0.113.5", 40000))
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "203.0.113.5", 40000))
        self.protocol.makeConnection(self.transport)
        self.addCleanup(self.protocol.connectionLost, None)

    def test_finished_request_is_recorded_from_the_connection(self) -> None:
        """Peer IP (not X-Forwarded-For), host, path without query, status and size.

        (A GET: request-body streaming in the gateway is not this test's concern.)
        """
        self.protocol.dataReceived(
            b"GET /things?access_token=SECRET HTTP/1.1\r\nHost: App.Example:8080\r\n"
            b"X-Forwarded-For: 10.9.9.9\r\nAuthorization: Bearer SECRET\r\n\r\n"
        )
        self.assertIn(b"201", self.transport.value())
        self.clock.advance(0.25)
        self.assertEqual(self.writer.buffered, 1)
        self.clock.advance(0.25)
        [record] = self.storage.request_log.records.values()
        self.assertEqual(
            (record.client_ip, record.host, record.method, record.path, record.status),
            ("203.0.113.5", "app.example", "GET", "/things", 201),
        )
        self.assertEqual(record.bytes_out, 7)
        self.assertTrue(record.correlation_id.startswith(f"{int(T0)}-http-"))
        self.assertNotIn("SECRET", repr(record))

    def test_pipelined_requests_are_each_recorded(self) -> None:
        """Two requests on one connection give two records with distinct ids."""
        self.protocol.dataReceived(
            b"GET /a HTTP/1.1\r\nHost: app.example\r\n\r\n"
            b"GET /b HTTP/1.1\r\nHost: app.example\r\n\r\n"
        )
        self.clock.pump([0.25] * 4)
        records = sorted(self.storage.request_log.records.values(), key=lambda r: r.path)
        self.assertEqual([r.path for r in records], ["/a", "/b"])
        self.assertNotEqual(records[0].correlation_id, records[1].correlation_id)
