"""The daemon on a Redis it reaches over TLS, verified with a private CA.

Real redis-servers listen with TLS (certificates from a throwaway CA) next to their
plain ports, which only the fixtures use.  The daemon is given ``rediss://`` (or
``sentinels://`` for a Sentinel deployment whose replication, monitoring and sentinels
all use TLS too) and the CA's PEM in ``OAUTHPROXY_REDIS_CA_BUNDLE``.
"""

from __future__ import annotations

import os

from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from tests.support.daemon import child_environment, free_port, spawn_twistd, start_daemon
from tests.support.redis import RedisServer
from tests.support.sentinel import start_sentinel_cluster
from tests.support.tls import TestAuthority


def tls_files(
    test: TestCase, authority: TestAuthority, name: str, *addresses: str
) -> tuple[str, str, str]:
    """A certificate for ``name`` (and ``addresses``), its key and the CA, as PEM files."""
    folder = os.path.abspath(test.mktemp())
    os.makedirs(folder)
    issued = authority.issue(name, ip_addresses=addresses)
    paths = tuple(os.path.join(folder, f) for f in ("cert.pem", "key.pem", "ca.pem"))
    for path, pem in zip(
        paths, (issued.fullchain_pem, issued.private_key_pem, authority.ca_pem), strict=True
    ):
        with open(path, "w") as f:
            f.write(pem)
    certificate, key, ca = paths
    return certificate, key, ca


class RedisOverTlsTests(TestCase):
    """``rediss://`` against a real TLS redis-server."""

    timeout = 60

    async def test_the_daemon_keeps_its_state_in_a_redis_it_reaches_over_tls(self) -> None:
        """ATK-29: with the private CA given, the daemon works and writes through TLS."""
        authority = TestAuthority.create()
        files = tls_files(self, authority, "localhost")
        server = RedisServer.for_test(self, password="tls-secret", tls_files=files)
        url = f"rediss://:tls-secret@localhost:{server.tls_port}/0"
        daemon = await start_daemon(self, url, env={"OAUTHPROXY_REDIS_CA_BUNDLE": files[2]})
        token = daemon.admin_token
        code, body = await daemon.post(
            "/proxy/targets/",
            {
                "hostname": "tls.example.test",
                "target_url": "http://127.0.0.1:9",
                "enable_https": False,
            },
            token,
        )
        self.assertEqual(code, 201, body)
        self.assertIn("tls.example.test", server.command("HKEYS", "op:records:proxy"))
        clients = server.command("CLIENT", "LIST")
        self.assertIn(f"laddr=127.0.0.1:{server.tls_port}", clients)

    async def test_a_redis_that_asks_for_a_client_certificate_gets_ours(self) -> None:
        """``tls-auth-clients yes`` (Redis' default): the daemon shows its client certificate."""
        authority = TestAuthority.create()
        files = tls_files(self, authority, "localhost")
        server = RedisServer.for_test(self, tls_files=files, tls_client_auth=True)
        url = f"rediss://localhost:{server.tls_port}/0"
        await self.create_proxy_with_client_certificate(url, authority, files, [server])

    async def test_sentinels_over_tls_find_the_master_the_daemon_writes_to(self) -> None:
        """``sentinels://``: TLS to the sentinels and to the master they name (by address)."""
        authority = TestAuthority.create()
        files = tls_files(self, authority, "localhost", "127.0.0.1")
        cluster = start_sentinel_cluster(self, replicas=1, tls_files=files)
        self.assertTrue(cluster.url.startswith("sentinels://"))
        daemon = await start_daemon(
            self,
            cluster.url,
            env={"OAUTHPROXY_REDIS_CA_BUNDLE": files[2]},
        )
        code, body = await daemon.post(
            "/proxy/targets/",
            {
                "hostname": "ha.example.test",
                "target_url": "http://127.0.0.1:9",
                "enable_https": False,
            },
            daemon.admin_token,
        )
        self.assertEqual(code, 201, body)  # confirmed: a replica has it too (WAIT)
        for server in cluster.servers:
            self.assertIn("ha.example.test", server.command("HKEYS", "op:records:proxy"))
        self.assertIn(
            f"laddr=127.0.0.1:{cluster.master.tls_port}", cluster.master.command("CLIENT", "LIST")
        )

    async def test_sentinels_that_ask_for_client_certificates_get_ours(self) -> None:
        """``sentinels://`` where every sentinel and server wants a client certificate:
        the daemon shows its own to the sentinels and to the master they name."""
        authority = TestAuthority.create()
        files = tls_files(self, authority, "localhost", "127.0.0.1")
        cluster = start_sentinel_cluster(self, replicas=1, tls_files=files, tls_client_auth=True)
        # confirmed only once a replica has it too (WAIT): every server holds it
        await self.create_proxy_with_client_certificate(
            cluster.url, authority, files, cluster.servers
        )

    async def create_proxy_with_client_certificate(
        self,
        url: str,
        authority: TestAuthority,
        files: tuple[str, str, str],
        servers: list[RedisServer],
    ) -> None:
        """A daemon on ``url`` with its own client certificate (of ``authority``) creates a
        proxy; each of ``servers`` holds it."""
        client, client_key, _ = tls_files(self, authority, "oauthproxy-client")
        daemon = await start_daemon(
            self,
            url,
            env={
                "OAUTHPROXY_REDIS_CA_BUNDLE": files[2],
                "OAUTHPROXY_REDIS_CLIENT_CERT": client,
                "OAUTHPROXY_REDIS_CLIENT_KEY": client_key,
            },
        )
        code, body = await daemon.post(
            "/proxy/targets/",
            {"hostname": "mtls.example.test", "target_url": "http://127.0.0.1:9"},
            daemon.admin_token,
        )
        self.assertEqual(code, 201, body)
        for server in servers:
            self.assertIn("mtls.example.test", server.command("HKEYS", "op:records:proxy"))

    async def test_an_unknown_ca_is_named_while_the_daemon_waits(self) -> None:
        """Without the CA bundle the daemon says, within seconds, that TLS verification failed.

        (It keeps trying, as for a Redis that is still starting, and exits after 30 s.)
        """
        authority = TestAuthority.create()
        server = RedisServer.for_test(self, tls_files=tls_files(self, authority, "localhost"))
        said = await self.waiting_reason(f"rediss://localhost:{server.tls_port}/0", {})
        self.assertIn("certificate verify failed", said)
        self.assertIn("OAUTHPROXY_REDIS_CA_BUNDLE", said)

    async def test_a_missing_client_certificate_is_named_while_the_daemon_waits(self) -> None:
        """A Redis that wants a client certificate hangs up after the handshake: said so."""
        authority = TestAuthority.create()
        files = tls_files(self, authority, "localhost")
        server = RedisServer.for_test(self, tls_files=files, tls_client_auth=True)
        said = await self.waiting_reason(
            f"rediss://localhost:{server.tls_port}/0", {"OAUTHPROXY_REDIS_CA_BUNDLE": files[2]}
        )
        self.assertIn("client certificate", said)
        self.assertIn("OAUTHPROXY_REDIS_CLIENT_CERT", said)

    async def waiting_reason(self, url: str, env: dict[str, str]) -> str:
        """Start a daemon on ``url`` that cannot reach it; the reason it gives while waiting."""
        data = os.path.abspath(self.mktemp())
        args = [
            "--redis", url,
            "--api", f"tcp:{free_port()}:interface=127.0.0.1",
            "--data-dir", data,
        ]  # fmt: skip
        capture, process = spawn_twistd(args, child_environment(env), os.path.dirname(data))

        def stop() -> object:
            if not capture.ended.called:
                process.signalProcess("KILL")
            return capture.ended

        self.addCleanup(stop)
        for _ in range(300):
            said = [line for line in capture.output if "Redis does not answer yet" in line]
            if said or capture.ended.called:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        self.assertTrue(said, "\n".join(capture.output[-10:]))
        return said[0]
