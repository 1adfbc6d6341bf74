"""``oauthproxyctl``: the command-line client of the admin API.

Command groups are discovered: every module in :mod:`oauthproxy.cli` that
defines ``register(commands)`` adds its commands (see :mod:`oauthproxy.cli.context`).
Settings come from ``--api-url``/``--token`` or ``OAUTHPROXY_URL``/``OAUTHPROXY_TOKEN``
(environment or ``.env``, read by :mod:`oauthproxy.config`).  Exit codes: 0 ok,
1 API or connection error, 2 usage error; errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from twisted.internet import defer, task

import oauthproxy
import oauthproxy.cli
from oauthproxy.cli.client import ApiError
from oauthproxy.cli.context import CliError, Context, common_options, document
from oauthproxy.config import load_client_settings, process_environment, read_dotenv
from oauthproxy.errors import ConfigError, OAuthProxyError

PROG = "oauthproxyctl"
#: what a command without a token is told when the API wants one
NO_TOKEN = (
    "this needs an API token: pass --token or set OAUTHPROXY_TOKEN (environment or .env); "
    "the daemon prints the admin token once at its first start, and "
    "'oauthproxyctl token-admin' on its host issues a new one"
)


def command_modules() -> list[str]:
    """Names of the modules under :mod:`oauthproxy.cli` that may define commands."""
    return sorted(
        info.name
        for info in pkgutil.iter_modules(oauthproxy.cli.__path__)
        if not info.name.startswith("_") and info.name not in ("main", "context")
    )


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every discovered command group registered."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Manage oauthproxy through its admin API.",
        parents=[common_options()],
    )
    parser.add_argument("--version", action="version", version=oauthproxy.__version__)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in command_modules():
        module = importlib.import_module(f"oauthproxy.cli.{name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(commands)
    document(parser)
    return parser


def _fail(message: str, code: int) -> NoReturn:
    """Print a one-line error and exit."""
    sys.stderr.write(f"{PROG}: {' '.join(message.split())}\n")
    raise SystemExit(code)


async def run(reactor: Any, args: argparse.Namespace) -> int:
    """Run the handler chosen by ``args``; the exit code."""
    try:
        settings = load_client_settings(
            {"api-url": getattr(args, "api_url", None), "token": getattr(args, "token", None)},
            process_environment(),
            read_dotenv(),
        )
    except ConfigError as e:
        _fail(e.detail, 2)
    ctx = Context(reactor, settings, json=bool(getattr(args, "json", False)))
    try:
        code: int = await args.handler(ctx, args)
        return code
    except ApiError as error:
        if error.status == 401 and not settings.token:
            raise CliError(NO_TOKEN) from None
        raise
    finally:
        await ctx.close()


def _run_and_map(reactor: Any, args: argparse.Namespace) -> defer.Deferred[None]:
    """``task.react`` entry: run, then turn errors into a one-line message and exit code."""

    async def go() -> None:
        try:
            code = await run(reactor, args)
        except (ApiError, CliError) as e:
            _fail(str(e), getattr(e, "exit_code", 1))
        except ConfigError as e:
            _fail(e.detail, 2)
        except OAuthProxyError as e:
            _fail(e.detail, 1)
        if code:
            raise SystemExit(code)

    return defer.Deferred.fromCoroutine(go())


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        target = getattr(args, "group_parser", parser)
        target.print_usage(sys.stderr)
        _fail("choose a command (see --help)", 2)
    task.react(_run_and_map, (args,))


if __name__ == "__main__":
    main()
