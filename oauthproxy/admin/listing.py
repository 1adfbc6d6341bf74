"""Pagination and filtering shared by every list endpoint.

A list endpoint declares ``query=page_query(filters)`` and ``returns={200:
page_schema(ITEM)}``, then answers with ``paginate(records, call.query, render,
filters)``: exact-match filters first, then ``offset``/``limit`` over a stable
order (the store's), with ``total`` and ``next_offset`` so clients can walk pages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from oauthproxy.admin.schema import Schema, array, integer, nullable, obj

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

T = TypeVar("T")

#: the query parameters every list endpoint takes
PAGE_QUERY: dict[str, Schema] = {
    "limit": integer(minimum=1, maximum=MAX_LIMIT, default=DEFAULT_LIMIT, description="page size"),
    "offset": integer(minimum=0, maximum=10**9, default=0, description="records to skip"),
}


def page_query(filters: Mapping[str, Schema] | None = None) -> dict[str, Schema]:
    """The pagination parameters plus exact-match ``filters`` (name → schema)."""
    return {**PAGE_QUERY, **(filters or {})}


def page_schema(item: Schema) -> Schema:
    """The response of a list endpoint whose items match ``item``."""
    return obj(
        {
            "items": array(item, max_items=MAX_LIMIT),
            "total": integer(minimum=0, description="matching records, all pages"),
            "limit": integer(minimum=1),
            "offset": integer(minimum=0),
            "next_offset": nullable(integer(minimum=0)),
        },
        required=("items", "total", "limit", "offset", "next_offset"),
    )


def matching(records: Iterable[T], query: Mapping[str, Any], fields: Iterable[str]) -> list[T]:
    """The records whose attribute equals the query value for each filter given."""
    wanted = [(name, query[name]) for name in fields if query.get(name) is not None]
    return [
        record
        for record in records
        if all(getattr(record, name) == value for name, value in wanted)
    ]


def paginate(
    records: Sequence[T],
    query: Mapping[str, Any],
    render: Callable[[T], object],
    filters: Iterable[str] = (),
) -> dict[str, object]:
    """One page of ``records`` (already visible to the caller) as a list response body."""
    selected = matching(records, query, filters)
    limit = int(query.get("limit", DEFAULT_LIMIT))
    offset = int(query.get("offset", 0))
    page = selected[offset : offset + limit]
    following = offset + limit
    return {
        "items": [render(record) for record in page],
        "total": len(selected),
        "limit": limit,
        "offset": offset,
        "next_offset": following if following < len(selected) else None,
    }
