"""The ``events`` stream rules that the Redis store and its in-memory twin share.

Writers append to the stream inside the same Lua script as the record change
(:mod:`oauthproxy.storage.records`); :class:`~oauthproxy.storage.redis.RedisEventLog`
reads it.  This module is pure: event naming, stream ids, reply parsing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from oauthproxy.errors import StorageUnavailable
from oauthproxy.model import Certificate, Event
from oauthproxy.storage.codec import Record

Action = Literal["create", "update", "delete"]

#: entries the stream keeps (approximately); a reader further behind reloads anyway
STREAM_MAXLEN = 10000

#: events returned by one read at most
READ_COUNT = 500

NO_EVENT_ID = "0-0"


class EventsTrimmed(StorageUnavailable):
    """Events the reader had not seen were trimmed from the stream; it must reload."""

    code = "events_trimmed"


def event_type(kind: str, action: Action, old: Record | None, new: Record | None) -> str:
    """The type of the event published when ``action`` turns ``old`` into ``new``.

    ``<kind>_created``, ``<kind>_updated`` or ``<kind>_deleted``; an update that
    leaves a certificate ``ready`` with a chain it did not have before (first
    issue or renewal) is ``certificate_ready``.  The Lua write script applies
    the same rule.
    """
    if (
        action == "update"
        and isinstance(old, Certificate)
        and isinstance(new, Certificate)
        and new.status == "ready"
        and (old.status != "ready" or old.fullchain_pem != new.fullchain_pem)
    ):
        return "certificate_ready"
    return f"{kind}_{action}d"


def parse_stream_id(event_id: str) -> tuple[int, int]:
    """``"1700000000000-3"`` as ``(1700000000000, 3)``, for ordering."""
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


def parse_entries(entries: Sequence[Any]) -> list[Event]:
    """Turn ``[[id, [field, value, ...]], ...]`` stream entries into Events."""
    events = []
    for event_id, flat in entries:
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        events.append(
            Event(
                event_id=event_id,
                type=fields.get("type", ""),
                kind=fields.get("kind", ""),
                key=fields.get("key", ""),
                record=fields.get("record"),
            )
        )
    return events


def check_not_trimmed(after: str, after_kept: bool, any_trimmed: bool) -> None:
    """Raise EventsTrimmed if a reader at ``after`` may have lost events to trimming.

    The stream is trimmed from its old end only, so while the entry ``after``
    is still in the stream nothing newer was lost.  A reader at ``"0-0"`` lost
    events if anything was ever trimmed.  ``after`` must be ``"0-0"`` or an id
    the event log handed out.  (A stream that vanished, e.g. after a Redis
    restart without persistence, also counts as trimmed: the reader reloads.)
    """
    lost = any_trimmed if after == NO_EVENT_ID else not after_kept
    if lost:
        raise EventsTrimmed(
            f"events after {after} were trimmed from the stream; a full reload is needed"
        )
