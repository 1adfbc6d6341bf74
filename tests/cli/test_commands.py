"""``oauthproxyctl`` run as a real command: help, usage errors, health, token-admin.

The commands that need a daemon talk to a real one started by
:func:`tests.support.daemon.start_daemon` (embedded redis-server).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence

from twisted.internet import reactor, task
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tests.support.daemon import child_environment, free_port, start_daemon

CTL = os.path.join(os.path.dirname(sys.executable), "oauthproxyctl")


async def ctl(
    test: TestCase, args: Sequence[str], env: Mapping[str, str] | None = None
) -> tuple[str, str, int]:
    """Run ``oauthproxyctl ARGS`` in an empty directory; ``(stdout, stderr, exit code)``."""
    cwd = os.path.abspath(test.mktemp())
    os.makedirs(cwd)
    out, err, code = await getProcessOutputAndValue(
        CTL, list(args), env=child_environment(env), path=cwd, reactor=reactor
    )
    return out.decode(), err.decode(), code


class UsageTests(TestCase):
    """Help and usage errors, no daemon needed."""

    async def test_help_everywhere(self) -> None:
        """``--help`` works for the program and each command, exit 0."""
        for args in (["--help"], ["health", "--help"], ["token-admin", "--help"]):
            out, _, code = await ctl(self, args)
            self.assertEqual(code, 0, args)
            self.assertIn("usage: oauthproxyctl", out)

    async def test_unknown_command_exits_2(self) -> None:
        """An unknown command is a usage error: exit 2, message on stderr."""
        _, err, code = await ctl(self, ["frobnicate"])
        self.assertEqual(code, 2)
        self.assertIn("invalid choice", err.strip().splitlines()[-1])

    async def test_unreachable_api_is_one_line_exit_1(self) -> None:
        """A closed port gives exit 1 and one stderr line naming the URL."""
        url = f"http://127.0.0.1:{free_port()}"
        out, err, code = await ctl(self, ["health"], env={"OAUTHPROXY_URL": url})
        self.assertEqual(code, 1)
        [line] = err.strip().splitlines()
        self.assertIn(url, line)
        self.assertEqual(out, "")

    async def test_bad_api_url_is_a_usage_error(self) -> None:
        """``--api-url`` that is not a URL: exit 2 naming the flag."""
        _, err, code = await ctl(self, ["health", "--api-url", "nope"])
        self.assertEqual(code, 2)
        self.assertIn("--api-url", err)

    async def test_token_admin_without_daemon_data_is_refused(self) -> None:
        """``token-admin`` on a data directory without a running Redis: exit 1, one line."""
        parent = tempfile.mkdtemp(prefix="oauthproxy-test-")  # short: a unix socket path
        self.addCleanup(shutil.rmtree, parent, True)
        missing = os.path.join(parent, "data")
        _, err, code = await ctl(self, ["token-admin", "--data-dir", missing])
        self.assertEqual(code, 1)
        [line] = err.strip().splitlines()
        self.assertIn(missing, line)
        self.assertFalse(os.path.exists(missing), "token-admin created the data directory")


class DaemonCommandTests(TestCase):
    """Commands against a running daemon."""

    timeout = 90

    async def test_health_prints_state_for_people(self) -> None:
        """``health`` prints aligned key/value lines and exits 0 when all is well."""
        daemon = await start_daemon(self)
        await daemon.wait_for(lambda b: b.get("status") == "ok")
        out, err, code = await ctl(self, ["health", "--api-url", daemon.api_url])
        self.assertEqual(code, 0, err)
        self.assertIn("status", out)
        self.assertIn("listeners.api", out)

    async def test_health_json(self) -> None:
        """``--json health`` prints the API's JSON (settings from OAUTHPROXY_URL)."""
        daemon = await start_daemon(self)
        await daemon.wait_for(lambda b: b.get("status") == "ok")
        out, err, code = await ctl(self, ["--json", "health"], {"OAUTHPROXY_URL": daemon.api_url})
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(out)["redis"], "connected")

    async def test_token_admin_replaces_the_admin_token(self) -> None:
        """``token-admin`` (through the data directory's Redis socket) issues a new token;
        the old one stops working, the new one works."""
        daemon = await start_daemon(self)
        old = daemon.admin_token
        out, err, code = await ctl(self, ["--json", "token-admin", "--data-dir", daemon.data_dir])
        self.assertEqual(code, 0, err)
        new = json.loads(out)["token"]
        self.assertNotEqual(new, old)
        for _ in range(100):  # the daemon learns of the change through the event stream
            old_code, _ = await daemon.get("/tokens/admin", token=old)
            if old_code == 401:
                break
            await task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(old_code, 401)
        new_code, _ = await daemon.get("/tokens/admin", token=new)
        self.assertEqual(new_code, 200)

    async def test_missing_token_says_how_to_give_one(self) -> None:
        """Without a token a command that needs one says OAUTHPROXY_TOKEN and --token."""
        daemon = await start_daemon(self)
        out, err, code = await ctl(self, ["proxy", "list", "--api-url", daemon.api_url])
        self.assertEqual((code, out), (1, ""))
        [line] = err.strip().splitlines()
        self.assertIn("OAUTHPROXY_TOKEN", line)
        self.assertIn("--token", line)
        self.assertIn("token-admin", line)

    async def test_tables_show_readable_times(self) -> None:
        """``token list`` shows creation times as UTC dates, not POSIX seconds."""
        daemon = await start_daemon(self)
        env = {"OAUTHPROXY_URL": daemon.api_url, "OAUTHPROXY_TOKEN": daemon.admin_token or ""}
        out, err, code = await ctl(self, ["token", "list"], env)
        self.assertEqual(code, 0, err)
        row = out.splitlines()[1]
        self.assertRegex(row, r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ")
        self.assertNotRegex(row, r"\b1[0-9]{9}(\.[0-9]+)?\b")
        out, err, code = await ctl(self, ["--json", "token", "list"], env)
        self.assertIsInstance(json.loads(out)[0]["created_at"], float)
