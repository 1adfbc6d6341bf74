"""``oauthproxyctl proxy|route|service`` run as real commands against a real daemon.

Each daemon test starts ``twistd oauthproxy`` with its embedded redis-server
(:func:`tests.support.daemon.start_daemon`) and runs the installed
``oauthproxyctl`` script with ``OAUTHPROXY_URL``/``OAUTHPROXY_TOKEN`` set, checking
exit codes, the people's output and ``--json``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tests.support.daemon import DaemonProcess, child_environment, start_daemon
from tests.support.tls import TestAuthority

BIN = os.path.dirname(sys.executable)
CTL = os.path.join(BIN, "oauthproxyctl")


class Ctl:
    """Runs ``oauthproxyctl`` for one test, against ``api_url`` with ``token``."""

    def __init__(
        self, test: TestCase, api_url: str = "http://127.0.0.1:9", token: str = ""
    ) -> None:
        self.test = test
        self.env = {"OAUTHPROXY_URL": api_url, "OAUTHPROXY_TOKEN": token}
        self.cwd = os.path.abspath(test.mktemp())
        os.makedirs(self.cwd)

    async def run(self, *args: str, token: str | None = None) -> tuple[str, str, int]:
        """``oauthproxyctl ARGS``: ``(stdout, stderr, exit code)``."""
        env = dict(self.env)
        if token is not None:
            env["OAUTHPROXY_TOKEN"] = token
        out, err, code = await getProcessOutputAndValue(
            CTL, list(args), env=child_environment(env), path=self.cwd, reactor=reactor
        )
        return out.decode(), err.decode(), code

    async def ok(self, *args: str, token: str | None = None) -> str:
        """Run ``args``, assert exit 0 and no stderr; stdout."""
        out, err, code = await self.run(*args, token=token)
        self.test.assertEqual((code, err), (0, ""), f"{args}: {out}")
        return out

    async def json(self, *args: str, token: str | None = None) -> Any:
        """Run ``--json ARGS`` successfully; the parsed output."""
        return json.loads(await self.ok("--json", *args, token=token))

    async def fails(self, *args: str, code: int = 1) -> str:
        """Run ``args``, assert exit ``code``, nothing on stdout, one stderr line; that line."""
        out, err, got = await self.run(*args)
        self.test.assertEqual(got, code, f"{args}: {out}{err}")
        self.test.assertEqual(out, "")
        [line] = err.strip().splitlines()
        self.test.assertTrue(line.startswith("oauthproxyctl: "), line)
        return line

    async def shell(self, pipeline: str) -> tuple[str, int]:
        """Run a shell ``pipeline`` with the venv's bin first on PATH; ``(stdout, code)``."""
        env = child_environment(self.env)
        env["PATH"] = BIN + os.pathsep + env.get("PATH", "/usr/bin:/bin")
        out, err, code = await getProcessOutputAndValue(
            "/bin/sh", ["-c", pipeline], env=env, path=self.cwd, reactor=reactor
        )
        self.test.assertEqual(err, b"")
        return out.decode(), code


async def running(
    test: TestCase, env: Mapping[str, str] | None = None
) -> tuple[DaemonProcess, Ctl]:
    """A daemon (with ``env``) and a Ctl holding its admin token."""
    daemon = await start_daemon(test, env=env)
    token = daemon.admin_token
    assert token is not None, "the daemon printed no admin token"
    return daemon, Ctl(test, daemon.api_url, token)


async def new_token(daemon: DaemonProcess, ctl: Ctl, name: str) -> str:
    """Create a non-admin API token; its value once the daemon accepts it."""
    code, body = await daemon.post(
        "/tokens/",
        {"name": name, "owner_email": f"{name}@example.com"},
        ctl.env["OAUTHPROXY_TOKEN"],
    )
    assert code == 201, body
    value: str = body["token"]
    for _ in range(100):  # the daemon learns of the token through the event stream
        if (await daemon.get(f"/tokens/{name}", token=value))[0] == 200:
            return value
        await task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"token {name} never became valid")


class UsageTests(TestCase):
    """Help and usage errors: no daemon needed."""

    async def test_help_for_every_new_command(self) -> None:
        """``--help`` works for each group and command, exit 0, usage on stdout."""
        ctl = Ctl(self)
        commands: Sequence[Sequence[str]] = (
            ["proxy"], ["proxy", "create"], ["proxy", "update"], ["proxy", "routes"],
            ["proxy", "delete"], ["proxy", "dependents"],
            ["route"], ["route", "create"], ["route", "update"],
            ["service"], ["service", "register"], ["service", "external"],
            ["service", "external", "list"],
        )  # fmt: skip
        for args in commands:
            out = await ctl.ok(*args, "--help")
            self.assertIn("usage: oauthproxyctl " + " ".join(args), out)

    async def test_update_without_options_is_a_usage_error(self) -> None:
        """``proxy update HOST`` with nothing to change: exit 2, one line."""
        line = await Ctl(self).fails("proxy", "update", "a.example", code=2)
        self.assertIn("nothing to change", line)

    async def test_malformed_header_option_is_a_usage_error(self) -> None:
        """``--header`` without '=' is exit 2 naming the option."""
        line = await Ctl(self).fails(
            "proxy", "create", "a.example", "http://x", "--header", "novalue", code=2
        )
        self.assertIn("--header", line)

    async def test_unknown_target_type_is_a_usage_error(self) -> None:
        """A TARGET_TYPE outside url/service/port/proxy is rejected by the parser (exit 2)."""
        _, err, code = await Ctl(self).run("route", "create", "/x", "socket", "y")
        self.assertEqual(code, 2)
        self.assertIn("invalid choice", err)


class ProxyCommandTests(TestCase):
    """``oauthproxyctl proxy ...`` against a daemon."""

    timeout = 90

    async def test_create_list_show_update_delete(self) -> None:
        """A proxy's whole life through the CLI, as people read it."""
        _, ctl = await running(self)
        out = await ctl.ok("proxy", "create", "App.Example.com", "http://127.0.0.1:8080",
                           "--staging", "--no-http", "--header", "X-Team=ops")  # fmt: skip
        self.assertIn("app.example.com", out)
        table = (await ctl.ok("proxy", "list")).splitlines()
        self.assertEqual(table[0].split()[:3], ["HOSTNAME", "TARGET_URL", "ENABLE_HTTP"])
        self.assertEqual(
            table[1].split()[:4], ["app.example.com", "http://127.0.0.1:8080", "no", "yes"]
        )
        shown = await ctl.ok("proxy", "show", "app.example.com")
        self.assertRegex(shown, r"custom_request_headers\.X-Team\s+ops")
        await ctl.ok(
            "proxy", "update", "app.example.com", "--production-cert", "--read-timeout", "5"
        )
        record = await ctl.json("proxy", "show", "app.example.com")
        self.assertEqual(
            (record["staging"], record["read_timeout"], record["enable_http"]), (False, 5.0, False)
        )
        self.assertEqual(
            await ctl.ok("proxy", "delete", "app.example.com"), "deleted proxy app.example.com\n"
        )
        line = await ctl.fails("proxy", "show", "app.example.com")
        self.assertIn("[HTTP 404]", line)

    async def test_delete_with_its_routes_and_certificate(self) -> None:
        """``proxy dependents`` lists what goes; ``delete --delete-routes`` takes it along."""
        _, ctl = await running(self)
        await ctl.ok("proxy", "create", "gone.example.com", "http://127.0.0.1:8080", "--no-https")
        await ctl.ok("route", "create", "/api/", "port", "9001", "--id", "lone",
                     "--proxy", "gone.example.com")  # fmt: skip
        shown = (await ctl.ok("proxy", "dependents", "gone.example.com")).splitlines()
        self.assertEqual(shown[1].split(), ["route", "lone", "delete", "-"])
        out = await ctl.ok("proxy", "delete", "gone.example.com", "--delete-routes")
        self.assertEqual(out, "deleted proxy gone.example.com\ndeleted route lone\n")
        line = await ctl.fails("route", "show", "lone")
        self.assertIn("[HTTP 404]", line)

    async def test_https_proxy_says_what_happens_about_its_certificate(self) -> None:
        """A name no CA certifies: the fallback and --no-https are named; HTTP only: no note."""
        _, ctl = await running(self)
        out = await ctl.ok("proxy", "create", "app.localhost", "http://127.0.0.1:8080")
        self.assertIn("no public CA certifies app.localhost", out)
        self.assertIn("self-signed fallback certificate", out)
        self.assertIn("--no-https", out)
        out = await ctl.ok("proxy", "create", "app.example.com", "http://127.0.0.1:8080")
        self.assertIn("cert wait --host app.example.com", out)
        out = await ctl.ok(
            "proxy", "create", "plain.localhost", "http://127.0.0.1:8080", "--no-https"
        )
        self.assertNotIn("note:", out)
        self.assertNotIn(
            "note:", await ctl.ok("--json", "proxy", "create", "j.localhost", "http://x.test")
        )

    async def test_upstream_ca_from_a_file(self) -> None:
        """``--upstream-ca FILE`` sends the PEM; people see a summary, ``--json`` the PEM."""
        _, ctl = await running(self)
        pem = TestAuthority.create().ca_pem
        path = os.path.join(ctl.cwd, "ca.pem")
        with open(path, "w", encoding="ascii") as f:
            f.write(pem)
        await ctl.ok(
            "proxy", "create", "a.example", "https://127.0.0.1:8443", "--upstream-ca", path
        )
        shown = await ctl.ok("proxy", "show", "a.example")
        self.assertRegex(shown, r"upstream_ca_pem\s+\(1 PEM certificate\)")
        self.assertRegex(shown, r"created_at\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ")
        self.assertEqual((await ctl.json("proxy", "show", "a.example"))["upstream_ca_pem"], pem)

    async def test_json_list_pipes_into_json_tool(self) -> None:
        """``oauthproxyctl --json proxy list | python -m json.tool`` works (issue acceptance)."""
        _, ctl = await running(self)
        await ctl.ok("proxy", "create", "a.example", "http://127.0.0.1:8080")
        out, code = await ctl.shell("oauthproxyctl --json proxy list | python -m json.tool")
        self.assertEqual(code, 0)
        self.assertEqual([p["hostname"] for p in json.loads(out)], ["a.example"])

    async def test_invalid_field_is_one_line_naming_it(self) -> None:
        """The API's 422 becomes exit 1 and one line naming the field."""
        _, ctl = await running(self)
        line = await ctl.fails("proxy", "create", "a.example", "ftp://nope")
        self.assertIn("(target_url)", line)
        self.assertIn("[HTTP 422]", line)

    async def test_other_tokens_proxy_is_invisible(self) -> None:
        """A non-admin token lists no proxy of the admin's and cannot delete it."""
        daemon, ctl = await running(self)
        await ctl.ok("proxy", "create", "admin.example", "http://127.0.0.1:8080")
        alice = await new_token(daemon, ctl, "alice")
        self.assertEqual((await ctl.ok("proxy", "list", token=alice)).strip(), "(none)")
        _, err, code = await ctl.run("proxy", "delete", "admin.example", token=alice)
        self.assertEqual(code, 1)
        self.assertIn("[HTTP 404]", err)
        self.assertEqual(len(await ctl.json("proxy", "list")), 1)

    async def test_route_filtering_of_a_proxy(self) -> None:
        """A route scoped to a proxy applies until ``proxy route-disable`` takes it out."""
        _, ctl = await running(self)
        await ctl.ok("proxy", "create", "a.example", "http://127.0.0.1:8080")
        await ctl.ok(
            "route", "create", "/metrics", "port", "9100", "--proxy", "a.example", "--id", "m"
        )
        self.assertEqual((await ctl.json("proxy", "routes", "a.example"))["applied_routes"], ["m"])
        view = await ctl.json("proxy", "route-disable", "a.example", "m")
        self.assertEqual((view["applied_routes"], view["disabled_routes"]), ([], ["m"]))


class RouteAndServiceCommandTests(TestCase):
    """``oauthproxyctl route ...`` and ``service ...`` against a daemon."""

    timeout = 90

    async def test_route_to_a_registered_service(self) -> None:
        """The seed's flow: service-register, then route-create PATH service NAME."""
        _, ctl = await running(self)
        await ctl.ok("service", "register", "backend-api", "http://127.0.0.1:8080",
                     "--description", "The API")  # fmt: skip
        route = await ctl.json("route", "create", "/api/", "service", "backend-api",
                               "--priority", "90", "--methods", "get,post")  # fmt: skip
        self.assertEqual((route["priority"], route["methods"]), (90, ["GET", "POST"]))
        table = (await ctl.ok("route", "list")).splitlines()
        expected = [route["route_id"], "90", "/api/", "prefix", "GET,", "POST", "service"]
        self.assertEqual(table[1].split()[:7], expected)
        line = await ctl.fails("service", "external", "delete", "backend-api")
        self.assertIn(route["route_id"], line)
        self.assertIn("[HTTP 409]", line)
        await ctl.ok("route", "delete", route["route_id"])
        await ctl.ok("service", "external", "delete", "backend-api")
        self.assertEqual(await ctl.json("service", "external", "list"), [])

    async def test_route_update_and_show(self) -> None:
        """``route update`` changes only what is given; ``show`` prints '*' for all methods."""
        _, ctl = await running(self)
        await ctl.ok(
            "route", "create", "/v[0-9]+/", "url", "http://127.0.0.1:81", "--regex", "--id", "v"
        )
        await ctl.ok("route", "update", "v", "--priority", "10", "--no-enabled")
        record = await ctl.json("route", "show", "v")
        self.assertEqual(
            (record["priority"], record["enabled"], record["match_type"], record["methods"]),
            (10, False, "regex", []),
        )
        self.assertRegex(await ctl.ok("route", "show", "v"), r"methods\s+\*")

    async def test_unknown_service_target_is_named(self) -> None:
        """A route to an unregistered service: exit 1 naming target_value."""
        _, ctl = await running(self)
        line = await ctl.fails("route", "create", "/x", "service", "nope")
        self.assertIn("(target_value)", line)

    async def test_service_update_and_show(self) -> None:
        """``service external update --url`` changes the URL and keeps the description."""
        _, ctl = await running(self)
        await ctl.ok(
            "service", "external", "register", "svc", "http://127.0.0.1:1", "--description", "d"
        )
        await ctl.ok("service", "external", "update", "svc", "--url", "https://moved.example")
        record = await ctl.json("service", "external", "show", "svc")
        self.assertEqual(
            (record["target_url"], record["description"]), ("https://moved.example", "d")
        )
