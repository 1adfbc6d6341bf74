"""``oauthproxyctl proxy …``: a proxy's OAuth protection and OAuth settings.

Adds to the ``proxy`` group of :mod:`oauthproxy.cli.proxy`:

- ``proxy auth-enable HOSTNAME AUTH_HOST [MODE] [--users a,b] [--scopes x,y]`` and
  ``proxy auth-disable HOSTNAME`` (the seed's ``proxy-auth-enable``/``-disable``) over
  ``/proxy/targets/HOSTNAME/auth``;
- ``proxy oauth-server set|show|clear`` (the seed's ``proxy-oauth-server-set`` …) over
  ``/proxy/targets/HOSTNAME/oauth-server``;
- ``proxy resource set|show|clear`` over ``/proxy/targets/HOSTNAME/resource``;
- ``proxy github-oauth set|show|clear`` over ``/proxy/targets/HOSTNAME/github-oauth``
  (the secret comes from ``--client-secret`` or, kept out of the process list, from
  standard input with ``--client-secret-stdin``).

Lists are comma-separated (``read,write``); an empty list option (``--scopes ''``)
sends null, which returns that list to the server's default.  Options left out are
not sent, so ``set`` changes only what is given.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TypeAlias

from oauthproxy.cli.context import CliError, Context, command, group
from oauthproxy.cli.paging import comma_list, given, segment, show_cleared

PATH = "/proxy/targets/"
#: where a group's commands go (subscripted only for the type checker)
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _path(hostname: str, leaf: str) -> str:
    """``/proxy/targets/HOSTNAME/LEAF``."""
    return f"{PATH}{segment(hostname)}/{leaf}"


def _list(text: str | None) -> list[str] | None:
    """A comma-separated option as a list (None when not given)."""
    return None if text is None else comma_list(text)


def _custom(text: str | None, option: str = "--custom-metadata") -> dict[str, Any] | None:
    """A JSON object option (a usage error if it is not one)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise CliError(f"{option}: not JSON", exit_code=2) from None
    if not isinstance(value, dict):
        raise CliError(f"{option}: must be a JSON object", exit_code=2)
    return value


def auth_body(args: argparse.Namespace) -> dict[str, Any]:
    """The ``/auth`` body of ``proxy auth-enable``."""
    return {
        "auth_type": "oauth",
        "auth_proxy": args.auth_host,
        **given(
            {
                "auth_mode": args.mode,
                "required_users": _list(args.users),
                "required_scopes": _list(args.scopes),
                "allowed_audiences": _list(args.audiences),
                "excluded_paths": _list(args.excluded_paths),
            }
        ),
    }


def server_body(args: argparse.Namespace) -> dict[str, Any]:
    """The ``/oauth-server`` body of ``proxy oauth-server set`` (only the options given)."""
    lists = {
        "scopes_supported": args.scopes,
        "grant_types_supported": args.grant_types,
        "response_types_supported": args.response_types,
        "token_endpoint_auth_methods_supported": args.auth_methods,
        "claims_supported": args.claims,
    }
    # '' sends null: that list returns to the server's default
    body: dict[str, Any] = {
        name: comma_list(text) or None for name, text in lists.items() if text is not None
    }
    if args.issuer is not None:
        body["issuer"] = args.issuer or None
    body.update(
        given(
            {
                "pkce_required": args.pkce_required,
                "custom_metadata": _custom(args.custom_metadata),
                "override_defaults": args.override_defaults,
            }
        )
    )
    return body


def resource_body(args: argparse.Namespace) -> dict[str, Any]:
    """The ``/resource`` body of ``proxy resource set`` (only the options given)."""
    body = given(
        {
            "authorization_servers": _list(args.authorization_servers),
            "scopes_supported": _list(args.scopes),
            "bearer_methods_supported": _list(args.bearer_methods),
            "custom_metadata": _custom(args.custom_metadata),
        }
    )
    # '' clears these: the defaults apply again
    for name, value in (
        ("resource", args.resource),
        ("resource_name", args.name),
        ("resource_documentation", args.documentation),
    ):
        if value is not None:
            body[name] = value or None
    return body


def github_body(args: argparse.Namespace) -> dict[str, Any]:
    """The ``/github-oauth`` body: the client id and, when given, the secret."""
    secret = args.client_secret
    if args.client_secret_stdin:
        if secret is not None:
            raise CliError("give --client-secret or --client-secret-stdin, not both", 2)
        secret = sys.stdin.readline().strip()
        if not secret:
            raise CliError("--client-secret-stdin: standard input had no secret", 2)
    return {"client_id": args.client_id, **given({"client_secret": secret})}


def _setter(leaf: str, build: Any) -> Any:
    """A ``set`` handler POSTing ``build(args)`` to ``leaf``."""

    async def handler(ctx: Context, args: argparse.Namespace) -> int:
        body = build(args)
        if not body:
            raise CliError("nothing to change: give at least one option (see --help)", 2)
        ctx.show(await ctx.api.post(_path(args.hostname, leaf), body))
        return 0

    return handler


def _shower(leaf: str) -> Any:
    """A ``show`` handler for ``leaf``."""

    async def handler(ctx: Context, args: argparse.Namespace) -> int:
        ctx.show(await ctx.api.get(_path(args.hostname, leaf)))
        return 0

    return handler


def _clearer(leaf: str) -> Any:
    """A ``clear`` handler DELETEing ``leaf``."""

    async def handler(ctx: Context, args: argparse.Namespace) -> int:
        await ctx.api.delete(_path(args.hostname, leaf))
        return show_cleared(ctx, leaf, args.hostname.lower())

    return handler


def proxy_group(commands: Commands) -> Commands:
    """The ``proxy`` group's commands (made by :mod:`oauthproxy.cli.proxy`, or here)."""
    parser = commands.choices.get("proxy")
    if parser is not None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action
    return group(commands, "proxy", "manage proxies (virtual hosts) at /proxy/targets/")


def _settings_group(sub: Commands, leaf: str, help: str, build: Any) -> argparse.ArgumentParser:
    """``proxy LEAF set|show|clear``; returns the ``set`` parser for its options."""
    settings = group(sub, leaf, help)
    for name, handler, text in (
        ("show", _shower(leaf), f"show a proxy's {leaf} settings"),
        ("clear", _clearer(leaf), f"remove a proxy's {leaf} settings (defaults apply)"),
    ):
        command(settings, name, handler, text).add_argument("hostname", metavar="HOSTNAME")
    parser = command(settings, "set", _setter(leaf, build), f"set {leaf} (only the options given)")
    parser.add_argument("hostname", metavar="HOSTNAME")
    return parser


def register(commands: Commands) -> None:
    """Add ``proxy auth-enable|auth-disable|oauth-server|resource|github-oauth``."""
    sub = proxy_group(commands)

    parser = command(sub, "auth-enable", _setter("auth", auth_body), "protect a proxy with OAuth")
    parser.add_argument("hostname", metavar="HOSTNAME")
    parser.add_argument(
        "auth_host", metavar="AUTH_HOST", help="where clients log in: the host of the OAuth issuer"
    )
    parser.add_argument(
        "mode", metavar="MODE", nargs="?", choices=("redirect", "forward", "passthrough")
    )
    parser.add_argument("--users", metavar="A,B", help="allowlist: logins, org:ORG, team:ORG/SLUG")
    parser.add_argument("--scopes", metavar="A,B", help="scopes every token must have")
    parser.add_argument("--audiences", metavar="A,B", help="extra accepted token audiences")
    parser.add_argument("--excluded-paths", metavar="A,B", help="paths served without a token")
    parser = command(sub, "auth-disable", _clearer("auth"), "remove a proxy's OAuth protection")
    parser.add_argument("hostname", metavar="HOSTNAME")

    parser = _settings_group(
        sub, "oauth-server", "authorization-server metadata served for a proxy", server_body
    )
    parser.add_argument("--issuer", metavar="URL", help="the issuer ('' = the daemon's)")
    for option, what in (
        ("--scopes", "scopes"),
        ("--grant-types", "grant types"),
        ("--response-types", "response types"),
        ("--auth-methods", "token endpoint auth methods"),
        ("--claims", "claims"),
    ):
        parser.add_argument(option, metavar="A,B", help=f"{what} to advertise ('' = default)")
    switch = argparse.BooleanOptionalAction
    parser.add_argument("--pkce-required", action=switch, help="always on (OAuth 2.1)")
    parser.add_argument("--custom-metadata", metavar="JSON", help="extra fields, a JSON object")
    parser.add_argument(
        "--override-defaults", action=switch, help="lists replace (else add to) the defaults"
    )

    parser = _settings_group(
        sub, "resource", "protected-resource (RFC 9728) metadata of a proxy", resource_body
    )
    parser.add_argument("--resource", metavar="URL", help="resource URI on the proxy's host")
    parser.add_argument("--authorization-servers", metavar="A,B", help="issuer URLs")
    parser.add_argument("--scopes", metavar="A,B", help="scopes to advertise")
    parser.add_argument("--bearer-methods", metavar="header", help="only 'header' (MCP-16)")
    parser.add_argument("--name", metavar="TEXT", help="resource_name ('' = none)")
    parser.add_argument("--documentation", metavar="URL", help="resource_documentation URL")
    parser.add_argument("--custom-metadata", metavar="JSON", help="extra fields, a JSON object")

    parser = _settings_group(
        sub, "github-oauth", "a proxy's own GitHub OAuth app (secret write-only)", github_body
    )
    parser.add_argument("client_id", metavar="CLIENT_ID")
    parser.add_argument("--client-secret", metavar="SECRET", help="visible to ps: prefer stdin")
    parser.add_argument(
        "--client-secret-stdin", action="store_true", help="read the secret from standard input"
    )
