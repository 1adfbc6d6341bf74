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

    def test_every_argument_has_help(self) -> None:
        """Each option and positional argument of each command says what it is."""
        missing = []

        def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    for name, sub in action.choices.items():
                        walk(sub, (*path, name))
                elif not isinstance(action, argparse._HelpAction | argparse._VersionAction) and (
                    not action.help or action.help == argparse.SUPPRESS
                ):
                    missing.append(" ".join((*path, action.dest)))

        walk(build_parser(), ())
        self.assertEqual(missing, [])

    def test_one_verb_per_action(self) -> None:
        """Records are created and deleted, settings set and cleared, parts of a record
        (a service's ports) added and removed, OAuth grants revoked; actions are commands."""
        verbs: dict[str, set[str]] = {}

        def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    for name, sub in action.choices.items():
                        verbs.setdefault(name, set()).add(" ".join(path))
                        walk(sub, (*path, name))
                elif action.dest == "action":
                    self.fail(f"{' '.join(path)} takes its action as an argument")

        walk(build_parser(), ())
        for synonym in ("rm", "del", "destroy", "unset", "drop"):
            self.assertNotIn(synonym, verbs)
        # "remove" only for parts of a record, next to "add"
        self.assertEqual(verbs.get("remove", set()) - verbs.get("add", set()), set())
        self.assertEqual(verbs.get("add", set()) - verbs.get("remove", set()), set())
        self.assertEqual(verbs["clear"] & {"auth proxy-auth"}, {"auth proxy-auth"})
        self.assertIn("oauth clients", verbs["delete"])
        self.assertEqual(verbs["revoke"] - {"oauth", "oauth sessions", "oauth tokens"}, set())
