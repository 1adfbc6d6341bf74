"""Rendering command results: aligned tables for people, JSON for programs (pure)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


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
