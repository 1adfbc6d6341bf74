"""``oauthproxyctl logs`` run as the real command against an in-process admin API.

The admin API (memory storage, real reactor) listens on a loopback port of this test
process; the installed ``oauthproxyctl`` script runs as a child process against it, so
the whole path (argument parsing, HTTP, JSON, tables) is exercised.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, cast

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase

from oauthproxy.admin.api import AdminAPI
from oauthproxy.admin.credentials import hash_token, new_token_value
from oauthproxy.cli.context import CliError
from oauthproxy.cli.logs import since_params
from oauthproxy.interfaces import ISnapshotSource
from oauthproxy.model import ADMIN_TOKEN_NAME, ApiToken, Snapshot
from oauthproxy.testing import MemoryStorage
from tests.admin.harness import StandInSnapshots, default_health
from tests.requestlog.samples import sample
from tests.support.daemon import child_environment

CTL = os.path.join(os.path.dirname(sys.executable), "oauthproxyctl")


class LogsCommandTests(TestCase):
    """``logs``, ``logs show``, ``logs stats`` and ``logs follow``."""

    def setUp(self) -> None:
        """An admin API on 127.0.0.1 with an admin token and records from the last hour."""
        self.storage = MemoryStorage(reactor)
        value = new_token_value()
        admin = ApiToken(
            name=ADMIN_TOKEN_NAME,
            token_hash=hash_token(value),
            owner_email="admin@example.com",
            is_admin=True,
        )
        snapshots = StandInSnapshots(Snapshot(tokens={admin.name: admin}))
        api = AdminAPI(self.storage, cast(ISnapshotSource, snapshots), reactor, default_health)
        port: IListeningPort = reactor.listenTCP(0, api.site(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.env = {
            "OAUTHPROXY_URL": f"http://127.0.0.1:{port.getHost().port}",  # type: ignore[attr-defined]
            "OAUTHPROXY_TOKEN": value,
        }
        self.cwd = os.path.abspath(self.mktemp())
        os.makedirs(self.cwd)
        now = reactor.seconds()
        self.records = [
            sample(0, time=now - 3000, duration=0.002),
            sample(1, time=now - 2000, status=502, path="/api/broken", error="upstream reset"),
            sample(2, time=now - 1000, host="b.example", client_ip="198.51.100.7"),
        ]
        self.write(self.records)

    def write(self, records: list[Any]) -> None:
        """Put records in the log (the memory store answers at once)."""
        self.successResultOf(self.storage.request_log.write(records))

    async def ctl(self, *args: str) -> tuple[str, str, int]:
        """``oauthproxyctl ARGS``: ``(stdout, stderr, exit code)``."""
        out, err, code = await getProcessOutputAndValue(
            CTL, list(args), env=child_environment(self.env), path=self.cwd, reactor=reactor
        )
        return out.decode(), err.decode(), code

    async def ok(self, *args: str) -> str:
        """Run ``args``; assert exit 0 and an empty stderr; stdout."""
        out, err, code = await self.ctl(*args)
        self.assertEqual((code, err), (0, ""), out)
        return out

    async def test_logs_lists_newest_first_as_a_table(self) -> None:
        """``logs``: a table with a header, newest request first, times in UTC."""
        lines = (await self.ok("logs")).splitlines()
        self.assertEqual(lines[0].split()[:4], ["TIME", "STATUS", "METHOD", "HOST"])
        self.assertIn("b.example", lines[1])
        self.assertIn("Z", lines[1].split()[1])
        self.assertEqual(len(lines), 4)

    async def test_filters_reach_the_api(self) -> None:
        """``--host``, ``--ip``, ``--errors`` and ``--status`` narrow the list (``--json``)."""
        for args, wanted in (
            (["--host", "b.example"], [2]),
            (["--ip", "198.51.100.7"], [2]),
            (["--errors"], [1]),
            (["--status", "200"], [2, 0]),
            (["--since", "40m"], [2, 1]),
            (["--limit", "1"], [2]),
        ):
            items = json.loads(await self.ok("logs", "--json", *args))
            got = [r["correlation_id"] for r in items]
            self.assertEqual(got, [self.records[n].correlation_id for n in wanted], args)

    async def test_show_one_request(self) -> None:
        """``logs show ID``: the record as key/value lines; unknown ids exit 1."""
        out = await self.ok("logs", "show", self.records[1].correlation_id)
        self.assertIn("upstream reset", out)
        self.assertIn("/api/broken", out)
        _, err, code = await self.ctl("logs", "show", "1-http-ffffffff")
        self.assertEqual(code, 1)
        self.assertIn("not_found", err)

    async def test_stats(self) -> None:
        """``logs stats``: totals, then a row per host with unique visitors."""
        out = await self.ok("logs", "stats")
        self.assertIn("total", out)
        self.assertIn("UNIQUE_VISITORS", out)
        stats = json.loads(await self.ok("logs", "stats", "--json"))
        self.assertEqual((stats["total"], stats["errors"]), (3, 1))

    async def test_follow_prints_new_requests_and_stops_at_count(self) -> None:
        """``logs follow --tail 0 --count 2``: only requests logged after it started."""
        store = self.storage.request_log
        asked: list[str | None] = []
        recent = store.recent

        def watched(after: str | None, count: int) -> Any:
            asked.append(after)
            return recent(after, count)

        store.recent = watched  # type: ignore[method-assign]
        running = Deferred.fromCoroutine(
            self.ctl("logs", "follow", "--tail", "0", "--count", "2", "--interval", "0.1")
        )
        for _ in range(300):  # until the command holds its cursor (a slow start is fine)
            if asked or running.called:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        now = reactor.seconds()
        self.write([sample(7, time=now, path="/late"), sample(8, time=now, path="/later")])
        out, err, code = await running
        self.assertEqual((code, err), (0, ""))
        lines = out.splitlines()
        self.assertEqual(len(lines), 2)
        self.assertIn('"GET /late"', lines[0])
        self.assertIn('"GET /later"', lines[1])

    async def test_without_admin_token_exits_1(self) -> None:
        """A non-admin (here: unknown) token is refused: exit 1, one line."""
        self.env["OAUTHPROXY_TOKEN"] = "acm_nope"
        out, err, code = await self.ctl("logs")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(len(err.strip().splitlines()), 1)


class SinceTests(SynchronousTestCase):
    """``--since`` parsing (pure)."""

    def test_durations_become_hours(self) -> None:
        """``90s``, ``30m``, ``2h``, ``1d``: hours back from now."""
        self.assertEqual(since_params("30m"), {"hours": "0.5"})
        self.assertEqual(since_params("1d"), {"hours": "24"})
        self.assertEqual(since_params(None), {})

    def test_times_become_since(self) -> None:
        """POSIX seconds and ISO-8601 times (UTC by default) become ``since``."""
        self.assertEqual(since_params("1735689600.5"), {"since": "1735689600.5"})
        self.assertEqual(since_params("2025-01-01T00:00:00"), {"since": "1735689600"})
        self.assertEqual(since_params("2025-01-01T01:00:00+01:00"), {"since": "1735689600"})

    def test_nonsense_is_a_usage_error(self) -> None:
        """Anything else: exit code 2 naming the option."""
        with self.assertRaises(CliError) as caught:
            since_params("yesterday")
        self.assertEqual(caught.exception.exit_code, 2)
        self.assertIn("--since", str(caught.exception))
