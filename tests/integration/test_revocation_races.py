"""Revocation on the daemon that revoked: no window, and only the right streams cut.

Issue 11, defect 5 (MCP-17, ATK-27, O21-6): the daemon that answers ``/revoke`` (or
detects an authorization-code replay) applies the revocation before it answers, so the
next request with the token gets a clean 401 on the same kept-alive connection; a
revocation cuts streams in flight that carry the revoked token, and nothing else.
Races are tested in loops against a real ``twistd oauthproxy`` (embedded Redis, fake
GitHub on loopback), with a raw HTTP/1.1 client that tells a 401 from a dropped
connection (a pooled client would hide a drop by retrying on a new connection).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tests.integration.test_oauth_guard import (
    FORM,
    REDIRECT,
    VERIFIER,
    AuthGateway,
    start_auth_gateway,
    wait_until,
)
from tests.support.backends import Backend, start_backend
from tests.support.wire import ConnectionDropped, WireClient, get

#: repetitions: before the fix the window was lost in most rounds
ROUNDS = 15


def bearer(token: str) -> dict[str, str]:
    """The Authorization header of ``token``."""
    return {"Authorization": f"Bearer {token}"}


async def revoke(gateway: AuthGateway, client_id: str, token: str) -> None:
    """RFC 7009 revocation at the daemon's ``/revoke``; asserts 200."""
    form = urlencode({"token": token, "client_id": client_id}).encode()
    response, body = await gateway.fetch("POST", f"{gateway.issuer}/revoke", FORM, data=form)
    assert response.code == 200, body


class RevocationRaceTests(TestCase):
    """The revoking daemon: a clean 401 at once, the connection kept, others untouched."""

    timeout = 240

    async def test_next_request_on_a_kept_alive_connection_gets_401_not_a_drop(self) -> None:
        """MCP-17: right after ``/revoke`` answers, the same connection gets 401, then serves on.

        Before the fix the next request was admitted (the event had not come back yet)
        and then cut with the whole connection when it did.
        """
        gateway = await start_auth_gateway(self)
        backend = await start_backend(self, reactor)
        await gateway.protect("a.test", backend)
        _, other = await gateway.login(gateway.resource("a.test"))
        outcomes = []
        for _ in range(ROUNDS):
            client_id, token = await gateway.login(gateway.resource("a.test"))
            wire = await WireClient.connect(self, gateway.port)
            first = await wire.request(get("a.test", "/", bearer(token)))
            self.assertEqual(first.status, 200, first.body)
            await revoke(gateway, client_id, token)
            try:
                after = (await wire.request(get("a.test", "/", bearer(token)))).status
                still = (await wire.request(get("a.test", "/", bearer(other)))).status
            except ConnectionDropped:
                after, still = -1, -1
            outcomes.append((after, still))
            wire.abort()
        self.assertEqual(outcomes, [(401, 200)] * ROUNDS)

    async def test_replayed_code_revokes_the_first_token_at_once(self) -> None:
        """O21-6, BCP-4: once the replayed code is refused, its first token is refused too."""
        gateway = await start_auth_gateway(self)
        backend = await start_backend(self, reactor)
        await gateway.protect("a.test", backend)
        outcomes = []
        for _ in range(ROUNDS):
            client_id = await gateway.register()
            params = await gateway.authorize(client_id, gateway.resource("a.test"))
            form = urlencode(
                {
                    "grant_type": "authorization_code",
                    "code": params["code"][0],
                    "client_id": client_id,
                    "redirect_uri": REDIRECT,
                    "code_verifier": VERIFIER,
                }
            ).encode()
            first, body = await gateway.fetch("POST", f"{gateway.issuer}/token", FORM, data=form)
            self.assertEqual(first.code, 200, body)
            token = json.loads(body)["access_token"]
            wire = await WireClient.connect(self, gateway.port)  # ready before the replay
            replay = await WireClient.connect(self, gateway.port)
            replayed = await replay.request(
                b"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(form), form)
            )
            self.assertEqual(replayed.status, 400, replayed.body)
            try:
                outcomes.append((await wire.request(get("a.test", "/", bearer(token)))).status)
            except ConnectionDropped:
                outcomes.append(-1)  # admitted, then cut when the revocation came back
            wire.abort()
            replay.abort()
        self.assertEqual(outcomes, [401] * ROUNDS)

    async def test_request_waiting_for_its_upstream_gets_401_and_the_connection_lives(
        self,
    ) -> None:
        """ATK-27: a request whose answer has not started when its token is revoked gets a
        clean 401 (the connection is not aborted), and the connection serves on."""
        gateway = await start_auth_gateway(self)
        backend = await start_backend(self, reactor)
        await gateway.protect("a.test", backend)
        _, other = await gateway.login(gateway.resource("a.test"))
        client_id, token = await gateway.login(gateway.resource("a.test"))
        wire = await WireClient.connect(self, gateway.port)
        wire.send(get("a.test", "/slow", bearer(token)))
        await wait_until(_started(backend), 5.0)
        await revoke(gateway, client_id, token)
        refused = await wire.read_answer()
        self.assertEqual(refused.status, 401)
        self.assertIn(b"revoked", refused.header(b"www-authenticate") or b"")
        self.assertEqual((await wire.request(get("a.test", "/", bearer(other)))).status, 200)

    async def test_revocation_cuts_only_the_streams_that_carry_the_token(self) -> None:
        """ATK-27: revoking one token cuts its open SSE stream; another token's keeps going."""
        gateway = await start_auth_gateway(self)
        backend = await start_backend(self, reactor)
        await gateway.protect("a.test", backend)
        client_id, revoked = await gateway.login(gateway.resource("a.test"))
        _, kept = await gateway.login(gateway.resource("a.test"))
        streams = {}
        for name, token in (("revoked", revoked), ("kept", kept)):
            wire = await WireClient.connect(self, gateway.port)
            wire.send(get("a.test", "/sse", bearer(token)))
            head = await wire.read_answer(head_only=True)
            self.assertEqual(head.status, 200)
            streams[name] = (wire, head)
        await revoke(gateway, client_id, revoked)
        await wait_until(lambda: _closed(streams["revoked"][0]), 1.0)
        wire, head = streams["kept"]
        self.assertFalse(wire.closed, "a stream of another token was cut")
        backend.state.sse_release.callback(None)
        body = await wire.read_body(head)
        self.assertEqual(body, b"data: first\n\n")  # and then the stream ended normally


async def _closed(wire: WireClient) -> bool:
    return wire.closed


def _started(backend: Backend) -> Callable[[], Awaitable[bool]]:
    async def started() -> bool:
        return backend.state.slow_started > 0

    return started
