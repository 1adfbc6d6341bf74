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
from oauthproxy.cli.output import readable_times, render_json, render_record, render_table
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
        """Print ``data``: JSON with ``--json``; else a table (list) or key/value lines (dict),
        times as UTC dates."""
        if self.json:
            text = render_json(data)
        elif isinstance(data, list):
            text = render_table(readable_times(data), columns)
        elif isinstance(data, dict):
            text = render_record(readable_times(data))
        else:
            text = str(data)
        self.out.write(text + "\n")

    async def close(self) -> None:
        """Release the HTTP connection pool."""
        if self._api is not None:
            await self._api.close()


#: help of arguments that many commands share, by (group, dest) or dest; a command's own
#: ``help=`` wins.  build_parser fills these in, so every argument has help text.
ARGUMENT_HELP: dict[tuple[str, str] | str, str] = {
    "hostname": "the proxy's hostname, e.g. app.example.com",
    "route_id": "the route's id (see 'route list')",
    "config_id": "the rule's id (see 'auth list')",
    "correlation_id": "a request's id, from 'logs' or a log line",
    "owner_email": "the e-mail address of the token's owner",
    "auth_type": "none, bearer (any API token), admin or oauth",
    "target_type": "url, service, port or proxy",
    "target_value": "a URL, an external service name, a port or a proxy hostname",
    "path_pattern": "the new path pattern, e.g. '/tokens/*'",
    "auth_mode": "redirect (browsers), forward (APIs: 401 with discovery) or passthrough",
    "override_proxy_auth": "use this auth instead of the proxy's",
    "description": "free text for people",
    "connect_timeout": "seconds to connect to the upstream (default 10)",
    "read_timeout": "seconds to wait for the upstream's answer (default 60)",
    "status": "only certificates in this state",
    "client_id": "the GitHub OAuth app's client id",
    ("route-mode", "mode"): "all, selective or none (see 'proxy routes')",
    ("auth-enable", "mode"): "redirect, forward (default) or passthrough",
    "service": "the Docker service's name (see 'service list')",
    "port_name": "the port's name (see 'service port list SERVICE')",
    "image": "the image to run, e.g. nginx:alpine",
    "exposed_port": "the container port to publish on the host",
    "network_mode": "bridge (default), host or none",
    "user": "run as this user (and group) inside the container",
    "health_interval": "seconds between healthcheck runs",
    "build_arg": "a build argument NAME=VALUE (repeat)",
    "unset_env": "remove this environment variable (repeat)",
    "bind": "the address to listen on (default 127.0.0.1)",
    "protocol": "tcp (default) or udp",
    ("check", "port"): "the host port to check",
    ("cert", "name"): "the certificate's name (see 'cert list')",
    ("token", "name"): "the token's name (see 'token list')",
    ("external", "name"): "the external service's name (see 'service external list')",
    ("register", "name"): "the external service's name, e.g. backend-api",
    ("service", "name"): "the Docker service's name, a DNS label such as my-app",
}


def document(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> None:
    """Give every argument under ``parser`` without help the shared words of ARGUMENT_HELP."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                document(sub, (*path, name))
            continue
        if action.help or isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        for key in [(part, action.dest) for part in reversed(path)] + [action.dest]:
            if key in ARGUMENT_HELP:
                action.help = ARGUMENT_HELP[key]
                break


def common_options() -> argparse.ArgumentParser:
    """``--api-url``, ``--token``, ``--json``: accepted before or after the command name."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "--api-url",
        default=argparse.SUPPRESS,
        help="admin API URL (env OAUTHPROXY_URL; default http://127.0.0.1:9000)",
    )
    parser.add_argument(
        "--token",
        default=argparse.SUPPRESS,
        help="API token (env OAUTHPROXY_TOKEN; the admin token is printed at first start)",
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
