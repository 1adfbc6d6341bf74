"""``oauthproxyctl auth`` and ``oauthproxyctl token`` run as real commands against a real daemon.

Each test starts its own daemon (embedded redis-server) with
:func:`tests.support.daemon.start_daemon`; changes reach the daemon's snapshot
through the Redis event stream, so effects are awaited with a bounded poll.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from tests.cli.test_commands import ctl
from tests.support.daemon import OAUTH_ON, DaemonProcess, start_daemon


async def eventually(check: Callable[[], Awaitable[bool]], tries: int = 100) -> bool:
    """Whether ``check`` comes true within ``tries`` polls 0.05 s apart."""
    for _ in range(tries):
        if await check():
            return True
        await task.deferLater(reactor, 0.05, lambda: None)
    return False


class Daemon:
    """A daemon and ``oauthproxyctl`` bound to it with its admin token."""

    def __init__(self, test: TestCase, daemon: DaemonProcess) -> None:
        self.test = test
        self.daemon = daemon
        token = daemon.admin_token
        assert token is not None, "the daemon printed no admin token"
        self.admin = token

    async def run(self, *args: str, token: str | None = None) -> tuple[str, str, int]:
        """``oauthproxyctl --api-url URL --token TOKEN ARGS``."""
        options = ["--api-url", self.daemon.api_url, "--token", token or self.admin]
        return await ctl(self.test, [*args, *options])

    async def json(self, *args: str, token: str | None = None) -> Any:
        """``--json ARGS``, which must exit 0; the parsed output."""
        out, err, code = await self.run("--json", *args, token=token)
        self.test.assertEqual(code, 0, err)
        return json.loads(out)


async def started(test: TestCase, env: Mapping[str, str] | None = None) -> Daemon:
    """A fresh daemon for ``test`` (with ``env``)."""
    return Daemon(test, await start_daemon(test, env=env))


class UsageTests(TestCase):
    """Help and usage errors, no daemon."""

    async def test_help_of_every_command(self) -> None:
        """``--help`` exits 0 for each auth and token command."""
        for args in (
            ["auth", "--help"],
            ["auth", "create", "--help"],
            ["auth", "test", "--help"],
            ["auth", "route-auth", "set", "--help"],
            ["auth", "proxy-auth", "clear", "--help"],
            ["token", "--help"],
            ["token", "rotate", "--help"],
        ):
            out, _, code = await ctl(self, args)
            self.assertEqual(code, 0, args)
            self.assertIn("usage: oauthproxyctl", out)

    async def test_bad_auth_type_is_usage_error(self) -> None:
        """An unknown auth type: exit 2, the message names the choices."""
        _, err, code = await ctl(self, ["auth", "create", "/x", "magic"])
        self.assertEqual(code, 2)
        self.assertIn("invalid choice", err)

    async def test_group_without_command_is_usage_error(self) -> None:
        """``auth route-auth`` alone asks for a command: exit 2."""
        _, err, code = await ctl(self, ["auth", "route-auth"])
        self.assertEqual(code, 2)
        self.assertIn("choose a command", err)


class TokenCommandTests(TestCase):
    """``token create|list|show|delete|rotate``."""

    timeout = 60

    async def test_create_prints_a_working_value(self) -> None:
        """``token create`` prints the value once; it authenticates ``token show``."""
        d = await started(self)
        created = await d.json("token", "create", "ci", "ci@example.com")
        self.assertTrue(created["token"].startswith("acm_"))

        async def works() -> bool:
            _, _, code = await d.run("token", "show", "ci", token=created["token"])
            return code == 0

        self.assertTrue(await eventually(works))

    async def test_list_for_people_and_scripts(self) -> None:
        """``token list`` is a table with a header; with ``--json`` a JSON list."""
        d = await started(self)
        out, err, code = await d.run("token", "list")
        self.assertEqual(code, 0, err)
        self.assertTrue(out.startswith("NAME"))
        self.assertIn("admin", [item["name"] for item in await d.json("token", "list")])

    async def test_rotate_replaces_the_value(self) -> None:
        """``token rotate`` prints a new value; the old one stops working."""
        d = await started(self)
        old = (await d.json("token", "create", "ci", "ci@example.com"))["token"]
        new = (await d.json("token", "rotate", "ci"))["token"]
        self.assertNotEqual(old, new)

        async def old_refused() -> bool:
            return (await d.run("token", "show", "ci", token=old))[2] == 1

        self.assertTrue(await eventually(old_refused))

    async def test_delete_then_show_fails_readably(self) -> None:
        """``token delete`` exits 0; showing it then is one stderr line and exit 1."""
        d = await started(self)
        await d.json("token", "create", "ci", "ci@example.com")
        out, err, code = await d.run("token", "delete", "ci")
        self.assertEqual((code, out.strip()), (0, "deleted token ci"), err)
        out, err, code = await d.run("token", "show", "ci")
        self.assertEqual(code, 1)
        [line] = err.strip().splitlines()
        self.assertIn("HTTP 404", line)

    async def test_non_admin_create_is_refused(self) -> None:
        """A non-admin token cannot create tokens: exit 1, 403 in the message."""
        d = await started(self)
        value = (await d.json("token", "create", "ci", "ci@example.com"))["token"]

        async def refused() -> bool:
            _, err, code = await d.run("token", "create", "x", "x@example.com", token=value)
            return code == 1 and "HTTP 403" in err

        self.assertTrue(await eventually(refused))


class AuthRuleCommandTests(TestCase):
    """``auth list|create|show|update|delete|test``."""

    timeout = 60

    async def test_rule_lifecycle(self) -> None:
        """Create, show, update, list and delete one rule, each exiting 0."""
        d = await started(self, env=OAUTH_ON)
        rule = await d.json(
            "auth", "create", "/services/*", "oauth", "--id", "svc",
            "--methods", "post,put", "--scopes", "service:write", "--users", "alice,bob",
            "--priority", "80",
        )  # fmt: skip
        self.assertEqual(rule["methods"], ["POST", "PUT"])
        self.assertEqual(
            (await d.json("auth", "show", "svc"))["oauth_allowed_users"], ["alice", "bob"]
        )
        updated = await d.json("auth", "update", "svc", "--priority", "70")
        self.assertEqual((updated["priority"], updated["auth_type"]), (70, "oauth"))
        out, err, code = await d.run("auth", "list")
        self.assertEqual(code, 0, err)
        self.assertIn("/services/*", out)
        out, err, code = await d.run("auth", "delete", "svc")
        self.assertEqual((code, out.strip()), (0, "deleted auth rule svc"), err)

    async def test_rule_takes_effect_through_the_store(self) -> None:
        """A ``none`` rule written through the CLI opens its endpoint once mirrored."""
        d = await started(self)
        status, _ = await d.daemon.get("/auth/endpoints")
        self.assertEqual(status, 401)
        await d.json("auth", "create", "/auth/endpoints", "none", "--methods", "GET")

        async def open_now() -> bool:
            return (await d.daemon.get("/auth/endpoints"))[0] == 200

        self.assertTrue(await eventually(open_now))

    async def test_test_command_names_the_rule(self) -> None:
        """``auth test`` reports the deciding rule and the auth applied."""
        d = await started(self)
        await d.json("auth", "create", "/tokens/*", "admin", "--id", "tok", "--priority", "90")
        result = await d.json("auth", "test", "/tokens/ci", "--method", "delete")
        self.assertEqual((result["source"], result["auth_type"]), ("rule", "admin"))
        self.assertEqual(result["rule"]["config_id"], "tok")

    async def test_invalid_pattern_is_one_line_error(self) -> None:
        """An API validation error: exit 1 and one line naming the field."""
        d = await started(self)
        _, err, code = await d.run("auth", "create", "no-slash", "none")
        self.assertEqual(code, 1)
        [line] = err.strip().splitlines()
        self.assertIn("path_pattern must be a path that starts with /", line)


class RouteProxyAuthCommandTests(TestCase):
    """``auth route-auth`` and ``auth proxy-auth``."""

    timeout = 60

    async def test_route_auth_set_and_show(self) -> None:
        """``route-auth set`` stores the settings that ``route-auth show`` prints."""
        d = await started(self)
        status, body = await d.daemon.post(
            "/routes/",
            {
                "route_id": "metrics",
                "path_pattern": "/metrics",
                "target_type": "url",
                "target_value": "http://127.0.0.1:9",
            },
            token=d.admin,
        )
        self.assertEqual(status, 201, body)
        await d.json("auth", "route-auth", "set", "metrics", "--auth-type", "admin",
                     "--override-proxy-auth")  # fmt: skip
        shown = await d.json("auth", "route-auth", "show", "metrics")
        self.assertEqual(shown["auth"]["auth_type"], "admin")
        self.assertTrue(shown["auth"]["override_proxy_auth"])

    async def test_proxy_auth_set_show_clear(self) -> None:
        """``proxy-auth set`` then ``show`` then ``clear`` on a real proxy."""
        d = await started(self, OAUTH_ON)
        status, body = await d.daemon.post(
            "/proxy/targets/",
            {"hostname": "api.example.test", "target_url": "http://127.0.0.1:9"},
            token=d.admin,
        )
        self.assertEqual(status, 201, body)
        await d.json(
            "auth", "proxy-auth", "set", "api.example.test", "--auth-type", "oauth",
            "--auth-proxy", "auth.example.com", "--auth-mode", "redirect",
            "--users", "alice,bob", "--scopes", "api:read",
        )  # fmt: skip
        shown = await d.json("auth", "proxy-auth", "show", "api.example.test")
        self.assertEqual(shown["auth"]["required_users"], ["alice", "bob"])
        _, err, code = await d.run("auth", "proxy-auth", "clear", "api.example.test")
        self.assertEqual(code, 0, err)
        shown = await d.json("auth", "proxy-auth", "show", "api.example.test")
        self.assertIsNone(shown["auth"])

    async def test_unknown_proxy_is_readable_error(self) -> None:
        """``proxy-auth show`` of an unknown proxy: exit 1, one line with 404."""
        d = await started(self)
        _, err, code = await d.run("auth", "proxy-auth", "show", "nope.example.test")
        self.assertEqual(code, 1)
        [line] = err.strip().splitlines()
        self.assertIn("HTTP 404", line)
