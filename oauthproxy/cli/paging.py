"""Small pieces the record commands share: whole lists, path segments, ``K=V`` options.

Not a command group (it has no ``register``): :mod:`oauthproxy.cli.proxy`,
:mod:`~oauthproxy.cli.route` and :mod:`~oauthproxy.cli.service` use it so that
their ``list``, ``show`` and ``delete`` commands behave alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from oauthproxy.cli.context import CliError, Context
from oauthproxy.cli.output import utc

#: the largest page the API serves
PAGE_SIZE = 500
#: a bound on the pages one ``list`` walks (100 000 records)
MAX_PAGES = 200
#: record fields holding POSIX seconds, shown to people as UTC times
TIME_FIELDS = ("created_at", "updated_at", "last_used_at")


async def all_items(ctx: Context, path: str, filters: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every item of the list endpoint at ``path`` matching ``filters``, page after page."""
    items: list[dict[str, Any]] = []
    offset = 0
    for _ in range(MAX_PAGES):
        page = await ctx.api.get(path, {**filters, "limit": str(PAGE_SIZE), "offset": str(offset)})
        items.extend(page["items"])
        following = page.get("next_offset")
        if following is None:
            return items
        offset = int(following)
    raise CliError(f"more than {MAX_PAGES * PAGE_SIZE} records; narrow the list with filters")


def segment(value: str) -> str:
    """``value`` quoted as one URL path segment (a '/' in it cannot reach another path)."""
    return quote(value, safe="")


def key_values(pairs: Iterable[str], option: str) -> dict[str, str]:
    """``["K=V", ...]`` as a dict; a pair without '=' is a usage error naming ``option``."""
    result: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CliError(f"{option} takes NAME=VALUE, not {pair!r}", exit_code=2)
        result[name] = value
    return result


def comma_list(text: str) -> list[str]:
    """``"GET,POST"`` as ``["GET", "POST"]`` (blanks dropped)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def show_deleted(ctx: Context, kind: str, key: str, verb: str = "deleted") -> int:
    """Report a deletion, or a revocation (``{verb: key}`` with ``--json``); exit code 0."""
    if ctx.json:
        ctx.show({verb: key, "kind": kind})
    else:
        ctx.out.write(f"{verb} {kind} {key}\n")
    return 0


def show_cleared(ctx: Context, what: str, of: str) -> int:
    """Report settings removed from a record (``cleared auth of HOST``); exit code 0."""
    if ctx.json:
        ctx.show({"cleared": what, "of": of})
    else:
        ctx.out.write(f"cleared {what} of {of}\n")
    return 0


def given(values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` that the user gave (None means "not given")."""
    return {name: value for name, value in values.items() if value is not None}


def for_people(record: Any, pem_fields: Iterable[str] = ()) -> Any:
    """A record as people read it: times in UTC, PEM text summarized (not for ``--json``)."""
    if not isinstance(record, Mapping):
        return record
    shown = dict(record)
    for name in TIME_FIELDS:
        if isinstance(shown.get(name), int | float):
            shown[name] = utc(shown[name])
    for name in pem_fields:
        text = shown.get(name)
        if isinstance(text, str):
            count = text.count("-----BEGIN CERTIFICATE-----")
            shown[name] = f"({count} PEM certificate{'s' if count != 1 else ''})"
    return shown
