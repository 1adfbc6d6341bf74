"""``oauthproxyctl auth``: endpoint auth rules, and the auth of routes and proxies.

- ``auth list|create|show|update|delete|test``: the rules at ``/auth/endpoints``
  (``create PATH_PATTERN AUTH_TYPE``, ``test PATH --method M``);
- ``auth route-auth set|show|clear ROUTE_ID``: ``/routes/{route_id}/auth``;
- ``auth proxy-auth set|show|clear HOSTNAME``: ``/proxy/targets/{hostname}/auth``.

Records are deleted (``delete``); settings of a record are removed (``clear``).

Lists take ``a,b`` (``--methods GET,POST``); options left out are not sent, so
``update`` and ``set`` change only what is given.
"""

from __future__ import annotations

import argparse
from typing import Any

from oauthproxy.cli.context import Context, command, group
from oauthproxy.cli.paging import all_items, comma_list, given, segment, show_cleared, show_deleted

PATH = "/auth/endpoints"
COLUMNS = ("config_id", "path_pattern", "methods", "auth_type", "priority", "owner")
AUTH_TYPES = ("none", "bearer", "admin", "oauth")


def _csv(text: str | None) -> list[str] | None:
    """A comma-separated option as a list (None when not given)."""
    return None if text is None else comma_list(text)


def _rule_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The rule fields given as options."""
    methods = _csv(args.methods)
    return given(
        {
            "methods": None if methods is None else [m.upper() for m in methods],
            "oauth_scopes": _csv(args.scopes),
            "oauth_allowed_users": _csv(args.users),
            "priority": args.priority,
            "description": args.description,
        }
    )


async def list_rules(ctx: Context, args: argparse.Namespace) -> int:
    """``auth list``: the rules, highest priority first."""
    ctx.show(await all_items(ctx, PATH, given({"auth_type": args.auth_type})), COLUMNS)
    return 0


async def create(ctx: Context, args: argparse.Namespace) -> int:
    """``auth create PATH_PATTERN AUTH_TYPE [options]``."""
    body = {"path_pattern": args.path_pattern, "auth_type": args.auth_type, **_rule_fields(args)}
    if args.id is not None:
        body["config_id"] = args.id
    ctx.show(await ctx.api.post(PATH, body))
    return 0


async def show(ctx: Context, args: argparse.Namespace) -> int:
    """``auth show CONFIG_ID``."""
    ctx.show(await ctx.api.get(f"{PATH}/{segment(args.config_id)}"))
    return 0


async def update(ctx: Context, args: argparse.Namespace) -> int:
    """``auth update CONFIG_ID [options]``: only the options given change."""
    body = {
        **given({"path_pattern": args.path_pattern, "auth_type": args.auth_type}),
        **_rule_fields(args),
    }
    ctx.show(await ctx.api.put(f"{PATH}/{segment(args.config_id)}", body))
    return 0


async def delete(ctx: Context, args: argparse.Namespace) -> int:
    """``auth delete CONFIG_ID``."""
    await ctx.api.delete(f"{PATH}/{segment(args.config_id)}")
    return show_deleted(ctx, "auth rule", args.config_id)


async def test(ctx: Context, args: argparse.Namespace) -> int:
    """``auth test PATH [--method M]``: which rule decides, and the auth that applies."""
    body = {"path": args.path, "method": args.method.upper()}
    ctx.show(await ctx.api.post(f"{PATH}/test", body))
    return 0


def _route_path(args: argparse.Namespace) -> str:
    """``/routes/{route_id}/auth``."""
    return f"/routes/{segment(args.route_id)}/auth"


def _proxy_path(args: argparse.Namespace) -> str:
    """``/proxy/targets/{hostname}/auth``."""
    return f"/proxy/targets/{segment(args.hostname)}/auth"


async def route_set(ctx: Context, args: argparse.Namespace) -> int:
    """``auth route-auth set ROUTE_ID [options]``."""
    body = given(
        {
            "auth_type": args.auth_type,
            "override_proxy_auth": args.override_proxy_auth,
            "oauth_scopes": _csv(args.scopes),
            "oauth_allowed_users": _csv(args.users),
        }
    )
    ctx.show(await ctx.api.put(_route_path(args), body))
    return 0


async def route_show(ctx: Context, args: argparse.Namespace) -> int:
    """``auth route-auth show ROUTE_ID``."""
    ctx.show(await ctx.api.get(_route_path(args)))
    return 0


async def route_clear(ctx: Context, args: argparse.Namespace) -> int:
    """``auth route-auth clear ROUTE_ID``: the proxy's auth applies again."""
    await ctx.api.delete(_route_path(args))
    return show_cleared(ctx, "auth", f"route {args.route_id}")


async def proxy_set(ctx: Context, args: argparse.Namespace) -> int:
    """``auth proxy-auth set HOSTNAME [options]``."""
    body = given(
        {
            "auth_type": args.auth_type,
            "auth_proxy": args.auth_proxy,
            "auth_mode": args.auth_mode,
            "required_users": _csv(args.users),
            "required_scopes": _csv(args.scopes),
            "allowed_audiences": _csv(args.audiences),
            "excluded_paths": _csv(args.excluded_paths),
        }
    )
    ctx.show(await ctx.api.post(_proxy_path(args), body))
    return 0


async def proxy_show(ctx: Context, args: argparse.Namespace) -> int:
    """``auth proxy-auth show HOSTNAME``."""
    ctx.show(await ctx.api.get(_proxy_path(args)))
    return 0


async def proxy_clear(ctx: Context, args: argparse.Namespace) -> int:
    """``auth proxy-auth clear HOSTNAME``: the proxy becomes open."""
    await ctx.api.delete(_proxy_path(args))
    return show_cleared(ctx, "auth", args.hostname)


def _rule_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``create`` and ``update``."""
    parser.add_argument("--methods", metavar="M,M", help="HTTP methods, or '*' (default *)")
    parser.add_argument("--scopes", metavar="S,S", help="OAuth scopes required (oauth)")
    parser.add_argument("--users", metavar="U,U", help="GitHub users allowed (oauth)")
    parser.add_argument("--priority", type=int, help="higher wins (default 50)")
    parser.add_argument("--description")


def _register_rules(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The rule commands."""
    parser = command(sub, "list", list_rules, "list endpoint auth rules")
    parser.add_argument("--auth-type", choices=AUTH_TYPES)

    parser = command(sub, "create", create, "create an endpoint auth rule")
    parser.add_argument("path_pattern", metavar="PATH_PATTERN", help="e.g. '/tokens/*'")
    parser.add_argument("auth_type", metavar="AUTH_TYPE", choices=AUTH_TYPES)
    parser.add_argument("--id", help="the rule's id (default: generated)")
    _rule_options(parser)

    parser = command(sub, "show", show, "show one rule")
    parser.add_argument("config_id", metavar="CONFIG_ID")

    parser = command(sub, "update", update, "change a rule (only the options given)")
    parser.add_argument("config_id", metavar="CONFIG_ID")
    parser.add_argument("--path-pattern", metavar="PATTERN")
    parser.add_argument("--auth-type", choices=AUTH_TYPES)
    _rule_options(parser)

    parser = command(sub, "delete", delete, "delete a rule")
    parser.add_argument("config_id", metavar="CONFIG_ID")

    parser = command(sub, "test", test, "show which rule decides PATH and the auth applied")
    parser.add_argument("path", metavar="PATH", help="e.g. /tokens/ci")
    parser.add_argument("--method", default="GET", help="HTTP method (default GET)")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``auth`` with its rule, ``route-auth`` and ``proxy-auth`` commands."""
    sub = group(commands, "auth", "endpoint auth rules, route auth and proxy auth")
    _register_rules(sub)

    routes = group(sub, "route-auth", "a route's auth (/routes/ROUTE_ID/auth)")
    parser = command(routes, "set", route_set, "set a route's auth (only the options given)")
    parser.add_argument("route_id", metavar="ROUTE_ID")
    parser.add_argument("--auth-type", choices=AUTH_TYPES)
    parser.add_argument(
        "--override-proxy-auth", action=argparse.BooleanOptionalAction, default=None
    )
    parser.add_argument("--scopes", metavar="S,S", help="OAuth scopes required")
    parser.add_argument("--users", metavar="U,U", help="GitHub users allowed")
    parser = command(routes, "show", route_show, "show a route's auth")
    parser.add_argument("route_id", metavar="ROUTE_ID")
    parser = command(routes, "clear", route_clear, "remove a route's auth")
    parser.add_argument("route_id", metavar="ROUTE_ID")

    proxies = group(sub, "proxy-auth", "a proxy's auth (/proxy/targets/HOSTNAME/auth)")
    parser = command(proxies, "set", proxy_set, "set a proxy's auth (only the options given)")
    parser.add_argument("hostname", metavar="HOSTNAME")
    parser.add_argument("--auth-type", choices=AUTH_TYPES)
    parser.add_argument("--auth-proxy", metavar="HOSTNAME", help="the authorization server host")
    parser.add_argument("--auth-mode", choices=("redirect", "forward", "passthrough"))
    parser.add_argument("--users", metavar="U,U", help="GitHub users allowed")
    parser.add_argument("--scopes", metavar="S,S", help="OAuth scopes required")
    parser.add_argument("--audiences", metavar="A,A", help="token audiences accepted")
    parser.add_argument("--excluded-paths", metavar="P,P", help="paths left open")
    parser = command(proxies, "show", proxy_show, "show a proxy's auth")
    parser.add_argument("hostname", metavar="HOSTNAME")
    parser = command(proxies, "clear", proxy_clear, "remove a proxy's auth (it becomes open)")
    parser.add_argument("hostname", metavar="HOSTNAME", help="the proxy's hostname")
