"""``oauthproxyctl service port ...``: the ports of Docker services.

- ``service port add SERVICE PORT [BIND] [--source-token T]`` (the seed's
  ``service-port-add``; ``--source-token generate`` makes a token, printed once;
  ``--allow CIDR`` admits only those clients; ``--container N`` when the container
  listens on another port);
- ``service port update SERVICE PORT_NAME ...``, ``service port remove SERVICE PORT_NAME``,
  ``service port list SERVICE``;
- ``service port check PORT [BIND]`` (exit 1 when the port is not free, saying why),
  ``service port available``.

Added by :mod:`oauthproxy.cli.service` to the ``service`` group (no ``register`` here).
"""

from __future__ import annotations

import argparse
import secrets
from typing import Any

from oauthproxy.cli.context import CliError, Context, command, group
from oauthproxy.cli.docker_service import LONG, PATH, PORT_COLUMNS, port_row
from oauthproxy.cli.paging import all_items, given, segment, show_deleted


def _source_token(value: str | None) -> tuple[str | None, bool]:
    """The token to send for ``--source-token`` (``generate``: a new one); whether generated."""
    if value == "generate":
        return "pt_" + secrets.token_urlsafe(32), True
    return value, False


def _port_body(args: argparse.Namespace) -> tuple[dict[str, Any], str | None]:
    """The port fields given; the generated token if ``--source-token generate``."""
    token, generated = _source_token(args.source_token)
    body: dict[str, Any] = given(
        {"protocol": args.protocol, "description": args.description, "source_token": token}
    )
    if args.source_token == "none":
        body["source_token"] = None
    if args.allow:
        body["allowed_networks"] = args.allow
    return body, token if generated else None


def _show_port(ctx: Context, port: dict[str, Any], token: str | None) -> None:
    """Print a port (and a generated token, once)."""
    if ctx.json:
        ctx.show({**port, "source_token": token} if token else port)
        return
    ctx.show(port_row(port))
    if token:
        ctx.out.write(f"access token (shown once): {token}\n")


async def port_add(ctx: Context, args: argparse.Namespace) -> int:
    """``service port add SERVICE PORT [BIND] [--source-token T]``."""
    body, token = _port_body(args)
    body.update(
        {
            "name": args.port_name or str(args.port),
            "host": args.port,
            "container": args.container or args.port,
            "bind": args.bind,
        }
    )
    path = f"{PATH}{segment(args.service)}/ports"
    _show_port(ctx, await ctx.api.post(path, body, timeout=LONG), token)
    return 0


async def port_update(ctx: Context, args: argparse.Namespace) -> int:
    """``service port update SERVICE PORT_NAME [--bind B] [--allow CIDR] [--source-token T]``."""
    body, token = _port_body(args)
    body.update(given({"bind": args.bind, "host": args.host, "container": args.container}))
    if not body:
        raise CliError("nothing to change: give an option (see --help)", exit_code=2)
    path = f"{PATH}{segment(args.service)}/ports/{segment(args.port_name)}"
    _show_port(ctx, await ctx.api.request("PATCH", path, body=body, timeout=LONG), token)
    return 0


async def port_remove(ctx: Context, args: argparse.Namespace) -> int:
    """``service port remove SERVICE PORT_NAME``."""
    path = f"{PATH}{segment(args.service)}/ports/{segment(args.port_name)}"
    await ctx.api.request("DELETE", path, timeout=LONG)
    return show_deleted(ctx, "port", f"{args.service}/{args.port_name}")


async def port_list(ctx: Context, args: argparse.Namespace) -> int:
    """``service port list SERVICE``."""
    items = await all_items(ctx, f"{PATH}{segment(args.service)}/ports", {})
    ctx.show(items if ctx.json else [port_row(p) for p in items], PORT_COLUMNS)
    return 0


async def port_check(ctx: Context, args: argparse.Namespace) -> int:
    """``service port check PORT [BIND]``: exit 0 when free, 1 when not."""
    params = {"port": str(args.port), "bind": args.bind, "protocol": args.protocol or "tcp"}
    answer = await ctx.api.get(PATH + "ports/check", params)
    if ctx.json:
        ctx.show(answer)
    else:
        where = f"{answer['bind']}:{answer['port']}/{answer['protocol']}"
        verdict = "available" if answer["available"] else "not available"
        reason = f": {answer['reason']}" if answer["reason"] else ""
        ctx.out.write(f"{where} is {verdict}{reason}\n")
    return 0 if answer["available"] else 1


async def port_available(ctx: Context, args: argparse.Namespace) -> int:
    """``service port available``: the free automatic ranges."""
    answer = await ctx.api.get(PATH + "ports/available")
    if ctx.json:
        ctx.show(answer)
        return 0
    ranges = [f"{r['first']}-{r['last']}" if r["first"] != r["last"] else str(r["first"])
              for r in answer["ranges"]]  # fmt: skip
    ctx.out.write(f"free ranges: {', '.join(ranges) or 'none'}\n")
    ctx.out.write(f"restricted: {', '.join(map(str, answer['restricted'])) or 'none'}\n")
    ctx.out.write(f"reserved by services: {answer['reserved']}\n")
    return 0


def _port_options(parser: argparse.ArgumentParser) -> None:
    """Options of port add and update."""
    parser.add_argument("--container", type=int, metavar="PORT", help="container port")
    parser.add_argument("--protocol", choices=("tcp", "udp"))
    parser.add_argument("--description", metavar="TEXT")
    parser.add_argument(
        "--allow", action="append", metavar="CIDR",
        help="only clients from this network (repeatable); the daemon checks them",
    )  # fmt: skip
    parser.add_argument(
        "--source-token", metavar="TOKEN",
        help="clients must send it (X-Port-Token or Authorization: Bearer); 'generate' makes "
        "one, 'none' removes it",
    )  # fmt: skip


def add_port_commands(services: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``service port add|update|remove|list|check|available``."""
    ports = group(services, "port", "manage the ports of Docker services")
    parser = command(ports, "add", port_add, "add a port: SERVICE's PORT on BIND:PORT")
    parser.add_argument("service", metavar="SERVICE")
    parser.add_argument("port", type=int, metavar="PORT", help="host port (0: pick one)")
    parser.add_argument("bind", metavar="BIND", nargs="?", default="127.0.0.1")
    parser.add_argument("--name", dest="port_name", metavar="NAME", help="default: PORT")
    _port_options(parser)

    parser = command(ports, "update", port_update, "change a port (token, networks, bind ...)")
    parser.add_argument("service", metavar="SERVICE")
    parser.add_argument("port_name", metavar="PORT_NAME")
    parser.add_argument("--bind", metavar="ADDRESS")
    parser.add_argument("--host", type=int, metavar="PORT", help="host port")
    _port_options(parser)

    parser = command(ports, "remove", port_remove, "remove a port (its host port is released)")
    parser.add_argument("service", metavar="SERVICE")
    parser.add_argument("port_name", metavar="PORT_NAME")

    parser = command(ports, "list", port_list, "list a Docker service's ports")
    parser.add_argument("service", metavar="SERVICE")

    parser = command(ports, "check", port_check, "is PORT free on BIND, and why not (exit 1)")
    parser.add_argument("port", type=int, metavar="PORT")
    parser.add_argument("bind", metavar="BIND", nargs="?", default="127.0.0.1")
    parser.add_argument("--protocol", choices=("tcp", "udp"))

    command(ports, "available", port_available, "the free ranges of automatic host ports")
