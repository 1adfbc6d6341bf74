"""Tests for the ``oauthproxyctl`` argument parser and command registration (no I/O)."""

from __future__ import annotations

import argparse

from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.cli.context import Context, command, common_options, group
from oauthproxy.cli.main import build_parser, command_modules


async def _noop(ctx: Context, args: argparse.Namespace) -> int:
    """A handler that does nothing."""
    return 0


class ParserTests(SynchronousTestCase):
    """Global flags and discovered commands."""

    def test_global_flags_work_before_and_after_the_command(self) -> None:
        """``--json``/``--api-url``/``--token`` are accepted on either side of the command."""
        parser = build_parser()
        before = parser.parse_args(["--json", "--api-url", "http://a", "health"])
        after = parser.parse_args(["health", "--json", "--token", "acm_t"])
        self.assertEqual((before.json, before.api_url), (True, "http://a"))
        self.assertEqual((after.json, after.token), (True, "acm_t"))

    def test_command_modules_are_discovered(self) -> None:
        """Every module with commands is found; the framework modules are not commands."""
        modules = command_modules()
        self.assertIn("health", modules)
        self.assertIn("token_admin", modules)
        self.assertNotIn("main", modules)

    def test_groups_nest_commands(self) -> None:
        """``group`` + ``command`` give ``GROUP COMMAND`` with the handler attached."""
        parser = argparse.ArgumentParser(parents=[common_options()])
        commands = parser.add_subparsers()
        proxy = group(commands, "proxy", "manage proxies")
        create = command(proxy, "create", _noop, "create a proxy")
        create.add_argument("hostname")
        args = parser.parse_args(["proxy", "create", "a.example", "--json"])
        self.assertEqual((args.handler, args.hostname, args.json), (_noop, "a.example", True))

    def test_group_without_command_has_no_handler(self) -> None:
        """``oauthproxyctl proxy`` alone selects the group, whose handler is None (usage)."""
        parser = argparse.ArgumentParser()
        commands = parser.add_subparsers()
        group(commands, "proxy", "manage proxies")
        self.assertIsNone(parser.parse_args(["proxy"]).handler)
