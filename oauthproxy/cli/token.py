"""``oauthproxyctl token``: API tokens at ``/tokens/`` (create, list, show, delete, rotate).

``create`` and ``rotate`` print the token's value, which the API shows only
then: with ``--json`` it is the ``token`` field.  ``token-admin`` (a separate
command) replaces the admin token on the daemon's host.
"""

from __future__ import annotations

import argparse

from oauthproxy.cli.context import Context, command, group
from oauthproxy.cli.paging import all_items, given, segment, show_deleted

PATH = "/tokens/"
COLUMNS = ("name", "owner_email", "is_admin", "created_at", "last_used_at", "created_by")


async def create(ctx: Context, args: argparse.Namespace) -> int:
    """``token create NAME OWNER_EMAIL``: the value is printed once."""
    ctx.show(await ctx.api.post(PATH, {"name": args.name, "owner_email": args.owner_email}))
    return 0


async def list_tokens(ctx: Context, args: argparse.Namespace) -> int:
    """``token list``: every token the caller may see (itself; all for the admin)."""
    ctx.show(await all_items(ctx, PATH, given({"owner_email": args.owner_email})), COLUMNS)
    return 0


async def show(ctx: Context, args: argparse.Namespace) -> int:
    """``token show NAME``."""
    ctx.show(await ctx.api.get(PATH + segment(args.name)))
    return 0


async def delete(ctx: Context, args: argparse.Namespace) -> int:
    """``token delete NAME``: the token stops working."""
    await ctx.api.delete(PATH + segment(args.name))
    return show_deleted(ctx, "token", args.name)


async def rotate(ctx: Context, args: argparse.Namespace) -> int:
    """``token rotate NAME``: a new value, printed once; the old one stops working."""
    ctx.show(await ctx.api.post(PATH + segment(args.name) + "/rotate"))
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``token create|list|show|delete|rotate``."""
    sub = group(commands, "token", "manage API tokens at /tokens/")

    parser = command(sub, "create", create, "create a token (admin); prints its value once")
    parser.add_argument("name", metavar="NAME", help="letters, digits, '.', '_', '-'")
    parser.add_argument("owner_email", metavar="OWNER_EMAIL")

    parser = command(sub, "list", list_tokens, "list tokens")
    parser.add_argument("--owner-email", help="only tokens of this owner")

    for name, handler, help in (
        ("show", show, "show one token (never its value)"),
        ("delete", delete, "delete (revoke) a token"),
        ("rotate", rotate, "replace a token's value; prints the new value once"),
    ):
        parser = command(sub, name, handler, help)
        parser.add_argument("name", metavar="NAME")
