"""``oauthproxyctl service``: Docker services, and external services (named URLs).

The group holds the Docker service commands of :mod:`oauthproxy.cli.docker_service`
(``service create|create-exposed|list|show|update|delete|start|stop|restart|logs|
stats|proxy-create|cleanup``), ``service port ...`` of :mod:`oauthproxy.cli.service_port`
and, under ``service external``
(``register``, ``list``, ``show``, ``update``, ``delete``), the external services of
``/services/external/``; ``service register NAME URL`` is kept as the seed's
``service-register`` spelling of ``service external register``.  A route targets
either kind by name: ``route create /api/ service NAME``.
"""

from __future__ import annotations

import argparse
from typing import Any

from oauthproxy.cli.context import CliError, Context, command, group
from oauthproxy.cli.docker_service import add_commands
from oauthproxy.cli.paging import all_items, for_people, given, segment, show_deleted
from oauthproxy.cli.service_port import add_port_commands

PATH = "/services/external/"
COLUMNS = ("name", "target_url", "description", "owner")


def show_service(ctx: Context, service: Any) -> None:
    """Print one service: the API's JSON with ``--json``, else with readable times."""
    ctx.show(service if ctx.json else for_people(service))


async def register_service(ctx: Context, args: argparse.Namespace) -> int:
    """``service external register NAME URL [--description TEXT]``."""
    body = {"name": args.name, "target_url": args.url, **given({"description": args.description})}
    show_service(ctx, await ctx.api.post(PATH, body))
    return 0


async def list_services(ctx: Context, args: argparse.Namespace) -> int:
    """``service external list``."""
    ctx.show(await all_items(ctx, PATH, given({"owner": args.owner})), COLUMNS)
    return 0


async def show(ctx: Context, args: argparse.Namespace) -> int:
    """``service external show NAME``."""
    show_service(ctx, await ctx.api.get(PATH + segment(args.name)))
    return 0


async def update(ctx: Context, args: argparse.Namespace) -> int:
    """``service external update NAME [--url URL] [--description TEXT]``."""
    body = given({"target_url": args.url, "description": args.description})
    if not body:
        raise CliError("nothing to change: give --url and/or --description", exit_code=2)
    show_service(ctx, await ctx.api.request("PATCH", PATH + segment(args.name), body=body))
    return 0


async def delete(ctx: Context, args: argparse.Namespace) -> int:
    """``service external delete NAME`` (refused while a route targets it)."""
    await ctx.api.delete(PATH + segment(args.name))
    return show_deleted(ctx, "external service", args.name)


def _register_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], help: str
) -> None:
    """Add ``register NAME URL [--description TEXT]`` to ``commands``."""
    parser = command(commands, "register", register_service, help)
    parser.add_argument("name", metavar="NAME", help="e.g. backend-api")
    parser.add_argument("url", metavar="URL", help="e.g. http://api:8080")
    parser.add_argument("--description", metavar="TEXT")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the Docker service commands, ``service external ...`` and ``service register``."""
    services = group(
        commands,
        "service",
        "Docker services the daemon runs (create, ports, logs ...); "
        "'service external ...' manages named URLs that routes can target",
    )
    add_commands(services)
    add_port_commands(services)
    _register_command(services, "register an external service (= service external register)")
    sub = group(services, "external", "manage external services at /services/external/")
    _register_command(sub, "register an external service: NAME → URL")

    parser = command(sub, "list", list_services, "list external services")
    parser.add_argument("--owner", help="only services registered by this token name")

    parser = command(sub, "show", show, "show one external service")
    parser.add_argument("name", metavar="NAME")

    parser = command(sub, "update", update, "change an external service's URL or description")
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("--url", metavar="URL", help="new target URL")
    parser.add_argument("--description", metavar="TEXT")

    parser = command(sub, "delete", delete, "delete an external service")
    parser.add_argument("name", metavar="NAME")
