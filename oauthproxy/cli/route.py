"""``oauthproxyctl route``: create, list, show, update and delete routes (``/routes/``).

The seed's ``route-create PATH TARGET_TYPE TARGET_VALUE`` (e.g. ``route create /api/
service backend-api``): TARGET_TYPE is ``url``, ``service``, ``port`` or ``proxy``.
``--proxy HOST`` (repeatable) scopes the route to those proxies; without it the
route is global, which only the admin token may create.
"""

from __future__ import annotations

import argparse
from typing import Any

from oauthproxy.cli.context import CliError, Context, command, group
from oauthproxy.cli.paging import (
    all_items,
    comma_list,
    for_people,
    given,
    segment,
    show_deleted,
)

PATH = "/routes/"
TARGET_TYPES = ("url", "service", "port", "proxy")
COLUMNS = (
    "route_id",
    "priority",
    "path_pattern",
    "match_type",
    "methods",
    "target_type",
    "target_value",
    "scope",
    "proxy_hostnames",
    "enabled",
    "owner",
)


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    """The route fields given on the command line (shared by create and update)."""
    body = given(
        {
            "match_type": args.match_type,
            "priority": args.priority,
            "description": args.description,
            "enabled": args.enabled,
        }
    )
    if args.methods is not None:
        body["methods"] = comma_list(args.methods) or ["*"]
    if args.proxies:
        body["scope"] = "proxy"
        body["proxy_hostnames"] = args.proxies
    return body


async def create(ctx: Context, args: argparse.Namespace) -> int:
    """``route create PATH TARGET_TYPE TARGET_VALUE [options]``."""
    body = {
        "path_pattern": args.path,
        "target_type": args.target_type,
        "target_value": args.target_value,
        **given({"route_id": args.route_id}),
        **_fields(args),
    }
    show_route(ctx, await ctx.api.post(PATH, body))
    return 0


async def list_routes(ctx: Context, args: argparse.Namespace) -> int:
    """``route list``: the token's routes, in the order the gateway tries them."""
    filters = given({"owner": args.owner, "target_type": args.target_type})
    routes = await all_items(ctx, PATH, filters)
    ctx.show(routes if ctx.json else [people_view(r) for r in routes], COLUMNS)
    return 0


async def show(ctx: Context, args: argparse.Namespace) -> int:
    """``route show ROUTE_ID``."""
    show_route(ctx, await ctx.api.get(PATH + segment(args.route_id)))
    return 0


async def update(ctx: Context, args: argparse.Namespace) -> int:
    """``route update ROUTE_ID [options]``: change only the options given."""
    body = {
        **given(
            {
                "path_pattern": args.path,
                "target_type": args.target_type,
                "target_value": args.target_value,
            }
        ),
        **_fields(args),
    }
    if args.global_scope and args.proxies:
        raise CliError("--global and --proxy exclude each other", exit_code=2)
    if args.global_scope:
        body["scope"] = "global"
        body["proxy_hostnames"] = []
    if not body:
        raise CliError("nothing to change: give at least one option (see --help)", exit_code=2)
    show_route(ctx, await ctx.api.request("PATCH", PATH + segment(args.route_id), body=body))
    return 0


async def delete(ctx: Context, args: argparse.Namespace) -> int:
    """``route delete ROUTE_ID``."""
    await ctx.api.delete(PATH + segment(args.route_id))
    return show_deleted(ctx, "route", args.route_id)


def people_view(route: Any) -> Any:
    """A route as people read it: ``*`` for "every method"."""
    if isinstance(route, dict) and route.get("methods") == []:
        return {**route, "methods": ["*"]}
    return route


def show_route(ctx: Context, route: Any) -> None:
    """Print one route (JSON output is the API's, unchanged)."""
    ctx.show(route if ctx.json else for_people(people_view(route)))


def _options(parser: argparse.ArgumentParser) -> None:
    """The options create and update share."""
    kinds = parser.add_mutually_exclusive_group()
    for flag, kind in (("--prefix", "prefix"), ("--exact", "exact"), ("--regex", "regex")):
        kinds.add_argument(
            flag,
            dest="match_type",
            action="store_const",
            const=kind,
            help={
                "prefix": "PATH is a path prefix (the default)",
                "exact": "PATH is an exact path",
                "regex": "PATH is a regular expression",
            }[kind],
        )
    parser.add_argument("--priority", type=int, metavar="N", help="0-1000, higher first (50)")
    parser.add_argument("--methods", metavar="GET,POST", help="methods matched ('*' = all)")
    parser.add_argument(
        "--proxy",
        dest="proxies",
        action="append",
        metavar="HOST",
        help="apply only to this proxy (repeat); without it the route is global",
    )
    parser.add_argument("--description", metavar="TEXT")
    parser.add_argument(
        "--enabled", action=argparse.BooleanOptionalAction, help="whether the route is active"
    )


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``route create|list|show|update|delete``."""
    sub = group(commands, "route", "manage routes (path rules with their own targets)")

    parser = command(sub, "create", create, "create a route: PATH → TARGET_TYPE TARGET_VALUE")
    parser.add_argument("path", metavar="PATH", help="path prefix such as /api/ (or a regex)")
    parser.add_argument("target_type", metavar="TARGET_TYPE", choices=TARGET_TYPES)
    parser.add_argument(
        "target_value",
        metavar="TARGET_VALUE",
        help="a URL, an external service name, a port, or a proxy hostname",
    )
    parser.add_argument("--id", dest="route_id", metavar="ROUTE_ID", help="default: generated")
    _options(parser)

    parser = command(sub, "list", list_routes, "list routes, highest priority first")
    parser.add_argument("--owner", help="only routes created by this token name")
    parser.add_argument("--target-type", choices=TARGET_TYPES)

    parser = command(sub, "show", show, "show one route")
    parser.add_argument("route_id", metavar="ROUTE_ID")

    parser = command(sub, "update", update, "change a route (only the options given)")
    parser.add_argument("route_id", metavar="ROUTE_ID")
    parser.add_argument("--path", metavar="PATH", help="new path pattern")
    parser.add_argument("--target-type", choices=TARGET_TYPES)
    parser.add_argument("--target-value", metavar="VALUE")
    parser.add_argument(
        "--global", dest="global_scope", action="store_true", help="apply to every proxy"
    )
    _options(parser)

    parser = command(sub, "delete", delete, "delete a route")
    parser.add_argument("route_id", metavar="ROUTE_ID")
