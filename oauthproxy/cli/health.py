"""``oauthproxyctl health``: the daemon's ``GET /health`` (exit 1 unless status is ok)."""

from __future__ import annotations

import argparse

from oauthproxy.cli.context import Context, command


async def health(ctx: Context, args: argparse.Namespace) -> int:
    """Show Redis state, listeners, version and uptime."""
    result = await ctx.api.get("/health")
    ctx.show(result)
    status = result.get("status") if isinstance(result, dict) else None
    return 0 if status == "ok" else 1


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``health``."""
    command(commands, "health", health, "show the daemon's health (exit 1 if degraded)")
