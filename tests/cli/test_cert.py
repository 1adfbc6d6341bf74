"""``oauthproxyctl cert``: the real command against an in-process admin API on loopback.

The API (:class:`~oauthproxy.admin.api.AdminAPI` over MemoryStorage) orders through a
real :class:`~oauthproxy.acme.service.IssuingService` whose CA is the fake of
:mod:`tests.acme.fakes`, so orders complete at once.  The waiting logic itself is
unit-tested on a Clock with a stand-in terminal.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import sys
from typing import Any, cast

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.task import Clock
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase

from oauthproxy.acme.service import IssuingService
from oauthproxy.admin.api import AdminAPI
from oauthproxy.admin.credentials import hash_token, new_token_value
from oauthproxy.cli.cert import outcome, wait_for_outcome
from oauthproxy.cli.context import CliError
from oauthproxy.config import Config
from oauthproxy.interfaces import ISnapshotSource
from oauthproxy.model import ApiToken, Certificate, Proxy, Snapshot
from oauthproxy.testing import MemoryStorage
from tests.acme import fakes
from tests.acme.fakes import FakeOrderClient
from tests.admin.harness import StandInSnapshots, default_health
from tests.support.daemon import child_environment
from tests.support.tls import TrackingFactory

reactor: Any = _reactor
CTL = os.path.join(os.path.dirname(sys.executable), "oauthproxyctl")


class FakeTerminal(io.StringIO):
    """A stderr that says it is (or is not) a terminal."""

    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        """Whatever the test chose."""
        return self.tty


def record(status: str, updated_at: float = 1.0, **extra: Any) -> dict[str, Any]:
    """A certificate as the API shows it (the fields waiting looks at)."""
    return {"cert_name": "api", "status": status, "updated_at": updated_at, **extra}


class OutcomeTests(SynchronousTestCase):
    """:func:`oauthproxy.cli.cert.outcome`."""

    def test_plain_wait_goes_by_status(self) -> None:
        """Without a baseline, ready and failed end the wait, pending does not."""
        self.assertEqual(
            [outcome(record(s), None) for s in ("pending", "ready", "failed")],
            ["waiting", "ready", "failed"],
        )

    def test_renewal_needs_a_later_update(self) -> None:
        """After a renewal the unchanged ready record is still waiting; a newer one is ready."""
        before = record("ready", 5.0)
        self.assertEqual(outcome(record("ready", 5.0), before), "waiting")
        self.assertEqual(outcome(record("ready", 6.0), before), "ready")

    def test_failed_renewal_keeps_ready_with_an_error(self) -> None:
        """A renewal that failed leaves status ready with an error: that is a failure."""
        self.assertEqual(outcome(record("ready", 6.0, error="boom"), record("ready")), "failed")


class WaitTests(SynchronousTestCase):
    """:func:`oauthproxy.cli.cert.wait_for_outcome` on a Clock."""

    def run_wait(self, answers: list[dict[str, Any]], tty: bool) -> tuple[Deferred[Any], str]:
        """Wait over ``answers`` (one per poll), advancing the clock; (result, stderr)."""
        clock = Clock()
        terminal = FakeTerminal(tty)
        pending = list(answers)

        def fetch() -> Deferred[Any]:
            return succeed(pending.pop(0) if len(pending) > 1 else pending[0])

        d = ensureDeferred(wait_for_outcome(fetch, clock, terminal, interval=1.0, timeout=10.0))
        clock.pump([1.0] * 12)
        return d, terminal.getvalue()

    def test_spinner_on_a_terminal(self) -> None:
        """On a terminal each poll shows a spinner frame with the status; the line is cleared."""
        d, shown = self.run_wait([record("pending"), record("pending"), record("ready")], True)
        self.assertEqual(self.successResultOf(d)["status"], "ready")
        self.assertIn("| api: pending", shown)
        self.assertIn("/ api: pending", shown)
        self.assertTrue(shown.endswith("\r\x1b[K"))

    def test_nothing_on_stderr_without_a_terminal(self) -> None:
        """Without a terminal there is no progress output at all."""
        _, shown = self.run_wait([record("pending"), record("ready")], False)
        self.assertEqual(shown, "")

    def test_failure_is_one_line_with_reason_and_retry(self) -> None:
        """A failed order raises CliError with the reason and the next attempt's time."""
        d, _ = self.run_wait(
            [record("failed", error="connection\nrefused", retry_at=86400.0)], False
        )
        error = self.failureResultOf(d, CliError).value
        self.assertEqual(
            str(error),
            "certificate api failed: connection refused; next attempt at 1970-01-02 00:00:00Z",
        )

    def test_timeout_says_it_is_still_pending(self) -> None:
        """An order that outlasts the timeout ends the wait with exit 1 and its status."""
        d, _ = self.run_wait([record("pending")], False)
        self.assertIn("still pending after 10 s", str(self.failureResultOf(d, CliError).value))


class CommandTests(TestCase):
    """The real ``oauthproxyctl cert`` against an in-process API."""

    timeout = 60

    def setUp(self) -> None:
        """Store, issuing service (fake CA), admin API on a loopback port, admin token."""
        self.storage = MemoryStorage(reactor)
        # a chain valid now, or the issuing service would renew it again and again
        self.patch(fakes, "EPOCH", datetime.datetime.fromtimestamp(reactor.seconds(), datetime.UTC))
        chain, _ = fakes.make_chain(["a.example.com", "b.example.com"])
        self.orders = FakeOrderClient(chain=chain)
        config = Config(
            acme_directory_url="https://acme.test/dir",
            acme_staging_url="https://staging.acme.test/dir",
            admin_email="admin@example.com",
        )
        self.issuing = IssuingService(
            storage=self.storage, config=config, clock=reactor, orders=self.orders
        )
        self.issuing.startService()
        self.addCleanup(self.issuing.stopService)
        self.token = new_token_value()
        admin = ApiToken(name="admin", token_hash=hash_token(self.token), is_admin=True)
        snapshots = StandInSnapshots(Snapshot(tokens={"admin": admin}))
        api = AdminAPI(
            self.storage,
            cast(ISnapshotSource, snapshots),
            reactor,
            default_health,
            touch_interval=1e9,
            issuing=self.issuing,
        )
        self.successResultOf(self.storage.tokens.create(admin))
        factory = TrackingFactory(api.site())
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(factory.all_closed, reactor)
        self.addCleanup(port.stopListening)
        self.url = f"http://127.0.0.1:{port.getHost().port}"

    async def ctl(self, *args: str) -> tuple[str, str, int]:
        """Run ``oauthproxyctl ARGS`` with this API's URL and admin token."""
        cwd = os.path.abspath(self.mktemp())
        os.makedirs(cwd)
        env = child_environment({"OAUTHPROXY_URL": self.url, "OAUTHPROXY_TOKEN": self.token})
        out, err, code = await getProcessOutputAndValue(
            CTL, list(args), env=env, path=cwd, reactor=reactor
        )
        return out.decode(), err.decode(), code

    def stored(self, cert_name: str) -> Certificate:
        """The certificate as stored now."""
        found: Certificate | None = self.successResultOf(self.storage.certificates.get(cert_name))
        assert found is not None
        return found

    async def test_create_and_wait_reports_ready(self) -> None:
        """``cert create NAME DOMAIN --wait`` ends with one line saying it is ready."""
        out, err, code = await self.ctl("cert", "create", "api", "a.example.com", "--wait")
        self.assertEqual(code, 0, err)
        self.assertIn("certificate api is ready: a.example.com", out)
        self.assertEqual(self.stored("api").status, "ready")

    async def test_create_multi_then_list_as_json(self) -> None:
        """``cert create-multi`` orders every name; ``--json cert list`` shows them."""
        _, err, code = await self.ctl(
            "cert", "create-multi", "shared", "a.example.com,b.example.com"
        )
        self.assertEqual(code, 0, err)
        out, err, code = await self.ctl("--json", "cert", "list")
        self.assertEqual(code, 0, err)
        [listed] = json.loads(out)
        self.assertEqual(listed["domains"], ["a.example.com", "b.example.com"])

    async def test_list_is_a_table(self) -> None:
        """``cert list`` prints a table with a header row."""
        await self.ctl("cert", "create", "api", "a.example.com")
        out, err, code = await self.ctl("cert", "list")
        self.assertEqual(code, 0, err)
        header, line = out.strip().splitlines()
        self.assertEqual(
            header.split(), ["CERT_NAME", "STATUS", "DOMAINS", "ISSUER", "EXPIRES", "OWNER"]
        )
        self.assertTrue(line.startswith("api "))

    async def test_show_private_key_prints_pems(self) -> None:
        """``cert show --private-key`` (admin token) prints the chain and the key."""
        await self.ctl("cert", "create", "api", "a.example.com")
        out, err, code = await self.ctl("cert", "show", "api", "--private-key")
        self.assertEqual(code, 0, err)
        self.assertIn("BEGIN CERTIFICATE", out)
        self.assertIn("certificate-key-", out)  # the fake CA's key text

    async def test_wait_on_failed_certificate_exits_1_with_reason(self) -> None:
        """``cert wait`` on a failed certificate: exit 1, one stderr line with the reason."""
        failed = Certificate(
            cert_name="bad", domains=("a.example.com",), status="failed", error="DNS problem"
        )
        self.successResultOf(self.storage.certificates.create(failed))
        out, err, code = await self.ctl("cert", "wait", "bad")
        self.assertEqual(code, 1)
        [line] = err.strip().splitlines()
        self.assertIn("certificate bad failed: DNS problem", line)
        self.assertEqual(out, "")

    async def test_wait_for_host_finds_the_covering_certificate(self) -> None:
        """``cert wait --host`` waits for whichever certificate covers the hostname."""
        await self.ctl("cert", "create-multi", "shared", "a.example.com,b.example.com")
        out, err, code = await self.ctl("cert", "wait", "--host", "b.example.com")
        self.assertEqual(code, 0, err)
        self.assertIn("certificate shared is ready", out)

    async def test_wait_needs_a_name_or_a_host(self) -> None:
        """``cert wait`` with neither a name nor ``--host`` is a usage error (exit 2)."""
        _, err, code = await self.ctl("cert", "wait")
        self.assertEqual(code, 2)
        self.assertIn("--host", err)

    async def test_renew_wait_reports_ready(self) -> None:
        """``cert renew --wait`` waits for the new certificate."""
        await self.ctl("cert", "create", "api", "a.example.com", "--wait")
        out, err, code = await self.ctl("cert", "renew", "api", "--wait", "--interval", "0.2")
        self.assertEqual(code, 0, err)
        self.assertIn("is ready", out)
        self.assertEqual(len(self.orders.requests), 2)

    async def test_convert_to_production(self) -> None:
        """``cert convert`` moves a staging certificate to production."""
        await self.ctl("cert", "create", "t", "a.example.com", "--staging", "--wait")
        _, err, code = await self.ctl("cert", "convert", "t", "--wait", "--interval", "0.2")
        self.assertEqual(code, 0, err)
        self.assertFalse(self.stored("t").staging)

    async def test_attach_sets_the_proxy_certificate(self) -> None:
        """``cert attach HOSTNAME CERT_NAME`` is the seed's proxy-cert-attach."""
        proxy = Proxy(hostname="a.example.com", target_url="http://127.0.0.1:1")
        self.successResultOf(self.storage.proxies.create(proxy))
        await self.ctl("cert", "create-multi", "shared", "a.example.com,b.example.com")
        _, err, code = await self.ctl("cert", "attach", "a.example.com", "shared")
        self.assertEqual(code, 0, err)
        found: Proxy | None = self.successResultOf(self.storage.proxies.get("a.example.com"))
        assert found is not None
        self.assertEqual(found.cert_name, "shared")

    async def test_delete_unknown_is_one_line_exit_1(self) -> None:
        """Deleting a certificate that does not exist: exit 1, one line naming the problem."""
        _, err, code = await self.ctl("cert", "delete", "nope")
        self.assertEqual(code, 1)
        [line] = err.strip().splitlines()
        self.assertIn("not_found", line)
