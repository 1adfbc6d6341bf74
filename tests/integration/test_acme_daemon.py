"""ACME acceptance through the real ``twistd oauthproxy`` (issue 6).

Each test runs the daemon as a subprocess (:mod:`tests.support.daemon`) on a real
redis-server (:class:`~tests.support.redis.RedisServer`, so that a daemon killed with
SIGKILL leaves its state behind for the next one) and a real Pebble
(:mod:`tests.support.pebble`, real HTTP-01 validation, no ``PEBBLE_VA_ALWAYS_VALID``)
that validates against the daemon's own HTTP listener.  The daemon gets its ACME
settings from the environment exactly as an operator sets them: ``ACME_DIRECTORY_URL``,
``ACME_STAGING_URL``, ``OAUTHPROXY_ACME_CA_BUNDLE``, a short ``RENEWAL_CHECK_INTERVAL``
and a short ``OAUTHPROXY_ACME_LOCK_TTL``.

To kill a daemon *during* an order, Pebble's HTTP-01 requests go through a
:class:`ChallengeGate`: a loopback TCP relay that holds the validation connection
(proof that the order exists and its challenge was answered) until the test lets it
through to the daemon's HTTP listener.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from attrs import define, field
from cryptography.hazmat.primitives import hashes
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.ssl import Certificate as TwistedCertificate
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody

from tests.integration.test_acme_gateway import GatewayEndpoints
from tests.support.backends import start_backend
from tests.support.daemon import DaemonProcess, free_port, start_daemon
from tests.support.pebble import Pebble, start_pebble
from tests.support.redis import RedisServer
from tests.support.tls import probe_tls

reactor: Any = _reactor
#: seconds a test waits for an order's outcome
WAIT = 45.0
#: the cluster lock's TTL in these tests: refreshed every third of it, so 2 s leaves
#: over a second of slack for a loaded machine, and a killed daemon's lock is gone soon
LOCK_TTL = "2"


class _HeldConnection(Protocol):
    """One connection to the gate: buffered while the gate is shut, then relayed."""

    def __init__(self, gate: ChallengeGate) -> None:
        self.gate = gate
        self.buffered: list[bytes] = []
        self.peer: _Relay | None = None

    def connectionMade(self) -> None:
        """Hold it, or relay it at once when the gate is open."""
        self.gate.arrived(self)

    def dataReceived(self, data: bytes) -> None:
        """Relay, or keep until relayed."""
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:
            self.buffered.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Close the relayed side too."""
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.loseConnection()

    def relay(self, port: int) -> None:
        """Connect to ``port`` and pipe both ways (close if nothing listens there)."""
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
        connected = connectProtocol(endpoint, _Relay(self))  # type: ignore[no-untyped-call]
        connected.addErrback(lambda _: self.transport and self.transport.loseConnection())


class _Relay(Protocol):
    """The gate's side of a relayed connection, towards the daemon."""

    def __init__(self, held: _HeldConnection) -> None:
        self.held = held

    def connectionMade(self) -> None:
        """Send what the CA sent so far."""
        self.held.peer = self
        assert self.transport is not None
        for data in self.held.buffered:
            self.transport.write(data)
        self.held.buffered.clear()

    def dataReceived(self, data: bytes) -> None:
        """The daemon's answer goes back to the CA."""
        if self.held.transport is not None:
            self.held.transport.write(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Close the CA's side too."""
        if self.held.transport is not None:
            self.held.transport.loseConnection()


@define(eq=False)
class ChallengeGate(Factory):
    """A TCP relay to ``target`` that holds connections until :meth:`open`."""

    target: int
    is_open: bool = False
    held: list[_HeldConnection] = field(factory=list)
    #: fires at the first connection (Pebble's VA is validating)
    first: Deferred[None] = field(factory=Deferred)
    port: IListeningPort | None = None

    def buildProtocol(self, addr: object) -> _HeldConnection:
        """A held connection."""
        return _HeldConnection(self)

    def arrived(self, connection: _HeldConnection) -> None:
        """Hold ``connection`` (or relay it when open)."""
        if not self.first.called:
            self.first.callback(None)
        if self.is_open:
            connection.relay(self.target)
        else:
            self.held.append(connection)

    def open(self) -> None:
        """Relay the held connections and every later one."""
        self.is_open = True
        while self.held:
            self.held.pop(0).relay(self.target)

    def close_all(self) -> None:
        """Drop held connections (cleanup)."""
        for connection in self.held:
            if connection.transport is not None:
                connection.transport.abortConnection()
        self.held.clear()


class DaemonAcmeTestCase(TestCase):
    """Per test: a redis-server, and helpers to start Pebble and daemons configured for it."""

    timeout = 180

    def setUp(self) -> None:
        """A redis-server shared by the test's daemons, and a work directory."""
        self.redis = RedisServer.for_test(self)
        self.workdir = Path(tempfile.mkdtemp(prefix="oauthproxy-acme-daemon-"))
        self.addCleanup(shutil.rmtree, self.workdir, True)
        #: one key for every daemon of the test, as in a cluster (account keys decrypt)
        self.secret_key = base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")

    def start_pebble(self, http_port: int, validity_seconds: int = 3600) -> Pebble:
        """Pebble validating HTTP-01 against 127.0.0.1:``http_port``."""
        pebble = start_pebble(self.workdir / "pebble", http_port, validity_seconds)
        self.addCleanup(pebble.stop)
        return pebble

    def gated_pebble(self, http_port: int) -> tuple[ChallengeGate, Pebble]:
        """A :class:`ChallengeGate` to ``http_port`` and a Pebble validating through it."""
        gate = ChallengeGate(http_port)
        gate.port = reactor.listenTCP(0, gate, interface="127.0.0.1")
        self.addCleanup(gate.port.stopListening)
        self.addCleanup(gate.close_all)
        return gate, self.start_pebble(gate.port.getHost().port)

    async def start_daemon(
        self,
        pebble: Pebble,
        http_port: int | None = None,
        https_port: int | None = None,
        settings: dict[str, str] | None = None,
    ) -> DaemonProcess:
        """A ``twistd oauthproxy`` on the test's Redis, ordering from ``pebble``.

        ``settings`` adds or overrides environment variables.
        """
        args = []
        if http_port is not None:
            args += ["--http", f"tcp:{http_port}:interface=127.0.0.1"]
        if https_port is not None:
            args += ["--https", f"tcp:{https_port}:interface=127.0.0.1"]
        env = {
            "ACME_DIRECTORY_URL": pebble.directory_url,
            "ACME_STAGING_URL": pebble.directory_url,
            "OAUTHPROXY_ACME_CA_BUNDLE": pebble.ca_bundle,
            "ADMIN_EMAIL": "admin@example.com",
            "RENEWAL_CHECK_INTERVAL": "0.5",
            "OAUTHPROXY_ACME_LOCK_TTL": LOCK_TTL,
            "OAUTHPROXY_SECRET_KEY": self.secret_key,
            **(settings or {}),
        }
        return await start_daemon(self, redis_url=self.redis.url, args=args, env=env)

    async def certificate(self, daemon: DaemonProcess, token: str, name: str) -> dict[str, Any]:
        """``GET /certificates/<name>`` (must answer 200)."""
        code, body = await daemon.get(f"/certificates/{name}", token)
        self.assertEqual(code, 200, body)
        result: dict[str, Any] = body
        return result

    async def renewal_held(
        self, daemon: DaemonProcess, token: str, name: str, gate: ChallengeGate
    ) -> bool:
        """Ask for a renewal of ``name``; True once its validation is held at the shut
        ``gate``, False if it was issued without one (Pebble reused an authorization)."""
        before = (await self.certificate(daemon, token, name))["fingerprint_sha256"]
        code, body = await daemon.post(f"/certificates/{name}/renew", {}, token)
        self.assertEqual(code, 202, body)
        for _ in range(int(WAIT / 0.1)):
            if gate.held:
                return True
            record = await self.certificate(daemon, token, name)
            if record["status"] == "ready" and record["fingerprint_sha256"] != before:
                return False
            await deferLater(reactor, 0.1, lambda: None)
        return False

    async def wait_for_status(
        self, daemon: DaemonProcess, token: str, name: str, statuses: tuple[str, ...]
    ) -> dict[str, Any]:
        """Poll the certificate until its status is one of ``statuses`` (bounded by WAIT)."""
        body: Any = None
        for _ in range(int(WAIT / 0.2)):
            code, body = await daemon.get(f"/certificates/{name}", token)
            if code == 200 and body["status"] in statuses:
                result: dict[str, Any] = body
                return result
            await deferLater(reactor, 0.2, lambda: None)
        self.fail(f"{name} never reached {statuses}: {body!r}\n" + "\n".join(daemon.output[-15:]))

    def kill(self, daemon: DaemonProcess) -> Deferred[int | None]:
        """SIGKILL ``daemon`` (no shutdown at all); fires when it is gone."""
        daemon.transport.signalProcess("KILL")
        daemon.stopped = True
        return daemon.capture.ended


class CertificateForNewProxyTests(DaemonAcmeTestCase):
    """A proxy created through the admin API with HTTPS is served with a Pebble certificate."""

    async def test_https_proxy_is_served_with_a_pebble_certificate_without_restart(self) -> None:
        """POST /proxy/targets/ with enable_https: the running daemon orders a certificate
        (HTTP-01 answered by its own HTTP listener) and its HTTPS listener presents it to a
        client that trusts only Pebble's root."""
        http_port, https_port = free_port(), free_port()
        pebble = self.start_pebble(http_port)
        backend = await start_backend(self, reactor)
        daemon = await self.start_daemon(pebble, http_port, https_port)
        token = daemon.admin_token
        assert token is not None
        code, body = await daemon.post(
            "/proxy/targets/",
            {"hostname": "app.example.com", "target_url": backend.url, "enable_https": True},
            token,
        )
        self.assertEqual(code, 201, body)
        record = await self.wait_for_status(
            daemon, token, "proxy-app-example-com", ("ready", "failed")
        )
        self.assertEqual(record["status"], "ready", record["error"])
        self.assertIn("Pebble", record["issuer"])
        code, _ = await self.https_get(https_port, "app.example.com", pebble)
        self.assertEqual(code, 200)
        self.assertEqual(len(backend.state.requests), 1)
        self.assertEqual(pebble.order_count(), 1)

    async def https_get(self, port: int, hostname: str, pebble: Pebble) -> tuple[int, bytes]:
        """GET / over HTTPS to ``port`` for ``hostname``, trusting only Pebble's root."""
        root = TwistedCertificate.loadPEM(pebble.root_pem().encode("ascii"))
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        agent = Agent.usingEndpointFactory(reactor, GatewayEndpoints(port, root), pool)
        response = await agent.request(b"GET", f"https://{hostname}/".encode("ascii"))
        body: bytes = await readBody(response)
        return response.code, body


class ShortLivedRenewalTests(DaemonAcmeTestCase):
    """A 60-second certificate is renewed by the running daemon and served at once."""

    async def test_sixty_second_certificate_is_renewed_and_served_by_the_next_handshake(
        self,
    ) -> None:
        """Pebble issues 60-second certificates; with a threshold close to that lifetime
        the daemon renews after a third of it (20 s), well before expiry, and the next
        TLS handshakes on the running HTTPS listener present the new certificate (as soon
        as the daemon's SNI map has seen the ``certificate_ready`` event: within 5 s)."""
        http_port, https_port = free_port(), free_port()
        pebble = self.start_pebble(http_port, validity_seconds=60)
        daemon = await self.start_daemon(
            pebble, http_port, https_port, {"RENEWAL_THRESHOLD_DAYS": str(50 / 86400)}
        )
        token = daemon.admin_token
        assert token is not None
        code, body = await daemon.post(
            "/certificates/", {"cert_name": "short", "domain": "short.example.com"}, token
        )
        self.assertEqual(code, 201, body)
        first = await self.wait_for_status(daemon, token, "short", ("ready",))
        await self.served(https_port, first["fingerprint_sha256"])
        renewed = first
        for _ in range(int(WAIT / 0.5)):
            renewed = await self.certificate(daemon, token, "short")
            if renewed["fingerprint_sha256"] != first["fingerprint_sha256"]:
                break
            await deferLater(reactor, 0.5, lambda: None)
        self.assertNotEqual(renewed["fingerprint_sha256"], first["fingerprint_sha256"])
        self.assertLess(renewed["updated_at"], first["not_after"], "renewed before expiry")
        self.assertGreaterEqual(renewed["updated_at"] - first["updated_at"], 20 - 1)
        await self.served(https_port, renewed["fingerprint_sha256"])
        self.assertEqual(pebble.order_count(), 2)

    async def served(self, https_port: int, fingerprint: str) -> None:
        """Handshake until ``fingerprint`` is presented for short.example.com (at most 5 s)."""
        seen = None
        for _ in range(50):
            outcome = await probe_tls(reactor, https_port, "short.example.com")
            if outcome.certificate is not None:
                seen = outcome.certificate.fingerprint(hashes.SHA256()).hex()
                if seen == fingerprint:
                    return
            await deferLater(reactor, 0.1, lambda: None)
        self.fail(f"the HTTPS listener never presented {fingerprint} (last: {seen})")


class KilledMidOrderTests(DaemonAcmeTestCase):
    """A daemon killed with SIGKILL in the middle of an order: the next one finishes it."""

    async def test_order_of_a_killed_daemon_is_resumed_by_the_next_one(self) -> None:
        """The first daemon is killed while Pebble validates its challenge; a new daemon
        on the same Redis (same settings, nobody touches anything) resumes that order
        once the dead daemon's lock has expired: one order at Pebble, certificate ready."""
        http_port = free_port()
        gate, pebble = self.gated_pebble(http_port)
        first = await self.start_daemon(pebble, http_port)
        token = first.admin_token
        assert token is not None
        code, body = await first.post(
            "/certificates/", {"cert_name": "crash", "domain": "crash.example.com"}, token
        )
        self.assertEqual(code, 201, body)
        await _within(gate.first, WAIT, "Pebble never validated: " + pebble.log_text()[-2000:])
        await self.kill(first)
        self.assertEqual(await self.certificate_via_new_daemon(pebble, http_port, gate, token), 1)

    async def test_order_that_failed_while_no_daemon_ran_is_placed_again(self) -> None:
        """The validation reaches no daemon (the only one was killed), so Pebble marks the
        order invalid; the next daemon finds it unusable and places a new order itself."""
        http_port = free_port()
        gate, pebble = self.gated_pebble(http_port)
        first = await self.start_daemon(pebble, http_port)
        token = first.admin_token
        assert token is not None
        code, body = await first.post(
            "/certificates/", {"cert_name": "crash", "domain": "crash.example.com"}, token
        )
        self.assertEqual(code, 201, body)
        await _within(gate.first, WAIT, "Pebble never validated: " + pebble.log_text()[-2000:])
        await self.kill(first)
        gate.open()
        for _ in range(int(WAIT / 0.1)):
            if "INVALID" in pebble.log_text():
                break
            await deferLater(reactor, 0.1, lambda: None)
        self.assertIn("INVALID", pebble.log_text())
        self.assertEqual(await self.certificate_via_new_daemon(pebble, http_port, gate, token), 2)

    async def certificate_via_new_daemon(
        self, pebble: Pebble, http_port: int, gate: ChallengeGate, token: str
    ) -> int:
        """Start the second daemon, let the validation through; the orders Pebble saw."""
        self.assertEqual(pebble.order_count(), 1)
        second = await self.start_daemon(pebble, http_port)
        gate.open()
        record = await self.wait_for_status(second, token, "crash", ("ready",))
        self.assertEqual((record["error"], record["failures"]), (None, 0))
        self.assertIn("Pebble", record["issuer"])
        return pebble.order_count()


class UnvalidatableOrderTests(DaemonAcmeTestCase):
    """An order whose name is not served fails readably and is not retried in a loop."""

    async def test_failed_order_is_recorded_and_not_retried_within_the_window(self) -> None:
        """Pebble validates against a port nobody serves: the certificate ends ``failed``
        with the reason and a retry minutes later; for the rest of the window (many
        RENEWAL_CHECK_INTERVALs) /health answers 200 and Pebble sees no other order."""
        pebble = self.start_pebble(free_port())
        daemon = await self.start_daemon(pebble)
        token = daemon.admin_token
        assert token is not None
        code, body = await daemon.post(
            "/certificates/", {"cert_name": "broken", "domain": "broken.example.com"}, token
        )
        self.assertEqual(code, 201, body)
        record = await self.wait_for_status(daemon, token, "broken", ("failed", "ready"))
        self.assertEqual(record["status"], "failed")
        self.assertIn("validation failed for broken.example.com", record["error"])
        self.assertEqual(record["failures"], 1)
        self.assertGreaterEqual(record["retry_at"] - record["updated_at"], 300.0)
        for _ in range(10):
            await deferLater(reactor, 0.3, lambda: None)
            code, health = await daemon.health()
            self.assertEqual(code, 200, health)
        self.assertEqual(pebble.order_count(), 1)
        self.assertEqual((await self.certificate(daemon, token, "broken"))["failures"], 1)


async def _within(waiting: Deferred[None], seconds: float, message: str) -> None:
    """Wait for ``waiting``; fail with ``message`` after ``seconds``."""
    for _ in range(int(seconds / 0.1)):
        if waiting.called:
            return
        await deferLater(reactor, 0.1, lambda: None)
    raise AssertionError(message)


class SerialisedOrderTests(DaemonAcmeTestCase):
    """Requests on one certificate are serialised: the later one wins (issue 10 defect 10)."""

    async def test_convert_during_a_renewal_is_not_lost(self) -> None:
        """``cert renew X`` then at once ``cert convert X``: the renewal (still validating)
        finishes, yet the certificate ends up ordered from the production directory.

        Before, convert answered 202 and the renewal's outcome then put the staging
        directory back into the record: the certificate stayed staging."""
        http_port = free_port()
        gate, pebble = self.gated_pebble(http_port)
        gate.open()
        production = pebble.directory_url
        staging = production.replace("127.0.0.1", "localhost")  # same Pebble, another URL
        daemon = await self.start_daemon(pebble, http_port, settings={"ACME_STAGING_URL": staging})
        token = daemon.admin_token
        assert token is not None
        code, body = await daemon.post(
            "/certificates/",
            {"cert_name": "conv", "domain": "conv.example.com", "staging": True},
            token,
        )
        self.assertEqual(code, 201, body)
        first = await self.wait_for_status(daemon, token, "conv", ("ready",))
        self.assertEqual(first["acme_directory_url"], staging)
        gate.is_open = False
        # Pebble reuses a valid authorization about once in 100 orders even with
        # PEBBLE_AUTHZREUSE=0 (it tests rand.Intn(100) > percent): such a renewal ends
        # without validating, so renew again until one is held at validation (bounded)
        for _ in range(3):
            ordered = pebble.order_count()
            if await self.renewal_held(daemon, token, "conv", gate):
                break
        self.assertTrue(
            gate.held,
            "the renewal never reached validation:\n" + "\n".join(daemon.output[-20:]),
        )
        code, body = await daemon.post("/certificates/conv/convert", {"staging": False}, token)
        self.assertEqual(code, 202, body)
        gate.open()
        record: dict[str, Any] = first
        for _ in range(int(WAIT / 0.2)):
            record = await self.certificate(daemon, token, "conv")
            if (
                record["acme_directory_url"] == production
                and record["status"] == "ready"
                and record["fingerprint_sha256"] != first["fingerprint_sha256"]
                and pebble.order_count() >= ordered + 2
            ):
                break
            await deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(
            (record["staging"], record["acme_directory_url"], record["status"]),
            (False, production, "ready"),
            "\n".join(daemon.output[-15:]),
        )
        # since the held renewal was asked for: it (superseded), then production
        self.assertEqual(pebble.order_count(), ordered + 2)
