"""The daemon as users run it: ``twistd -n oauthproxy`` with its embedded redis-server.

Each test starts a real daemon subprocess (``tests.support.daemon``); the
fixture's cleanup stops it with SIGTERM and fails the test if a redis-server
survives it.
"""

from __future__ import annotations

import base64
import os
import signal
import socket

import treq
from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from tests.support.daemon import free_port, redis_pids, run_twistd, start_daemon
from tests.support.redis import RedisServer


class EmbeddedDaemonTests(TestCase):
    """Start, serve /health, stop: the README's run command in miniature."""

    timeout = 90

    async def test_health_is_json_with_embedded_redis_connected(self) -> None:
        """``GET /health`` answers 200 JSON: Redis connected, listeners and version shown."""
        daemon = await start_daemon(self)
        body = await daemon.wait_for(lambda b: b.get("redis") == "connected")
        self.assertEqual(body["status"], "ok")
        self.assertEqual(body["listeners"]["api"], f"tcp:{daemon.api_port}:interface=127.0.0.1")
        self.assertEqual(body["embedded_redis"], "running")
        self.assertIn("version", body)

    async def test_first_start_prints_a_working_admin_token_once(self) -> None:
        """The admin token is printed on first start and authenticates admin calls."""
        daemon = await start_daemon(self)
        token = daemon.admin_token
        self.assertIsNotNone(token)
        plain = [line for line in daemon.output if line.startswith("Admin token")]
        self.assertEqual(len(plain), 1)
        code, _ = await daemon.get("/tokens/admin", token=token)
        self.assertEqual(code, 200)
        code, _ = await daemon.get("/tokens/admin")
        self.assertEqual(code, 401)

    async def test_seed_curl_example_works_as_written(self) -> None:
        """The seed's ``curl -X POST ... -d '{...}'`` (form content type) creates the rule."""
        daemon = await start_daemon(self)
        response = await treq.post(
            daemon.api_url + "/auth/endpoints",
            data=b'{"path_pattern": "/health", "methods": ["GET"], "auth_type": "none", '
            b'"priority": 100}',
            headers={
                "Authorization": [f"Bearer {daemon.admin_token}"],
                # what curl -d sends when no -H Content-Type is given
                "Content-Type": ["application/x-www-form-urlencoded"],
            },
            pool=daemon.pool,
            timeout=10,
        )
        body = await treq.json_content(response)
        self.assertEqual(response.code, 201, body)
        self.assertEqual((body["path_pattern"], body["priority"]), ("/health", 100))

    async def test_sigterm_stops_daemon_and_embedded_redis(self) -> None:
        """SIGTERM: the daemon exits cleanly and its redis-server is gone (no orphan)."""
        daemon = await start_daemon(self)
        [pid] = daemon.embedded_redis_pids
        await daemon.stop()
        self.assertTrue(daemon.exited_cleanly, "\n".join(daemon.output[-10:]))
        self.assertTrue(any("oauthproxy stopped" in line for line in daemon.output))
        self.assertEqual(redis_pids(os.path.join(daemon.data_dir, "redis.sock")), [])
        self.assertFalse(os.path.exists(f"/proc/{pid}"), "redis-server still exists")

    async def test_killed_daemon_takes_embedded_redis_with_it(self) -> None:
        """Even SIGKILL of the daemon leaves no redis-server behind (parent-death signal)."""
        daemon = await start_daemon(self)
        [pid] = daemon.embedded_redis_pids
        daemon.transport.signalProcess("KILL")
        await daemon.stop()
        for _ in range(50):
            if not os.path.exists(f"/proc/{pid}"):
                break
            await task.deferLater(reactor, 0.1, lambda: None)
        self.assertFalse(os.path.exists(f"/proc/{pid}"), "redis-server outlived its daemon")

    async def test_killed_redis_is_restarted_and_data_survives(self) -> None:
        """Kill redis-server: /health says disconnected but answers; supervision restarts it,
        the daemon reconnects, and records written before are still there (AOF)."""
        daemon = await start_daemon(self)
        token = daemon.admin_token
        code, created = await daemon.post(
            "/tokens/", {"name": "ci", "owner_email": "ci@example.com"}, token=token
        )
        self.assertEqual(code, 201, created)
        [pid] = daemon.embedded_redis_pids
        os.kill(pid, signal.SIGKILL)
        down = await daemon.wait_for(lambda b: b.get("redis") != "connected", timeout=20)
        self.assertEqual(down["status"], "degraded")
        up = await daemon.wait_for(
            lambda b: b.get("redis") == "connected" and b.get("events_connected"), timeout=40
        )
        self.assertEqual(up["status"], "ok")
        [new_pid] = daemon.embedded_redis_pids
        self.assertNotEqual(new_pid, pid)
        # every pooled connection reconnects on its own schedule: a read may still meet
        # one that has not (503) for a moment after /health is green again
        for _ in range(100):
            code, record = await daemon.get("/tokens/ci", token=token)
            if code != 503:
                break
            await task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(code, 200, record)
        self.assertEqual(record["owner_email"], "ci@example.com")

    async def test_second_daemon_on_same_data_dir_refuses_to_start(self) -> None:
        """A second daemon on a data directory in use exits 1 and leaves the first running."""
        daemon = await start_daemon(self)
        code, output = await run_twistd(self, ["--api", "off", "--data-dir", daemon.data_dir])
        self.assertEqual(code, 1, "\n".join(output[-10:]))
        self.assertTrue(any("another oauthproxy" in line for line in output))
        self.assertEqual(len(daemon.embedded_redis_pids), 1)
        code, _ = await daemon.health()
        self.assertEqual(code, 200)


class ConfiguredRedisTests(TestCase):
    """With ``REDIS_URL`` the daemon uses that Redis and starts none of its own."""

    timeout = 60

    async def test_configured_redis_with_password_is_used(self) -> None:
        """A password-protected Redis given by URL: health is ok, no embedded redis-server."""
        redis = RedisServer.for_test(self, password="s3cret-pw")
        daemon = await start_daemon(
            self, redis_url=f"redis://127.0.0.1:{redis.port}/0", env={"REDIS_PASSWORD": "s3cret-pw"}
        )
        body = await daemon.wait_for(lambda b: b.get("status") == "ok")
        self.assertEqual(body["redis"], "connected")
        self.assertNotIn("embedded_redis", body)
        self.assertEqual(daemon.embedded_redis_pids, [])
        self.assertFalse(any("s3cret-pw" in line for line in daemon.output))


class BadSettingsTests(TestCase):
    """An invalid setting refuses to start with one line naming it."""

    timeout = 60

    def assert_refused(self, code: int | None, output: list[str], setting: str) -> None:
        """Non-zero exit; the last line names ``setting``; no daemon started."""
        self.assertNotEqual(code, 0)
        self.assertIsNotNone(code)
        self.assertIn(setting, output[-1] if output else "", "\n".join(output[-5:]))
        self.assertFalse(any("ready" in line for line in output))

    async def test_unparseable_endpoint_refuses_to_start(self) -> None:
        """``--http tcp:notaport`` exits non-zero naming ``--http``."""
        code, output = await run_twistd(self, ["--http", "tcp:notaport"])
        self.assert_refused(code, output, "--http")

    async def test_remote_redis_without_password_refuses_to_start(self) -> None:
        """ATK-29: a non-loopback REDIS_URL without a password exits non-zero naming it."""
        code, output = await run_twistd(self, [], env={"REDIS_URL": "redis://10.9.8.7:6379/0"})
        self.assert_refused(code, output, "REDIS_URL")

    async def test_missing_redis_server_binary_exits_non_zero(self) -> None:
        """When the embedded redis-server cannot be started the daemon exits 1, saying why."""
        code, output = await run_twistd(
            self, ["--api", "off"], env={"OAUTHPROXY_REDIS_SERVER": "/nonexistent/redis-server"}
        )
        self.assertEqual(code, 1, "\n".join(output[-10:]))
        self.assertTrue(
            any("could not start" in line and "OAUTHPROXY_REDIS_SERVER" in line for line in output),
            "\n".join(output[-10:]),
        )

    async def test_busy_port_is_one_line_without_a_traceback(self) -> None:
        """A listener whose port is taken: exit 1, one line naming it and its setting."""
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = await run_twistd(
            self, ["--api", f"tcp:{port}:interface=127.0.0.1", "--http", "off", "--https", "off"]
        )
        self.assertEqual(code, 1, "\n".join(output[-10:]))
        failed = [line for line in output if "could not start" in line]
        self.assertEqual(len(failed), 1, "\n".join(output))
        self.assertIn(f"the api listener cannot listen on tcp:{port}", failed[0])
        self.assertIn("address already in use", failed[0])
        self.assertIn("--api or OAUTHPROXY_API", failed[0])
        self.assertFalse(any("Traceback" in line for line in output), "\n".join(output))


class SharedSecretKeyTests(TestCase):
    """Daemons sharing one Redis must share the secret key (issue 10, defect 3)."""

    timeout = 90

    async def test_daemon_with_another_key_exits_1_with_one_line(self) -> None:
        """A second daemon whose key does not open what the first stored exits 1 at once,
        with one line naming the setting and how to share the key (it used to hang,
        retrying a decryption traceback forever and binding nothing)."""
        redis = RedisServer.for_test(self)
        key_a = base64.urlsafe_b64encode(os.urandom(32)).decode()
        key_b = base64.urlsafe_b64encode(os.urandom(32)).decode()
        https = ["--https", f"tcp:{free_port()}:interface=127.0.0.1"]
        first = await start_daemon(
            self, redis_url=redis.url, args=https, env={"OAUTHPROXY_SECRET_KEY": key_a}
        )
        await first.wait_for(lambda body: "https" in body.get("listeners", {}))
        args = ["--redis", redis.url, "--http", "off", "--https", "off"]
        args += ["--api", f"tcp:{free_port()}:interface=127.0.0.1"]
        code, output = await run_twistd(self, args, env={"OAUTHPROXY_SECRET_KEY": key_b})
        self.assertEqual(code, 1, "\n".join(output[-10:]))
        lines = [line for line in output if "OAUTHPROXY_SECRET_KEY" in line]
        self.assertEqual(len(lines), 1, "\n".join(output[-10:]))
        self.assertIn("does not match the data in Redis", lines[0])
        self.assertFalse(any("Traceback" in line for line in output), "\n".join(output))
        # the same key works
        second = await start_daemon(self, redis_url=redis.url, env={"OAUTHPROXY_SECRET_KEY": key_a})
        self.assertEqual((await second.health())[0], 200)
