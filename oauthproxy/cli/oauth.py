"""``oauthproxyctl oauth``: the authorization server's state at ``/oauth/`` (admin token).

``clients`` lists, shows, pre-registers or deletes OAuth clients; ``sessions`` lists
or revokes token families (one login of a user with a client); ``tokens`` lists or
revokes live access tokens; ``revoke`` revokes everything of a user and/or a client;
``metrics`` shows the counters; ``initial-tokens`` lists, creates or deletes the
initial access tokens closed registration needs (``OAUTH_REGISTRATION=token``);
``keys`` lists the signing keys and ``keys rotate`` publishes the next one (it signs
after the JWKS cache time; the old one retires once its tokens have expired);
``health`` (the seed's ``oauth-health``) and ``resources`` are read-only views.
Revocations reach every daemon within a second.
"""

from __future__ import annotations

import argparse

from oauthproxy.cli.context import CliError, Context, command, group
from oauthproxy.cli.paging import all_items, given, segment, show_deleted

CLIENT_COLUMNS = ("client_id", "client_name", "source", "last_used_at")
SESSION_COLUMNS = ("session_id", "username", "client_id", "created_at", "revoked_at")
TOKEN_COLUMNS = ("jti", "username", "client_id", "expires_at", "revoked")
INITIAL_TOKEN_COLUMNS = ("name", "uses", "max_uses", "expires_at", "created_at")
KEY_COLUMNS = ("kid", "state", "activates_at", "retires_at", "created_at")
RESOURCE_COLUMNS = ("hostname", "resource", "auth_mode", "authorization_servers")


async def clients(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth clients [list|show ID|delete ID]``."""
    if args.action == "list":
        ctx.show(
            await all_items(ctx, "/oauth/clients", given({"source": args.source})), CLIENT_COLUMNS
        )
        return 0
    if args.action == "create":
        return await create_client(ctx, args)
    if not args.client_id:
        raise CliError(f"oauth clients {args.action} needs a CLIENT_ID", exit_code=2)
    path = "/oauth/clients/" + segment(args.client_id)
    if args.action == "show":
        ctx.show(await ctx.api.get(path))
        return 0
    await ctx.api.delete(path)
    return show_deleted(ctx, "OAuth client", args.client_id)


async def create_client(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth clients create --name N --redirect-uri U...``: a confidential one's secret once."""
    if not args.name or not args.redirect_uri:
        raise CliError("oauth clients create needs --name and --redirect-uri", exit_code=2)
    body = {
        "client_name": args.name,
        "redirect_uris": args.redirect_uri,
        "token_endpoint_auth_method": "client_secret_basic" if args.confidential else "none",
    }
    ctx.show(await ctx.api.post("/oauth/clients", body))
    return 0


async def sessions(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth sessions [list|revoke ID]``."""
    if args.action == "list":
        filters = given({"username": args.user, "client_id": args.client})
        ctx.show(await all_items(ctx, "/oauth/sessions", filters), SESSION_COLUMNS)
        return 0
    if not args.session_id:
        raise CliError("oauth sessions revoke needs a SESSION_ID", exit_code=2)
    await ctx.api.delete("/oauth/sessions/" + segment(args.session_id))
    return show_deleted(ctx, "OAuth session", args.session_id)


async def tokens(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth tokens [list|revoke JTI]``."""
    if args.action == "list":
        filters = given({"username": args.user, "client_id": args.client})
        ctx.show(await all_items(ctx, "/oauth/tokens", filters), TOKEN_COLUMNS)
        return 0
    if not args.jti:
        raise CliError("oauth tokens revoke needs a JTI", exit_code=2)
    await ctx.api.delete("/oauth/tokens/" + segment(args.jti))
    return show_deleted(ctx, "OAuth access token", args.jti)


async def revoke(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth revoke [--user U] [--client C]``: everything of a user and/or a client."""
    body = {k: v for k, v in (("username", args.user), ("client_id", args.client)) if v}
    if not body:
        raise CliError("name --user, --client or both", exit_code=2)
    ctx.show(await ctx.api.post("/oauth/revoke", body))
    return 0


async def initial_tokens(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth initial-tokens [list|create NAME|delete NAME]``: the token is shown once."""
    if args.action == "list":
        ctx.show(await all_items(ctx, "/oauth/initial-tokens", {}), INITIAL_TOKEN_COLUMNS)
        return 0
    if not args.name:
        raise CliError(f"oauth initial-tokens {args.action} needs a NAME", exit_code=2)
    if args.action == "create":
        body = {
            "name": args.name,
            **given({"max_uses": args.max_uses, "expires_in": args.expires_in}),
        }
        ctx.show(await ctx.api.post("/oauth/initial-tokens", body))
        return 0
    await ctx.api.delete("/oauth/initial-tokens/" + segment(args.name))
    return show_deleted(ctx, "initial access token", args.name)


async def keys(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth keys [list|rotate]``: the signing keys; rotate publishes the next one."""
    if args.action == "list":
        ctx.show(await all_items(ctx, "/oauth/keys", {}), KEY_COLUMNS)
        return 0
    body = given({"activate_in": args.activate_in})
    ctx.show(await ctx.api.post("/oauth/keys/rotate", body))
    return 0


async def health(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth health`` (the seed's ``oauth-health``): the authorization server's state."""
    ctx.show(await ctx.api.get("/oauth/health"))
    return 0


async def resources(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth resources [HOSTNAME]``: the OAuth-protected proxies, read-only."""
    if args.hostname:
        ctx.show(await ctx.api.get("/resources/" + segment(args.hostname)))
        return 0
    ctx.show(await all_items(ctx, "/resources", {}), RESOURCE_COLUMNS)
    return 0


async def metrics(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth metrics``."""
    ctx.show(await ctx.api.get("/oauth/metrics"))
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``oauth`` group's commands (see the module docstring)."""
    sub = group(commands, "oauth", "the OAuth authorization server's clients, sessions, tokens")

    parser = command(sub, "clients", clients, "list, show, create or delete OAuth clients")
    parser.add_argument(
        "action", nargs="?", default="list", choices=("list", "show", "create", "delete")
    )
    parser.add_argument("client_id", nargs="?", metavar="CLIENT_ID")
    parser.add_argument("--source", choices=("static", "dcr", "cimd"), help="only this kind")
    parser.add_argument("--name", help="create: the client's name")
    parser.add_argument("--redirect-uri", action="append", help="create: a redirect URI")
    parser.add_argument(
        "--confidential", action="store_true", help="create: issue a client secret (shown once)"
    )

    parser = command(sub, "sessions", sessions, "list or revoke OAuth sessions")
    parser.add_argument("action", nargs="?", default="list", choices=("list", "revoke"))
    parser.add_argument("session_id", nargs="?", metavar="SESSION_ID")
    parser.add_argument("--user", help="only this GitHub login")
    parser.add_argument("--client", help="only this client_id")

    parser = command(sub, "tokens", tokens, "list or revoke live OAuth access tokens")
    parser.add_argument("action", nargs="?", default="list", choices=("list", "revoke"))
    parser.add_argument("jti", nargs="?", metavar="JTI")
    parser.add_argument("--user", help="only this GitHub login")
    parser.add_argument("--client", help="only this client_id")

    parser = command(sub, "revoke", revoke, "revoke every session and token of a user/client")
    parser.add_argument("--user", help="GitHub login")
    parser.add_argument("--client", help="client_id")

    command(sub, "metrics", metrics, "show OAuth counters")
    command(sub, "health", health, "the authorization server's state and what to fix")
    parser = command(sub, "resources", resources, "list OAuth-protected resources (read-only)")
    parser.add_argument("hostname", nargs="?", metavar="HOSTNAME", help="show this one")

    parser = command(sub, "keys", keys, "list the signing keys, or rotate to a new one")
    parser.add_argument("action", nargs="?", default="list", choices=("list", "rotate"))
    parser.add_argument(
        "--activate-in",
        type=int,
        metavar="SECONDS",
        help="rotate: seconds until the new key signs (default 300, the JWKS cache time)",
    )

    parser = command(
        sub,
        "initial-tokens",
        initial_tokens,
        "initial access tokens for closed registration (OAUTH_REGISTRATION=token)",
    )
    parser.add_argument("action", nargs="?", default="list", choices=("list", "create", "delete"))
    parser.add_argument("name", nargs="?", metavar="NAME")
    parser.add_argument("--max-uses", type=int, metavar="N", help="create: registrations allowed")
    parser.add_argument("--expires-in", type=int, metavar="SECONDS", help="create: lifetime")
