"""What every ``oauthproxyctl`` command gets: the :class:`Context`, errors, registration.

A command group is one module in :mod:`oauthproxy.cli` defining
``register(commands)``; it adds its commands with :func:`command` (and nested
ones under :func:`group`).  A handler is ``async def handler(ctx, args) -> int``
returning the exit code; it talks to the admin API through ``ctx.api`` and
prints through ``ctx.show`` (a table for people, JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import IO, Any

from attrs import define, field

from oauthproxy.cli.client import ApiClient
from oauthproxy.cli.output import render_json, render_record, render_table
from oauthproxy.config import ClientSettings

Handler = Callable[["Context", argparse.Namespace], Awaitable[int]]


class CliError(Exception):
    """A failure shown as one line on stderr; ``exit_code`` 1 (API/connection) or 2 (usage)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@define
class Context:
    """Per-invocation state handed to handlers."""

    reactor: Any
    settings: ClientSettings
    json: bool = False
    out: IO[str] = field(factory=lambda: sys.stdout)
    _api: ApiClient | None = field(default=None, init=False)

    @property
    def api(self) -> ApiClient:
        """The admin API client (created on first use, closed after the command)."""
        if self._api is None:
            self._api = ApiClient(self.reactor, self.settings.api_url, self.settings.token)
        return self._api

    def show(
        self,
        data: Any,
        columns: Sequence[str] | None = None,
    ) -> None:
        """Print ``data``: JSON with ``--json``; else a table (list) or key/value lines (dict)."""
        if self.json:
            text = render_json(data)
        elif isinstance(data, list):
            text = render_table(data, columns)
        elif isinstance(data, dict):
            text = render_record(data)
        else:
            text = str(data)
        self.out.write(text + "\n")

    async def close(self) -> None:
        """Release the HTTP connection pool."""
        if self._api is not None:
            await self._api.close()


def common_options() -> argparse.ArgumentParser:
    """``--api-url``, ``--token``, ``--json``: accepted before or after the command name."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "--api-url",
        default=argparse.SUPPRESS,
        help="admin API URL (env OAUTHPROXY_URL; default http://127.0.0.1:9000)",
    )
    parser.add_argument(
        "--token", default=argparse.SUPPRESS, help="API token (env OAUTHPROXY_TOKEN)"
    )
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    return parser


def command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Handler,
    help: str,
) -> argparse.ArgumentParser:
    """Add a command ``name`` running ``handler``; returns its parser for arguments."""
    parser = commands.add_parser(name, help=help, description=help, parents=[common_options()])
    parser.set_defaults(handler=handler)
    return parser


def group(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help: str,
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Add a command group ``name`` (e.g. ``proxy``); returns where its commands go."""
    parser = commands.add_parser(name, help=help, description=help)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    parser.set_defaults(handler=None, group_parser=parser)
    return sub
