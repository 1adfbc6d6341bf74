"""Tests for :mod:`oauthproxy.tap` and :mod:`oauthproxy.bootstrap` (no sockets, no Redis).

The daemon's start sequence runs on a ``MemoryReactorClock`` with the in-memory
storage twin: listeners are recorded, not bound.
"""

from __future__ import annotations

import io
import os
import socket
import sys

from twisted.application.service import Application
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy import bootstrap
from oauthproxy.acme.service import IssuingService
from oauthproxy.admin.credentials import hash_token
from oauthproxy.config import Config
from oauthproxy.daemon import Daemon, TrackingFactory, sd_notify
from oauthproxy.model import ADMIN_TOKEN_NAME
from oauthproxy.storage.mirror import Mirror
from oauthproxy.tap import Options, Root, build_gateway, compose, makeService
from oauthproxy.testing import MemoryStorage

API = "tcp:0:interface=127.0.0.1"


class OptionsTests(SynchronousTestCase):
    """``twistd oauthproxy`` option parsing."""

    def refused(self, argv: list[str]) -> str:
        """Parse ``argv`` expecting exit status 1; what was written to stderr."""
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        error = self.assertRaises(SystemExit, Options().parseOptions, argv)
        self.assertEqual(error.code, 1)
        return stderr.getvalue()

    def test_bad_endpoint_exits_with_one_line_naming_it(self) -> None:
        """``--http tcp:notaport`` exits 1 printing one line naming ``--http`` (no usage text)."""
        written = self.refused(["--http", "tcp:notaport"])
        self.assertIn("--http", written)
        self.assertEqual(written.count("\n"), 1)

    def test_remote_redis_without_password_is_refused(self) -> None:
        """ATK-29: ``--redis`` on a remote host without a password is refused."""
        self.assertIn("--redis", self.refused(["--redis", "redis://192.0.2.1:6379"]))

    def test_unknown_option_stays_a_usage_error(self) -> None:
        """An option that does not exist is twistd's UsageError (with its usage text)."""
        self.assertRaises(usage.UsageError, Options().parseOptions, ["--no-such-option"])

    def test_options_become_the_config(self) -> None:
        """Given options land in ``options.config``."""
        options = Options()
        options.parseOptions(["--api", API, "--https", "off", "--log-format", "json"])
        self.assertEqual(
            (options.config.api_endpoint, options.config.https_endpoint),
            (API, None),
        )
        self.assertEqual(options.config.log_format, "json")


class MakeServiceTests(SynchronousTestCase):
    """The composition root."""

    def test_root_gives_twistd_the_log_observer(self) -> None:
        """Attached to the twistd Application, the root registers its ILogObserver."""
        options = Options()
        options.parseOptions(["--api", API])
        root = makeService(options)
        application = Application("oauthproxy")
        root.setServiceParent(application)
        assert isinstance(root, Root)
        self.assertIs(application.getComponent(ILogObserver), root.observer)

    def test_root_contains_the_daemon(self) -> None:
        """makeService returns a MultiService running the Daemon."""
        options = Options()
        options.parseOptions(["--api", API, "--redis", "redis://127.0.0.1:6379"])
        [daemon] = list(makeService(options))
        assert isinstance(daemon, Daemon)
        self.assertIsNone(daemon.embedded)


def make_daemon(
    storage: MemoryStorage,
    reactor: MemoryReactorClock,
    announced: list[str],
    http_endpoint: str | None = None,
) -> Daemon:
    """A Daemon over the in-memory store composed by ``tap.compose``; listeners are recorded.

    Docker services are off: their threads cannot run on a memory reactor (the real
    daemon composes them in ``tests/integration/test_containers_daemon.py``).
    """
    config = Config(
        http_endpoint=http_endpoint,
        https_endpoint=None,
        api_endpoint=API,
        redis_url="redis://127.0.0.1",
        docker_enabled=False,
    )
    return Daemon(
        config,
        reactor,
        announce=announced.append,
        open_storage=lambda config, reactor: storage,
        compose=compose,
    )


class DaemonStartupTests(SynchronousTestCase):
    """Startup order: storage ready → admin token → mirror → listeners."""

    def setUp(self) -> None:
        """A fresh reactor and store per test."""
        self.reactor = MemoryReactorClock()
        self.storage = MemoryStorage(self.reactor)
        self.announced: list[str] = []
        self.daemon = make_daemon(self.storage, self.reactor, self.announced)

    def stop(self) -> None:
        """Stop the daemon and let its shutdown finish."""
        d = self.daemon.stopService()
        self.reactor.advance(1)
        self.successResultOf(d)

    def test_first_start_creates_and_announces_admin_token(self) -> None:
        """On an empty store an admin token is created, announced once, stored hashed."""
        self.daemon.startService()
        self.addCleanup(self.stop)
        [line] = self.announced
        value = line.rsplit(" ", 1)[-1]
        self.assertTrue(value.startswith("acm_"))
        token = self.successResultOf(self.storage.tokens.get(ADMIN_TOKEN_NAME))
        assert token is not None
        self.assertEqual((token.token_hash, token.is_admin), (hash_token(value), True))

    def test_second_start_announces_nothing(self) -> None:
        """When the admin token exists, nothing is printed."""
        self.successResultOf(
            bootstrap.ensure_admin_token(self.storage.tokens, self.reactor, lambda: "acm_x")
        )
        self.daemon.startService()
        self.addCleanup(self.stop)
        self.assertEqual(self.announced, [])

    def test_listeners_open_after_storage_is_ready(self) -> None:
        """While the store is unavailable nothing listens; once it answers the API listens."""
        self.storage.set_available(False)
        self.daemon.startService()
        self.addCleanup(self.stop)
        self.reactor.advance(1)
        self.assertEqual(self.reactor.tcpServers, [])
        self.storage.set_available(True)
        self.reactor.advance(1)
        [(port, _factory, _backlog, interface)] = self.reactor.tcpServers
        self.assertEqual((port, interface), (0, "127.0.0.1"))

    def test_health_reports_listeners_and_redis(self) -> None:
        """The health callable names the listeners and the Redis state."""
        self.daemon.startService()
        self.addCleanup(self.stop)
        self.reactor.advance(2)
        health = self.daemon.health()
        self.assertEqual(health["redis"], "connected")
        self.assertEqual(health["listeners"], {"api": API})

    def test_health_reports_redis_down_when_probes_fail(self) -> None:
        """When probes fail, health says unreachable (and still answers), readiness says why."""
        self.daemon.startService()
        self.addCleanup(self.stop)
        self.assertEqual(self.daemon.readiness(), [])
        self.storage.set_available(False)
        self.reactor.advance(2)
        self.assertEqual(self.daemon.health()["redis"], "unreachable")
        [reason] = self.daemon.readiness()
        self.assertIn("Redis does not answer", reason)

    def test_not_ready_while_starting_or_stopping(self) -> None:
        """Readiness needs every listener open, and ends when shutdown begins."""
        self.assertIn("starting: not every listener is open yet", self.daemon.readiness())
        self.daemon.startService()
        self.reactor.advance(1)
        self.assertEqual(self.daemon.readiness(), [])
        self.stop()
        self.assertIn("shutting down", self.daemon.readiness())

    def test_stop_closes_listeners_and_mirror(self) -> None:
        """stopService stops listening and stops the mirror."""
        self.daemon.startService()
        self.reactor.advance(1)
        mirror = self.daemon.mirror
        assert mirror is not None
        self.stop()
        self.assertEqual(self.daemon.ports, [])
        self.assertFalse(mirror.running)

    def test_issuing_service_runs_while_the_daemon_does(self) -> None:
        """The ACME issuing service starts with the components and stops at shutdown."""
        self.daemon.startService()
        self.reactor.advance(1)
        [issuing] = [s for s in self.daemon.services if isinstance(s, IssuingService)]
        self.assertTrue(issuing.running)
        self.stop()
        self.assertFalse(issuing.running)
        self.assertEqual(self.daemon.cleanups, [])


class GatewayCompositionTests(SynchronousTestCase):
    """The gateway wired into the daemon (on a MemoryReactor: no sockets)."""

    def setUp(self) -> None:
        """A daemon with the admin API and a plain HTTP gateway listener."""
        self.reactor = MemoryReactorClock()
        self.storage = MemoryStorage(self.reactor)
        self.daemon = make_daemon(self.storage, self.reactor, [], http_endpoint="tcp:8080")

    def stop(self) -> None:
        """Stop the daemon and let its shutdown finish."""
        d = self.daemon.stopService()
        self.reactor.advance(1)
        self.successResultOf(d)

    def test_health_lists_every_listener(self) -> None:
        """Once started, ``/health`` names the API and the gateway's HTTP listener."""
        self.daemon.startService()
        self.reactor.advance(1)
        self.addCleanup(self.stop)
        self.assertEqual(self.daemon.health()["listeners"], {"api": API, "http": "tcp:8080"})
        self.assertEqual([port for port, *_ in self.reactor.tcpServers], [0, 8080])

    def test_every_enabled_listener_serves_the_gateway_site(self) -> None:
        """http, https, proxy-http and proxy-https each get a Listener on one GatewaySite."""
        config = Config(
            http_endpoint="tcp:8080",
            https_endpoint="tcp:8443",
            proxy_http_endpoint="tcp:8081",
            proxy_https_endpoint="tcp:8444",
            redis_url="redis://127.0.0.1",
        )
        gateway = build_gateway(config, self.reactor, self.storage, self.storage_mirror())
        self.assertEqual(
            [(listener.name, listener.description) for listener in gateway.listeners],
            [
                ("http", "tcp:8080"),
                ("https", "tcp:8443"),
                ("proxy-http", "tcp:8081"),
                ("proxy-https", "tcp:8444"),
            ],
        )
        self.assertEqual(
            {id(listener.factory) for listener in gateway.listeners}, {id(gateway.site)}
        )
        self.assertEqual(len(gateway.services()), 1)
        self.assertEqual(gateway.table.https_port, 8443)

    def test_without_tls_listeners_no_certificate_service_runs(self) -> None:
        """Plain HTTP only: no fallback certificate is loaded or generated."""
        config = Config(http_endpoint="tcp:8080", https_endpoint=None, redis_url="redis://x")
        gateway = build_gateway(config, self.reactor, self.storage, self.storage_mirror())
        self.assertEqual(gateway.services(), [])

    def storage_mirror(self) -> Mirror:
        """A snapshot source over the in-memory store."""
        return Mirror(self.storage, self.reactor)


class TrackedConnectionTests(SynchronousTestCase):
    """The listeners' connection wrapper."""

    def test_addresses_are_asked_once_per_connection(self) -> None:
        """getHost/getPeer reach the socket once, however many requests ask."""
        factory = TrackingFactory(Factory.forProtocol(Protocol))
        connection = factory.buildProtocol(None)
        transport = StringTransport()
        asked: list[str] = []
        real_host, real_peer = transport.getHost, transport.getPeer
        transport.getHost = lambda: asked.append("host") or real_host()  # type: ignore[method-assign]
        transport.getPeer = lambda: asked.append("peer") or real_peer()  # type: ignore[method-assign]
        connection.makeConnection(transport)
        for _ in range(3):
            self.assertEqual(connection.getHost(), real_host())
            self.assertEqual(connection.getPeer(), real_peer())
        self.assertEqual(sorted(asked), ["host", "peer"])
        self.assertEqual(list(factory.protocols), [connection])


class BootstrapTests(SynchronousTestCase):
    """Admin token creation and rotation."""

    def setUp(self) -> None:
        """An empty in-memory store."""
        self.reactor = MemoryReactorClock()
        self.storage = MemoryStorage(self.reactor)

    def test_rotation_invalidates_the_old_value(self) -> None:
        """After rotation only the new value's hash is stored."""
        tokens = self.storage.tokens
        self.successResultOf(bootstrap.ensure_admin_token(tokens, self.reactor, lambda: "acm_a"))
        new = self.successResultOf(
            bootstrap.rotate_admin_token(tokens, self.reactor, lambda: "acm_b")
        )
        self.assertEqual(new, "acm_b")
        self.assertIsNone(self.successResultOf(tokens.find_by_hash(hash_token("acm_a"))))
        found = self.successResultOf(tokens.find_by_hash(hash_token("acm_b")))
        assert found is not None
        self.assertEqual((found.name, found.is_admin), (ADMIN_TOKEN_NAME, True))

    def test_rotation_on_empty_store_creates_the_token(self) -> None:
        """token-admin works even if the daemon never started."""
        tokens = self.storage.tokens
        self.successResultOf(bootstrap.rotate_admin_token(tokens, self.reactor, lambda: "acm_c"))
        token = self.successResultOf(tokens.get(ADMIN_TOKEN_NAME))
        assert token is not None
        self.assertEqual(token.token_hash, hash_token("acm_c"))

    def test_ensure_keeps_an_existing_token(self) -> None:
        """A second ensure leaves the first token alone and returns None."""
        tokens = self.storage.tokens
        self.successResultOf(bootstrap.ensure_admin_token(tokens, self.reactor, lambda: "acm_a"))
        again = self.successResultOf(
            bootstrap.ensure_admin_token(tokens, self.reactor, lambda: "acm_z")
        )
        self.assertIsNone(again)
        token = self.successResultOf(tokens.get(ADMIN_TOKEN_NAME))
        assert token is not None
        self.assertEqual(token.token_hash, hash_token("acm_a"))


class SdNotifyTests(SynchronousTestCase):
    """systemd readiness notification."""

    def test_ready_is_sent_to_the_notify_socket(self) -> None:
        """``sd_notify(path, "READY=1")`` sends one datagram to the socket."""
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "n")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
            listener.bind(path)
            sd_notify(path, "READY=1")
            self.assertEqual(listener.recv(100), b"READY=1")

    def test_without_notify_socket_nothing_happens(self) -> None:
        """Outside systemd (no NOTIFY_SOCKET) sd_notify does nothing."""
        sd_notify(None, "READY=1")
