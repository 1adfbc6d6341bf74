"""Health: ``/health`` (detailed JSON), ``/health/live`` and ``/health/ready`` for balancers.

The daemon's state comes from callables the composition root injects.  ``health``
returns a mapping with at least::

    {"redis": "connected" | "unreachable",          # the last probe's read
     "redis_writes": "ok" | "<why refused>",         # the last probe's write
     "listeners": {"http": "tcp:80", ...},          # name → endpoint description
     "version": "0.1.0",
     "uptime": 12.5,                                # seconds since start
     "workers": {"configured": 2, "running": 2,     # --workers: the daemon's processes
                 "restarts": 0, "crash_looping": [], "this": 1},
     "oauth": {"state": "ready", ...}}              # OAuthStatus.json(), when wired

Extra keys are passed through.  ``/health`` always answers 200 while the process
serves: ``status`` is ``"degraded"`` when Redis does not answer or refuses writes, or
the event tail is down (the data plane then serves from its last snapshot).

For load balancers and orchestrators: ``/health/live`` is 200 while the process runs
(restart it when this fails); ``/health/ready`` is 200 only when Redis takes reads and
writes, every listener is open and the daemon is not shutting down, else 503 with the
reasons (send it no new traffic).  The Redis probe behind both runs every half second
with a one-second deadline, so a dead or frozen Redis shows within about 1.5 s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

from attrs import define, field
from klein import Klein

from oauthproxy.admin.endpoint import ApiContext, Call, Reply, endpoint
from oauthproxy.admin.schema import Schema
from oauthproxy.interfaces import ISnapshotSource

HealthSource = Callable[[], Mapping[str, object]]
#: why the daemon should get no traffic now; empty = ready
Readiness = Callable[[], Sequence[str]]

HEALTH: Schema = {
    "type": "object",
    "required": [
        "status",
        "redis",
        "redis_writes",
        "events_connected",
        "listeners",
        "version",
        "uptime",
    ],
    "properties": {
        "status": {"enum": ["ok", "degraded"]},
        "redis": {"type": "string", "description": "connected or unreachable (last probe)"},
        "redis_writes": {
            "type": "string",
            "description": "ok, or why Redis refused the last probe's write",
        },
        "events_connected": {
            "type": "boolean",
            "description": "whether this daemon is tailing the event stream",
        },
        "listeners": {"type": "object", "additionalProperties": {"type": "string"}},
        "version": {"type": "string"},
        "uptime": {"type": "number", "minimum": 0},
        "workers": {
            "type": "object",
            "description": "the daemon's worker processes (--workers); 1 without",
            "required": ["configured", "running", "restarts", "crash_looping"],
            "properties": {
                "configured": {"type": "integer", "minimum": 1},
                "running": {"type": "integer", "minimum": 0},
                "restarts": {"type": "integer", "minimum": 0},
                "crash_looping": {"type": "array", "items": {"type": "integer"}},
                "this": {"type": "integer", "description": "the worker that answered"},
            },
        },
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
LIVE: Schema = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"const": "live"}},
}
READY: Schema = {
    "type": "object",
    "required": ["status", "reasons"],
    "properties": {
        "status": {"enum": ["ready", "not_ready"]},
        "reasons": {"type": "array", "items": {"type": "string"}},
    },
}


@define
class HealthResource:
    """The public health checks."""

    app: ClassVar[Klein] = Klein()
    api: ApiContext
    snapshots: ISnapshotSource
    health: HealthSource
    readiness: Readiness = field(default=lambda: ())

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
        """Always 200 while the daemon serves; ``status`` says whether Redis is usable."""
        state = dict(self.health())
        redis = str(state.get("redis", "unknown"))
        writes = str(state.get("redis_writes", "ok"))
        events_connected = bool(self.snapshots.connected)
        healthy = redis == "connected" and writes == "ok" and events_connected
        state.update(
            {
                "status": "ok" if healthy else "degraded",
                "redis": redis,
                "redis_writes": writes,
                "events_connected": events_connected,
            }
        )
        state.setdefault("listeners", {})
        state.setdefault("version", "")
        state.setdefault("uptime", 0.0)
        return state

    @endpoint(
        app,
        "GET",
        "/health/live",
        summary="Liveness: 200 while the process runs",
        tags=("health",),
        auth="none",
        returns={200: LIVE},
        operation_id="health_live",
    )
    async def live(self, call: Call) -> object:
        """The process is up and its event loop answers."""
        return {"status": "live"}

    @endpoint(
        app,
        "GET",
        "/health/ready",
        summary="Readiness: 200 when Redis takes reads and writes and the listeners are up",
        tags=("health",),
        auth="none",
        returns={200: READY, 503: READY},
        operation_id="health_ready",
    )
    async def ready(self, call: Call) -> object:
        """200 ready, or 503 with the reasons (no new traffic for this daemon)."""
        reasons = list(self.readiness())
        if reasons:
            return Reply(503, {"status": "not_ready", "reasons": reasons})
        return {"status": "ready", "reasons": []}
