"""``oauthproxyctl token-admin``: issue a new admin token, invalidating the old one.

Unlike the other commands this one does not use the admin API (whose access it
restores): it runs on the daemon's host, reads the same configuration (options,
environment, ``.env``) and talks to Redis directly, through the embedded
redis-server's unix socket in the data directory when no ``REDIS_URL`` is set.
"""

from __future__ import annotations

import argparse
import os

from oauthproxy import bootstrap
from oauthproxy.cli.context import CliError, Context, command
from oauthproxy.config import load_config, process_environment, read_dotenv
from oauthproxy.errors import ConfigError
from oauthproxy.storage.embedded import socket_path


async def token_admin(ctx: Context, args: argparse.Namespace) -> int:
    """Rotate the admin token and print the new value once."""
    try:
        config = load_config(
            {
                "redis": args.redis,
                "redis-password": args.redis_password,
                "data-dir": args.data_dir,
            },
            process_environment(),
            read_dotenv(),
        )
    except ConfigError as e:
        raise CliError(e.detail, exit_code=2) from None
    if config.redis_url is None and not os.path.exists(socket_path(config.data_dir)):
        raise CliError(
            f"no embedded Redis in {os.path.abspath(config.data_dir)}: start the daemon, or "
            "pass its --data-dir (or --redis)"
        )
    storage = bootstrap.open_storage(config, ctx.reactor)
    try:
        if not await storage.ping():
            where = config.redis_url or f"the embedded redis-server in {config.data_dir}"
            raise CliError(f"cannot reach Redis ({where}); is the daemon running?")
        value = await bootstrap.rotate_admin_token(storage.tokens, ctx.reactor)
    finally:
        await storage.close()
    if ctx.json:
        ctx.show({"name": "admin", "token": value})
    else:
        ctx.out.write(bootstrap.announce_admin_token(value) + "\n")
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``token-admin``."""
    parser = command(
        commands,
        "token-admin",
        token_admin,
        "issue a new admin token (run on the daemon's host; the old token stops working)",
    )
    parser.add_argument("--redis", help="Redis URL (REDIS_URL); unset = embedded")
    parser.add_argument("--redis-password", help="Redis password (REDIS_PASSWORD)")
    parser.add_argument("--data-dir", help="data directory (default ./oauthproxy-data)")
