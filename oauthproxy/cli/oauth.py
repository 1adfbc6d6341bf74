"""``oauthproxyctl oauth``: the authorization server's state at ``/oauth/`` (admin token).

Each kind of thing is a group with its verbs as commands, like every other group:

- ``clients list|show|create|delete``: OAuth clients (a confidential one's secret
  is shown once);
- ``sessions list|revoke`` and ``tokens list|revoke``: token families (one login
  of a user with a client) and live access tokens;
- ``revoke --user U --client C``: everything of a user and/or a client;
- ``initial-tokens list|create|delete``: the initial access tokens closed
  registration needs (``OAUTH_REGISTRATION=token``), each shown once;
- ``keys list|rotate``: the signing keys; ``rotate`` publishes the next one (it
  signs after the JWKS cache time; the old one retires once its tokens expired);
- ``metrics``, ``health`` (the seed's ``oauth-health``) and ``resources list|show``:
  read-only views.

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


async def list_clients(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth clients list [--source S]``."""
    ctx.show(await all_items(ctx, "/oauth/clients", given({"source": args.source})), CLIENT_COLUMNS)
    return 0


async def show_client(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth clients show CLIENT_ID``."""
    ctx.show(await ctx.api.get("/oauth/clients/" + segment(args.client_id)))
    return 0


async def delete_client(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth clients delete CLIENT_ID``: its sessions and tokens are revoked too."""
    await ctx.api.delete("/oauth/clients/" + segment(args.client_id))
    return show_deleted(ctx, "OAuth client", args.client_id)


async def create_client(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth clients create NAME --redirect-uri U...``: a confidential one's secret once."""
    body = {
        "client_name": args.name,
        "redirect_uris": args.redirect_uri,
        "token_endpoint_auth_method": "client_secret_basic" if args.confidential else "none",
    }
    ctx.show(await ctx.api.post("/oauth/clients", body))
    return 0


async def list_sessions(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth sessions list [--user U] [--client C]``."""
    filters = given({"username": args.user, "client_id": args.client})
    ctx.show(await all_items(ctx, "/oauth/sessions", filters), SESSION_COLUMNS)
    return 0


async def revoke_session(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth sessions revoke SESSION_ID``."""
    await ctx.api.delete("/oauth/sessions/" + segment(args.session_id))
    return show_deleted(ctx, "OAuth session", args.session_id, verb="revoked")


async def list_tokens(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth tokens list [--user U] [--client C]``."""
    filters = given({"username": args.user, "client_id": args.client})
    ctx.show(await all_items(ctx, "/oauth/tokens", filters), TOKEN_COLUMNS)
    return 0


async def revoke_token(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth tokens revoke JTI``."""
    await ctx.api.delete("/oauth/tokens/" + segment(args.jti))
    return show_deleted(ctx, "OAuth access token", args.jti, verb="revoked")


async def revoke(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth revoke [--user U] [--client C]``: everything of a user and/or a client."""
    body = {k: v for k, v in (("username", args.user), ("client_id", args.client)) if v}
    if not body:
        raise CliError("name --user, --client or both", exit_code=2)
    ctx.show(await ctx.api.post("/oauth/revoke", body))
    return 0


async def list_initial_tokens(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth initial-tokens list``."""
    ctx.show(await all_items(ctx, "/oauth/initial-tokens", {}), INITIAL_TOKEN_COLUMNS)
    return 0


async def create_initial_token(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth initial-tokens create NAME [--max-uses N] [--expires-in S]``: shown once."""
    body = {"name": args.name, **given({"max_uses": args.max_uses, "expires_in": args.expires_in})}
    ctx.show(await ctx.api.post("/oauth/initial-tokens", body))
    return 0


async def delete_initial_token(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth initial-tokens delete NAME``."""
    await ctx.api.delete("/oauth/initial-tokens/" + segment(args.name))
    return show_deleted(ctx, "initial access token", args.name)


async def list_keys(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth keys list``: the signing keys and their states."""
    ctx.show(await all_items(ctx, "/oauth/keys", {}), KEY_COLUMNS)
    return 0


async def rotate_keys(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth keys rotate [--activate-in S]``: publish the next signing key."""
    ctx.show(await ctx.api.post("/oauth/keys/rotate", given({"activate_in": args.activate_in})))
    return 0


async def health(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth health`` (the seed's ``oauth-health``): the authorization server's state."""
    ctx.show(await ctx.api.get("/oauth/health"))
    return 0


async def list_resources(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth resources list``: the OAuth-protected proxies, read-only."""
    ctx.show(await all_items(ctx, "/resources", {}), RESOURCE_COLUMNS)
    return 0


async def show_resource(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth resources show HOSTNAME``."""
    ctx.show(await ctx.api.get("/resources/" + segment(args.hostname)))
    return 0


async def metrics(ctx: Context, args: argparse.Namespace) -> int:
    """``oauth metrics``."""
    ctx.show(await ctx.api.get("/oauth/metrics"))
    return 0


def _filters(parser: argparse.ArgumentParser) -> None:
    """``--user`` and ``--client`` of the session and token lists."""
    parser.add_argument("--user", metavar="LOGIN", help="only this GitHub login")
    parser.add_argument("--client", metavar="CLIENT_ID", help="only this client")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``oauth`` group's commands (see the module docstring)."""
    sub = group(commands, "oauth", "the OAuth authorization server's clients, sessions, tokens")

    clients = group(sub, "clients", "OAuth clients: list, show, create, delete")
    parser = command(clients, "list", list_clients, "list OAuth clients")
    parser.add_argument("--source", choices=("static", "dcr", "cimd"), help="only this kind")
    parser = command(clients, "show", show_client, "show one OAuth client")
    parser.add_argument("client_id", metavar="CLIENT_ID", help="the client's id")
    parser = command(clients, "create", create_client, "pre-register a client (admin)")
    parser.add_argument("name", metavar="NAME", help="the client's name, shown at consent")
    parser.add_argument(
        "--redirect-uri",
        action="append",
        required=True,
        metavar="URI",
        help="a redirect URI (repeat for several; exact matches only)",
    )
    parser.add_argument(
        "--confidential", action="store_true", help="issue a client secret (shown once)"
    )
    parser = command(clients, "delete", delete_client, "delete a client; revokes its tokens")
    parser.add_argument("client_id", metavar="CLIENT_ID", help="the client's id")

    sessions = group(sub, "sessions", "OAuth sessions (one login of a user with a client)")
    parser = command(sessions, "list", list_sessions, "list OAuth sessions")
    _filters(parser)
    parser = command(sessions, "revoke", revoke_session, "revoke a session and its tokens")
    parser.add_argument("session_id", metavar="SESSION_ID", help="the session's id")

    tokens = group(sub, "tokens", "live OAuth access tokens")
    parser = command(tokens, "list", list_tokens, "list live OAuth access tokens")
    _filters(parser)
    parser = command(tokens, "revoke", revoke_token, "revoke one access token")
    parser.add_argument("jti", metavar="JTI", help="the token's id (jti)")

    parser = command(sub, "revoke", revoke, "revoke every session and token of a user/client")
    parser.add_argument("--user", metavar="LOGIN", help="GitHub login")
    parser.add_argument("--client", metavar="CLIENT_ID", help="client id")

    command(sub, "metrics", metrics, "show OAuth counters")
    command(sub, "health", health, "the authorization server's state and what to fix")
    resources = group(sub, "resources", "OAuth-protected resources (read-only)")
    command(resources, "list", list_resources, "list the OAuth-protected proxies")
    parser = command(resources, "show", show_resource, "show one protected resource")
    parser.add_argument("hostname", metavar="HOSTNAME", help="the proxy's hostname")

    keys = group(sub, "keys", "the signing keys of the access tokens")
    command(keys, "list", list_keys, "list the signing keys and their states")
    parser = command(keys, "rotate", rotate_keys, "publish the next signing key")
    parser.add_argument(
        "--activate-in",
        type=int,
        metavar="SECONDS",
        help="seconds until the new key signs (default 300, the JWKS cache time)",
    )

    initial = group(
        sub,
        "initial-tokens",
        "initial access tokens for closed registration (OAUTH_REGISTRATION=token)",
    )
    command(initial, "list", list_initial_tokens, "list initial access tokens")
    parser = command(initial, "create", create_initial_token, "create one; shown once")
    parser.add_argument("name", metavar="NAME", help="a name for the token")
    parser.add_argument("--max-uses", type=int, metavar="N", help="registrations allowed")
    parser.add_argument("--expires-in", type=int, metavar="SECONDS", help="lifetime")
    parser = command(initial, "delete", delete_initial_token, "delete an initial access token")
    parser.add_argument("name", metavar="NAME", help="the token's name")
