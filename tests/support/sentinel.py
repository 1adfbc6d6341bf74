"""A Redis Sentinel deployment for tests: a master, replicas and three sentinels on loopback.

:func:`start_sentinel_cluster` starts a master, ``replicas`` replicas of it and three
``redis-server --sentinel`` processes watching it as ``mymaster`` (quorum 2, a master
that does not answer for 1 s is down, COMPONENTS.md), each with its own copy of its
configuration file in the test's directory (sentinels rewrite theirs), and waits until
every sentinel knows the master and its replicas.  Everything is stopped by PID in the
test's cleanups.  :meth:`SentinelCluster.master_port` asks the sentinels where the
master is now; :meth:`SentinelCluster.wait_for_failover` waits until they name another.

A missing ``redis-server`` binary raises: it fails the test, never skips it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from typing import Any

from attrs import define, field
from twisted.internet import reactor, task
from twisted.trial.unittest import SynchronousTestCase

from tests.support.processes import die_with_parent, end_process
from tests.support.redis import (
    START_TIMEOUT,
    RedisServer,
    _encode,
    _read_reply,
    free_port,
)

MASTER_NAME = "mymaster"

_CONFIG = """\
port {port}
bind 127.0.0.1
daemonize no
dir {directory}
logfile {directory}/sentinel.log
sentinel monitor {name} 127.0.0.1 {master} 2
sentinel down-after-milliseconds {name} 1000
sentinel failover-timeout {name} 5000
sentinel parallel-syncs {name} 1
"""
#: added for TLS: its own TLS port, and TLS to the servers and the other sentinels
_TLS_CONFIG = """\
tls-port {tls_port}
tls-cert-file {certificate}
tls-key-file {key}
tls-ca-cert-file {authority}
tls-auth-clients {client_auth}
tls-replication yes
"""


@define
class SentinelProcess:
    """One ``redis-server --sentinel`` child process."""

    directory: str
    port: int = field(factory=free_port)
    #: (certificate, key, CA) PEM files: also a TLS port, and TLS to the servers
    tls_files: tuple[str, str, str] | None = None
    tls_port: int | None = None
    #: ask TLS clients for a certificate (``tls-auth-clients yes``)
    tls_client_auth: bool = False
    process: subprocess.Popen[bytes] | None = None

    def start(self, master: int) -> None:
        """Write a fresh configuration and start the sentinel; wait until it answers.

        ``master`` is the port the master is watched on (its TLS port under TLS).
        """
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        path = os.path.join(self.directory, "sentinel.conf")
        config = _CONFIG.format(
            port=self.port, directory=self.directory, name=MASTER_NAME, master=master
        )
        if self.tls_files is not None:
            certificate, key, authority = self.tls_files
            config += _TLS_CONFIG.format(
                tls_port=self.tls_port,
                certificate=certificate,
                key=key,
                authority=authority,
                client_auth="yes" if self.tls_client_auth else "no",
            )
        with open(path, "w") as f:
            f.write(config)
        self.process = subprocess.Popen(
            [binary, path, "--sentinel"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if self.command("PING") == "PONG":
                    return
            except (OSError, RuntimeError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sentinel on port {self.port} did not start")
            time.sleep(0.02)

    def command(self, *args: object) -> Any:
        """Run one command on the sentinel (blocking; set-up and assertions)."""
        import socket

        with socket.create_connection(("127.0.0.1", self.port), timeout=START_TIMEOUT) as s:
            s.sendall(_encode(args))
            return _read_reply(s.makefile("rb"))

    def stop(self) -> None:
        """Stop the sentinel by its PID (SIGKILL after the timeout); idempotent."""
        process, self.process = self.process, None
        if process is not None:
            end_process(process, START_TIMEOUT)


@define
class SentinelCluster:
    """A master, its replicas and three sentinels (see the module docstring)."""

    master: RedisServer
    replicas: list[RedisServer]
    sentinels: list[SentinelProcess]

    @property
    def servers(self) -> list[RedisServer]:
        """Every Redis server, master first (as started)."""
        return [self.master, *self.replicas]

    @property
    def url(self) -> str:
        """The ``sentinel://`` URL of the deployment (``sentinels://`` under TLS)."""
        if self.master.tls_files is not None:
            hosts = ",".join(f"127.0.0.1:{s.tls_port}" for s in self.sentinels)
            return f"sentinels://{hosts}/{MASTER_NAME}"
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"sentinel://{hosts}/{MASTER_NAME}"

    def master_port(self) -> int:
        """The port the first answering sentinel names as master."""
        for sentinel in self.sentinels:
            if sentinel.process is None:
                continue
            try:
                reply = sentinel.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
            except OSError:
                continue
            if reply:
                return int(reply[1])
        raise RuntimeError("no sentinel names a master")

    def server_on(self, port: int) -> RedisServer:
        """The server listening on ``port`` (its plain or TLS port)."""
        return next(s for s in self.servers if port in (s.port, s.tls_port))

    async def wait_for_failover(self, old_port: int, timeout: float = 60.0) -> RedisServer:
        """Wait until the sentinels name a master other than ``old_port`` that says so itself."""
        deadline = reactor.seconds() + timeout
        while reactor.seconds() < deadline:
            port = self.master_port()
            if port != old_port:
                server = self.server_on(port)
                if server.command("ROLE")[0] == "master":
                    return server
            await task.deferLater(reactor, 0.1, lambda: None)
        raise AssertionError(f"no failover away from port {old_port} within {timeout} s")

    def wait_until_watched(self) -> None:
        """Block until every sentinel sees the master, its replicas and the other sentinels."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = True
            for sentinel in self.sentinels:
                state = dict(_pairs(sentinel.command("SENTINEL", "MASTER", MASTER_NAME)))
                if int(state.get("num-slaves", 0)) < len(self.replicas):
                    ready = False
                if int(state.get("num-other-sentinels", 0)) < len(self.sentinels) - 1:
                    ready = False
            if ready:
                return
            time.sleep(0.1)
        raise RuntimeError("the sentinels never saw the whole deployment")


def _pairs(flat: list[Any]) -> list[tuple[Any, Any]]:
    """``[k1, v1, k2, v2]`` as pairs."""
    return list(zip(flat[::2], flat[1::2], strict=True))


def start_sentinel_cluster(
    test: SynchronousTestCase,
    replicas: int = 1,
    tls_files: tuple[str, str, str] | None = None,
    tls_client_auth: bool = False,
) -> SentinelCluster:
    """Start a master, ``replicas`` replicas and three sentinels, stopped in cleanups.

    With ``tls_files`` (certificate, key, CA) every server and sentinel also listens
    with TLS, and replication, monitoring and the sentinels' own traffic use it; the
    certificate must name 127.0.0.1 (sentinels hand out addresses).  With
    ``tls_client_auth`` every TLS port also asks its clients for a certificate of
    that CA (they show the same one to each other).
    """
    master = RedisServer.for_test(test, tls_files=tls_files, tls_client_auth=tls_client_auth)
    watched = master.tls_port if tls_files is not None else master.port
    assert watched is not None
    servers = []
    for _ in range(replicas):
        replica = RedisServer.for_test(
            test, start=False, tls_files=tls_files, tls_client_auth=tls_client_auth
        )
        replica.replica_of = watched
        replica.start()
        servers.append(replica)
    sentinels = []
    for _ in range(3):
        directory = tempfile.mkdtemp(prefix="oauthproxy-sentinel-")
        test.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        sentinel = SentinelProcess(directory, tls_files=tls_files, tls_client_auth=tls_client_auth)
        if tls_files is not None:
            sentinel.tls_port = free_port()
        test.addCleanup(sentinel.stop)
        sentinel.start(watched)
        sentinels.append(sentinel)
    cluster = SentinelCluster(master, servers, sentinels)
    _wait_for_replication(cluster)
    cluster.wait_until_watched()
    return cluster


def _wait_for_replication(cluster: SentinelCluster) -> None:
    """Block until every replica has finished its first sync with the master."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info = cluster.master.command("INFO", "replication")
        if info.count("state=online") >= len(cluster.replicas):
            return
        time.sleep(0.05)
    raise RuntimeError("the replicas never came online")
