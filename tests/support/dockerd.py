"""A real, private ``dockerd`` for tests, owned by the test process and stopped by PID.

:class:`Dockerd` starts the engine with everything under one short temp directory
(data root, exec root, socket: unix socket paths must stay under 108 bytes), no
default bridge, no iptables, no ip_forward or masquerading, so it leaves the host's
network settings alone.  No registry is reachable: :meth:`Dockerd.busybox_image`
imports ``local/busybox:1`` from the host's busybox-static (every applet linked,
``/www/index.html`` for httpd), and tests build further images ``FROM`` it.

Tests that only need *a* Docker share one per test process (:func:`shared_dockerd`,
stopped at exit; the kernel kills it if the test process dies first); tests that
stop Docker start their own with :meth:`Dockerd.for_test`.  Stopping unmounts what
dockerd leaves mounted (the ``netns/default`` nsfs mount, the data root) before the
directory is removed.  A missing ``dockerd`` or ``busybox`` fails the test.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import docker
from attrs import define, field
from twisted.trial.unittest import SynchronousTestCase

from tests.support.processes import die_with_parent, end_process

#: seconds dockerd may take to answer after starting, or to exit after SIGTERM
START_TIMEOUT = 30.0
BUSYBOX_IMAGE = "local/busybox:1"


def _mounts_under(directory: str) -> list[str]:
    """Mount points at or below ``directory``, deepest first."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == directory or point.startswith(directory.rstrip("/") + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def busybox_rootfs() -> bytes:
    """A tar of a root filesystem: static busybox with every applet, and ``/www``."""
    binary = shutil.which("busybox")
    if binary is None:
        raise RuntimeError("busybox is not installed (apt-get install busybox-static)")
    applets = subprocess.run(
        [binary, "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for directory in ("bin", "tmp", "www", "etc"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        tar.add(binary, "bin/busybox")
        for applet in applets:
            if applet != "busybox":
                info = tarfile.TarInfo(f"bin/{applet}")
                info.type = tarfile.SYMTYPE
                info.linkname = "busybox"
                tar.addfile(info)
        for name, text in (
            ("www/index.html", "hello from busybox\n"),
            ("etc/passwd", "root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"),
            ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ):
            body = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(body)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(body))
    return data.getvalue()


@define
class Dockerd:
    """One dockerd child process; see the module docstring."""

    directory: str
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @classmethod
    def for_test(cls, case: SynchronousTestCase) -> Dockerd:
        """A started dockerd stopped (and its directory removed) in ``case``'s cleanups."""
        engine = cls(tempfile.mkdtemp(prefix="opd-"))
        case.addCleanup(engine.destroy)
        engine.start()
        return engine

    @property
    def socket(self) -> str:
        """The engine's unix socket."""
        return os.path.join(self.directory, "docker.sock")

    @property
    def url(self) -> str:
        """``DOCKER_HOST`` for this engine."""
        return f"unix://{self.socket}"

    def start(self) -> None:
        """Start dockerd (again) and wait until it answers ``/_ping``."""
        if self.process is not None:
            raise RuntimeError("dockerd is already running")
        binary = shutil.which("dockerd")
        if binary is None:
            raise RuntimeError("dockerd is not installed (apt-get install docker.io)")
        d = self.directory
        args = [
            binary,
            "-H", self.url,
            "--data-root", os.path.join(d, "root"),
            "--exec-root", os.path.join(d, "exec"),
            "--pidfile", os.path.join(d, "dockerd.pid"),
            "--storage-driver", "overlay2",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            "--ip-forward=false",
        ]  # fmt: skip
        log = open(os.path.join(d, "dockerd.log"), "ab")  # noqa: SIM115 - the child keeps it
        try:
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=die_with_parent
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with self.client() as client:
                    client.ping()
                return
            except Exception:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dockerd did not start; log:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self) -> str:
        """The end of dockerd's log."""
        try:
            with open(os.path.join(self.directory, "dockerd.log"), errors="replace") as f:
                return "".join(f.readlines()[-20:])
        except OSError as e:
            return f"(no log: {e})"

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        """A blocking docker SDK client for test set-up and assertions, closed afterwards."""
        client = docker.DockerClient(base_url=self.url, version="auto", timeout=30)
        try:
            yield client
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM dockerd by PID, wait for it (SIGKILL after a timeout), unmount its leftovers."""
        process, self.process = self.process, None
        if process is not None:
            end_process(process, START_TIMEOUT)
        for point in _mounts_under(self.directory):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)

    def destroy(self) -> None:
        """Stop dockerd and remove its directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def busybox_image(self) -> str:
        """``local/busybox:1``, imported on first use."""
        with self.client() as client:
            try:
                client.images.get(BUSYBOX_IMAGE)
            except docker.errors.ImageNotFound:
                repository, tag = BUSYBOX_IMAGE.split(":")
                client.api.import_image_from_data(busybox_rootfs(), repository, tag)
        return BUSYBOX_IMAGE

    def remove_containers(self, label: str) -> None:
        """Remove every container carrying ``label`` (``key=value``), running or not."""
        with self.client() as client:
            for container in client.containers.list(all=True, filters={"label": label}):
                container.remove(force=True)


_shared: Dockerd | None = None


def shared_dockerd() -> Dockerd:
    """The dockerd shared by this test process, started on first use, stopped at exit."""
    global _shared
    if _shared is None or _shared.process is None or _shared.process.poll() is not None:
        _shared = Dockerd(tempfile.mkdtemp(prefix="opd-"))
        _shared.start()
        atexit.register(_shared.destroy)
    return _shared
