"""``GET /health``: is the daemon up, and is its Redis reachable.

The daemon's state comes from the ``health`` callable the composition root
injects; it returns a mapping with at least::

    {"redis": "connected" | "disconnected" | ...,   # the storage connection's state
     "listeners": {"http": "tcp:80", ...},          # name → endpoint description
     "version": "0.1.0",
     "uptime": 12.5,                                # seconds since start
     "oauth": {"state": "ready", ...}}              # OAuthStatus.json(), when wired

Extra keys are passed through.  The answer is always 200 while the process
serves: ``status`` is ``"degraded"`` when Redis is not connected or the event
tail is down (the data plane then serves from its last snapshot).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar

from attrs import define
from klein import Klein

from oauthproxy.admin.endpoint import ApiContext, Call, endpoint
from oauthproxy.admin.schema import Schema
from oauthproxy.interfaces import ISnapshotSource

HealthSource = Callable[[], Mapping[str, object]]

HEALTH: Schema = {
    "type": "object",
    "required": ["status", "redis", "events_connected", "listeners", "version", "uptime"],
    "properties": {
        "status": {"enum": ["ok", "degraded"]},
        "redis": {"type": "string", "description": "the Redis connection's state"},
        "events_connected": {
            "type": "boolean",
            "description": "whether this daemon is tailing the event stream",
        },
        "listeners": {"type": "object", "additionalProperties": {"type": "string"}},
        "version": {"type": "string"},
        "uptime": {"type": "number", "minimum": 0},
        "oauth": {
            "type": "object",
            "description": "the OAuth authorization server: state, issuer, what to fix",
            "required": ["state", "issuer", "github_app", "problem"],
            "properties": {
                "state": {"enum": ["off", "starting", "ready", "failed"]},
                "issuer": {"type": ["string", "null"]},
                "github_app": {"type": "boolean"},
                "problem": {"type": ["string", "null"]},
            },
        },
    },
}


@define
class HealthResource:
    """The public health check."""

    app: ClassVar[Klein] = Klein()
    api: ApiContext
    snapshots: ISnapshotSource
    health: HealthSource

    @endpoint(
        app,
        "GET",
        "/health",
        summary="Daemon health: Redis state, listeners, version, uptime",
        tags=("health",),
        auth="none",
        returns={200: HEALTH},
        operation_id="health",
    )
    async def show(self, call: Call) -> object:
        """Always 200 while the daemon serves; ``status`` says whether Redis is reachable."""
        state = dict(self.health())
        redis = str(state.get("redis", "unknown"))
        events_connected = bool(self.snapshots.connected)
        state.update(
            {
                "status": "ok" if redis == "connected" and events_connected else "degraded",
                "redis": redis,
                "events_connected": events_connected,
            }
        )
        state.setdefault("listeners", {})
        state.setdefault("version", "")
        state.setdefault("uptime", 0.0)
        return state
