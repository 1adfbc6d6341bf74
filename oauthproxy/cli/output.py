"""Rendering command results: aligned tables for people, JSON for programs (pure).

People get times as UTC dates (:func:`readable_times`): every field named
``*_at``, ``time``, ``since``, ``until``, ``not_before`` or ``not_after`` holding
POSIX seconds, in tables and records alike.  ``--json`` keeps the API's numbers.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any

#: fields holding POSIX seconds besides the ``*_at`` ones
TIME_FIELDS = frozenset({"time", "since", "until", "not_before", "not_after"})


def utc(seconds: float | None) -> str | None:
    """POSIX seconds as a UTC time for people (None stays None)."""
    if seconds is None:
        return None
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _is_time(key: object, value: object) -> bool:
    """Whether ``key: value`` is a time field holding POSIX seconds."""
    if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return key.endswith("_at") or key in TIME_FIELDS


def readable_times(data: Any) -> Any:
    """``data`` with every time field (at any depth) as a UTC date string."""
    if isinstance(data, Mapping):
        return {k: utc(v) if _is_time(k, v) else readable_times(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [readable_times(item) for item in data]
    return data


def render_json(data: Any) -> str:
    """Indented, key-sorted JSON."""
    return json.dumps(data, indent=2, sort_keys=True)


def cell(value: Any) -> str:
    """One value as table text: lists joined by commas, nested objects as compact JSON."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(cell(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def render_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows as a table with a header, columns padded to their widest cell."""
    if columns is None:
        columns = list(rows[0]) if rows else []
    if not rows:
        return "(none)"
    header = [c.upper() for c in columns]
    body = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(columns))]
    lines = [
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True))
        for line in [header, *body]
    ]
    return "\n".join(line.rstrip() for line in lines)


def render_record(record: Mapping[str, Any], prefix: str = "") -> str:
    """A mapping as ``key: value`` lines, keys aligned; nested mappings flattened with dots."""
    flat: list[tuple[str, str]] = []
    _flatten(record, prefix, flat)
    if not flat:
        return "(empty)"
    width = max(len(key) for key, _ in flat)
    return "\n".join(f"{key.ljust(width)}  {value}" for key, value in flat)


def _flatten(record: Mapping[str, Any], prefix: str, out: list[tuple[str, str]]) -> None:
    """Collect ``(dotted key, cell)`` pairs."""
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            _flatten(value, name + ".", out)
        else:
            out.append((name, cell(value)))
