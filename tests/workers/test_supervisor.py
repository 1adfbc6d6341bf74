"""The supervisor with real child processes (no twistd): startup failure and crash loops.

The workers here are small Python programs that speak the control channel's first
steps (read the spec, say ``ready``) and then do what a broken worker does.
"""

from __future__ import annotations

import sys
import tempfile
import textwrap
from typing import Any

from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from oauthproxy.config import Config
from oauthproxy.testing import MemoryStorage
from oauthproxy.workers.restarts import RestartPolicy
from oauthproxy.workers.supervisor import Supervisor, WorkerFailed

#: a worker that reads its spec, says it is ready, and dies 50 ms later
_READY_THEN_DIE = textwrap.dedent(
    """
    import json, socket, struct, sys, time
    from oauthproxy.workers.spec import CONTROL_FD, read_spec
    control = socket.socket(fileno=CONTROL_FD)
    read_spec(control)
    notice = json.dumps({"call": "ready", "args": {}}).encode()
    control.sendall(struct.pack("!I", len(notice)) + notice)
    time.sleep(0.05)
    sys.exit(1)
    """
)


def supervisor(test: TestCase, program: str, **kw: Any) -> Supervisor:
    """A supervisor of two workers running ``program``, on in-memory storage."""
    data_dir = tempfile.mkdtemp(prefix="oauthproxy-sup-")
    config = Config(
        http_endpoint="tcp:0:interface=127.0.0.1",
        https_endpoint=None,
        api_endpoint=None,
        data_dir=data_dir,
        workers=2,
    )
    storage = MemoryStorage(reactor)
    sup = Supervisor(
        config,
        reactor,
        environment={"PYTHONPATH": ":".join(sys.path)},
        argv=[sys.executable, "-c", program],
        open_storage=lambda config, reactor: storage,
        **kw,
    )
    test.addCleanup(sup._stop)
    return sup


class SupervisorTests(TestCase):
    """What the supervisor does when its workers die."""

    timeout = 60

    async def test_a_worker_dying_while_starting_fails_the_startup(self) -> None:
        """A worker that exits before it is ready makes the daemon's startup fail."""
        sup = supervisor(self, "import sys; sys.exit(3)")
        with self.assertRaises(WorkerFailed) as caught:
            await sup._start()
        self.assertIn("exited with status 3 while starting", caught.exception.detail)

    async def test_quick_deaths_are_restarted_with_back_off_then_reported(self) -> None:
        """Workers that die right after starting are restarted; five in a row are a crash loop."""
        policy = RestartPolicy(initial_delay=0.01, max_delay=0.05, stable_after=30, loop_after=5)
        sup = supervisor(self, _READY_THEN_DIE, policy=policy)
        await sup._start()
        for _ in range(400):
            if sup.state()["crash_looping"] == [0, 1]:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        state = sup.state()
        self.assertEqual(state["crash_looping"], [0, 1])
        self.assertGreaterEqual(state["restarts"], 10)
        self.assertEqual(state["configured"], 2)
