"""An in-memory admin API for the admin tests: StubTreq over ``AdminAPI(...).resource()``.

The store is :class:`oauthproxy.testing.MemoryStorage`, its token store wrapped
in :class:`ObservedTokens` so tests can watch and break ``touch``.
:class:`StandInSnapshots` is refreshed from the store with :meth:`Harness.sync`,
standing in for the event tail: tests decide when the data plane sees a change.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast
from urllib.parse import urlsplit

from attrs import define, field, frozen
from jsonschema import Draft202012Validator
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.admin.api import AdminAPI
from oauthproxy.admin.credentials import hash_token, new_token_value
from oauthproxy.admin.endpoint import ApiContext
from oauthproxy.interfaces import ISnapshotSource, ITokenStore
from oauthproxy.model import ADMIN_TOKEN_NAME, ApiToken, Snapshot
from oauthproxy.oauth.status import OAuthStatus
from oauthproxy.testing import MemoryStorage


@define
class ObservedTokens:
    """The memory token store, with ``touch`` observable and breakable by the test."""

    inner: ITokenStore
    touches: list[tuple[str, float]] = field(factory=list)
    #: when set, touch fails with this error
    touch_error: Exception | None = None
    #: when set, touch returns this Deferred (a slow store)
    pending_touch: Deferred[None] | None = None

    def get(self, name: str) -> Deferred[ApiToken | None]:
        """Delegate."""
        return self.inner.get(name)

    def list(self) -> Deferred[list[ApiToken]]:
        """Delegate."""
        return self.inner.list()

    def create(self, token: ApiToken) -> Deferred[None]:
        """Delegate."""
        return self.inner.create(token)

    def update(self, token: ApiToken) -> Deferred[None]:
        """Delegate."""
        return self.inner.update(token)

    def delete(self, name: str) -> Deferred[None]:
        """Delegate."""
        return self.inner.delete(name)

    def find_by_hash(self, token_hash: str) -> Deferred[ApiToken | None]:
        """Delegate."""
        return self.inner.find_by_hash(token_hash)

    def touch(self, name: str, when: float) -> Deferred[None]:
        """Record the call, then fail, hang or delegate as the test asked."""
        self.touches.append((name, when))
        if self.touch_error is not None:
            return fail(self.touch_error)
        if self.pending_touch is not None:
            return self.pending_touch
        return self.inner.touch(name, when)


@define
class StandInSnapshots:
    """An ISnapshotSource whose snapshot the test replaces explicitly."""

    current: Snapshot = field(factory=Snapshot)
    connected: bool = True


@frozen
class Answer:
    """One HTTP response, read completely."""

    status: int
    headers: Mapping[bytes, list[bytes]]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    def header(self, name: bytes) -> bytes | None:
        """The first value of a response header."""
        values = self.headers.get(name.lower())
        return values[0] if values else None


def default_health() -> dict[str, object]:
    """What the composition root reports for a healthy daemon."""
    return {
        "redis": "connected",
        "redis_writes": "ok",
        "listeners": {"api": "tcp:9000:interface=127.0.0.1"},
        "version": "0.1.0",
        "uptime": 12.5,
    }


class Harness:
    """An admin API with an admin token and helpers to call it."""

    def __init__(
        self,
        test: SynchronousTestCase,
        health: Callable[[], Mapping[str, object]] = default_health,
        max_body: int = 1024 * 1024,
        extra: Callable[[ApiContext], list[object]] = lambda context: [],
        oauth_status: Callable[[], OAuthStatus] | None = None,
        readiness: Callable[[], Sequence[str]] = lambda: (),
    ) -> None:
        self.test = test
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.storage = MemoryStorage(self.clock)
        self.tokens = ObservedTokens(self.storage.tokens)
        # every component reaches the token store through the storage: wrap it there
        setattr(self.storage, "tokens", self.tokens)  # noqa: B010
        self.snapshots = StandInSnapshots()
        self.admin_token = self.add_token(ADMIN_TOKEN_NAME, is_admin=True)
        self.api = AdminAPI(
            self.storage,
            cast(ISnapshotSource, self.snapshots),
            self.clock,
            health,
            max_body=max_body,
            check_responses=True,
            oauth_status=oauth_status,
            readiness=readiness,
        )
        self.treq = StubTreq(self.api.resource(*extra(self.api.context)))
        self._document: dict[str, Any] | None = None

    def add_token(self, name: str, is_admin: bool = False, email: str = "") -> str:
        """Store a token named ``name`` directly, make it visible; return its value."""
        value = new_token_value()
        token = ApiToken(
            name=name,
            token_hash=hash_token(value),
            owner_email=email or f"{name}@example.com",
            is_admin=is_admin,
            created_at=self.clock.seconds(),
        )
        self.test.successResultOf(self.tokens.create(token))
        self.sync()
        return value

    def stored(self, name: str) -> ApiToken:
        """The token record as the store has it now (it must exist)."""
        token = self.test.successResultOf(self.tokens.get(name))
        assert token is not None, f"no token {name} in the store"
        return token

    def exists(self, name: str) -> bool:
        """Whether the store has a token named ``name``."""
        return self.test.successResultOf(self.tokens.get(name)) is not None

    def sync(self) -> None:
        """Let the snapshot catch up with the store (what the event tail does)."""
        tokens = self.test.successResultOf(self.tokens.list())
        self.snapshots.current = Snapshot(tokens={token.name: token for token in tokens})

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: object = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """Send one request and read the whole response."""
        sent: dict[str, list[str]] = {k: [v] for k, v in (headers or {}).items()}
        if token is not None:
            sent.setdefault("Authorization", [f"Bearer {token}"])
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            sent.setdefault("Content-Type", ["application/json"])
        d = self.treq.request(  # type: ignore[attr-defined]
            method, "http://api.test" + path, headers=sent, data=data
        )
        self.treq.flush()
        response = self.test.successResultOf(d)
        content = self.test.successResultOf(
            self.treq.content(response)  # type: ignore[attr-defined]
        )
        raw = {name.lower(): list(values) for name, values in response.headers.getAllRawHeaders()}
        answer = Answer(status=response.code, headers=raw, body=content)
        if path != "/openapi.json":
            self._check_documented(method, path, answer)
        return answer

    def _check_documented(self, method: str, path: str, answer: Answer) -> None:
        """Every answer of a documented operation has a documented status and body.

        What schemathesis checks against a running daemon, checked in every test.
        """
        if self._document is None:
            self._document = self.call("GET", "/openapi.json").json()
        route = urlsplit(path).path
        paths = self._document["paths"]
        # as OpenAPI says: a concrete path is matched before templated ones
        concrete = route in paths and method.lower() in paths[route]
        for template, item in paths.items():
            if concrete and template != route:
                continue
            pattern = re.sub(r"\\{[a-z_]+\\}", "[^/]+", re.escape(template))
            if re.fullmatch(pattern, route) is None or method.lower() not in item:
                continue
            responses = item[method.lower()]["responses"]
            self.test.assertIn(str(answer.status), responses, f"{method} {path}: undocumented")
            media = responses[str(answer.status)].get("content", {}).get("application/json")
            if media is not None:
                schema = media["schema"]
                if "$ref" in schema:
                    schema = self._document["components"]["schemas"]["Error"]
                Draft202012Validator(schema).validate(answer.json())

    def assert_error(
        self, answer: Answer, status: int, code: str, field: str | None = None
    ) -> dict[str, Any]:
        """Assert ``answer`` is the JSON error ``code`` with ``status`` (naming ``field``)."""
        self.test.assertEqual(answer.status, status, answer.body)
        self.test.assertEqual(answer.header(b"content-type"), b"application/json")
        error: dict[str, Any] = answer.json()
        self.test.assertEqual(error["error"], code)
        self.test.assertTrue(error["detail"])
        if field is not None:
            self.test.assertEqual(error["field"], field)
        return error
