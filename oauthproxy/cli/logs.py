"""``oauthproxyctl logs``: the request log at ``/logs/`` (admin token).

- ``logs [--host H] [--ip IP] [--status N] [--errors] [--since 2h] [--limit N]``: search;
- ``logs show CORRELATION_ID``: one request;
- ``logs stats [--since 24h]``: counts by status class, p50/p95, visitors per host;
- ``logs follow [--count N] [--interval S]``: print new requests as access-log lines
  until ``--count`` were printed or Ctrl-C.

``--since`` takes a duration back from now (``90s``, ``30m``, ``2h``, ``1d``), POSIX
seconds, or an ISO-8601 time (UTC unless it names a zone).  Tables show times in UTC
and durations in milliseconds; ``--json`` prints the API's records as they are.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
from typing import Any

from twisted.internet import task

from oauthproxy.cli.context import CliError, Context, command
from oauthproxy.cli.output import utc
from oauthproxy.cli.paging import given, segment
from oauthproxy.requestlog.record import access_line, record_from_json

PATH = "/logs/"
COLUMNS = ("time", "status", "method", "host", "path", "client_ip", "ms", "correlation_id")
#: records fetched per ``follow`` poll
FOLLOW_PAGE = 100
_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _number(value: float) -> str:
    """A number for a query string: no exponent, no trailing zeros (``24``, ``0.5``)."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


def since_params(text: str | None) -> dict[str, str]:
    """``--since`` as query parameters: ``hours`` for a duration, ``since`` for a time."""
    if text is None:
        return {}
    text = text.strip()
    match = _DURATION.match(text)
    if match:
        seconds = float(match.group(1)) * _UNIT[match.group(2)]
        if seconds <= 0:
            raise CliError("--since must be a positive duration", exit_code=2)
        return {"hours": _number(seconds / 3600)}
    try:
        return {"since": _number(float(text))}
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(
            f"--since takes a duration (30m, 2h, 1d), POSIX seconds or an ISO time, not {text!r}",
            exit_code=2,
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return {"since": _number(moment.timestamp())}


def row(record: dict[str, Any]) -> dict[str, Any]:
    """A record as a table row for people: UTC time, duration in milliseconds."""
    duration = record.get("duration")
    shown = dict(record)
    shown["time"] = utc(record.get("time"))
    shown["ms"] = None if duration is None else f"{duration * 1000:.1f}"
    return shown


async def search(ctx: Context, args: argparse.Namespace) -> int:
    """``logs``: the newest requests matching the filters."""
    params = given(
        {
            "host": args.host,
            "ip": args.ip,
            "user": args.user,
            "client_id": args.client_id,
            "status": None if args.status is None else str(args.status),
            "method": args.method,
            "path": args.path,
            "limit": str(args.limit),
            "errors": "true" if args.errors else None,
        }
    )
    answer = await ctx.api.get(PATH + "search", {**params, **since_params(args.since)})
    items = answer["items"]
    ctx.show(items if ctx.json else [row(r) for r in items], COLUMNS)
    return 0


async def show(ctx: Context, args: argparse.Namespace) -> int:
    """``logs show CORRELATION_ID``."""
    record = await ctx.api.get(PATH + "correlation/" + segment(args.correlation_id))
    if not ctx.json:
        record = {**record, "time": utc(record["time"])}
    ctx.show(record)
    return 0


async def stats(ctx: Context, args: argparse.Namespace) -> int:
    """``logs stats``: the totals, then one row per host."""
    answer = await ctx.api.get(PATH + "stats", since_params(args.since))
    if ctx.json:
        ctx.show(answer)
        return 0
    summary = {
        "since": utc(answer["since"]),
        "until": utc(answer["until"]),
        "total": answer["total"],
        "errors": answer["errors"],
        "by_status": answer["by_status"],
        "p50_ms": answer["response_time"]["p50_ms"],
        "p95_ms": answer["response_time"]["p95_ms"],
    }
    ctx.show(summary)
    ctx.out.write("\n")
    hosts = [
        {
            "host": h["host"],
            "requests": h["requests"],
            "unique_visitors": h["unique_visitors"],
            "p50_ms": h["response_time"]["p50_ms"],
            "p95_ms": h["response_time"]["p95_ms"],
        }
        for h in answer["hosts"]
    ]
    ctx.show(hosts, ("host", "requests", "unique_visitors", "p50_ms", "p95_ms"))
    return 0


def _print_follow(ctx: Context, record: dict[str, Any]) -> None:
    """One followed request: a JSON line with ``--json``, else its access-log line."""
    if ctx.json:
        ctx.out.write(json.dumps(record, sort_keys=True) + "\n")
    else:
        ctx.out.write(access_line(record_from_json(record)) + "\n")
    ctx.out.flush()


async def follow(ctx: Context, args: argparse.Namespace) -> int:
    """``logs follow``: the last ``--tail`` requests, then new ones as they are logged."""
    if args.count is not None and args.count < 1:
        raise CliError("--count must be at least 1", exit_code=2)
    printed = 0
    # with --tail 0 only the cursor matters: ask for the smallest page
    answer = await ctx.api.get(PATH + "recent", {"limit": str(max(args.tail, 1))})
    cursor = answer["cursor"]
    batch = answer["items"] if args.tail else []
    while True:
        for record in batch:
            _print_follow(ctx, record)
            printed += 1
            if args.count is not None and printed >= args.count:
                return 0
        await task.deferLater(ctx.reactor, args.interval, lambda: None)
        answer = await ctx.api.get(PATH + "recent", {"after": cursor, "limit": str(FOLLOW_PAGE)})
        cursor, batch = answer["cursor"], answer["items"]


def _positive(text: str) -> float:
    """An argparse type: a positive number."""
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``logs`` (search) and ``logs show|stats|follow``."""
    parser = command(commands, "logs", search, "query the request log (admin token)")
    parser.add_argument("--host", help="only requests for this hostname")
    parser.add_argument("--ip", help="only requests from this client IP")
    parser.add_argument("--user", help="only requests of this authenticated user")
    parser.add_argument("--client-id", help="only requests of this OAuth client")
    parser.add_argument("--status", type=int, help="only answers with this status")
    parser.add_argument("--method", help="only this HTTP method")
    parser.add_argument("--path", help="only paths starting with this prefix")
    parser.add_argument("--errors", action="store_true", help="only 5xx and gateway errors")
    parser.add_argument("--since", help="30m, 2h, 1d, POSIX seconds or ISO time (default 24h)")
    parser.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    shown = command(sub, "show", show, "show one request by correlation id")
    shown.add_argument("correlation_id", metavar="CORRELATION_ID")

    counted = command(sub, "stats", stats, "status counts, response times, unique visitors")
    counted.add_argument("--since", help="30m, 2h, 1d, POSIX seconds or ISO time (default 24h)")

    followed = command(sub, "follow", follow, "print requests as they are logged (Ctrl-C ends)")
    followed.add_argument("--count", type=int, help="stop after printing this many")
    followed.add_argument(
        "--interval", type=_positive, default=1.0, help="seconds between polls (default 1)"
    )
    followed.add_argument(
        "--tail", type=int, default=10, help="recent requests shown first (default 10; 0: none)"
    )
