# treq and twisted.web are untyped; mypy strict would flag every call into them
# mypy: disable-error-code="no-untyped-call"
"""Refresh-token reuse and code replay against the real daemon, races repeated many times.

New requirement IDs, in the numbering of ``shared/reference/REQUIREMENTS.md``:

* ATK-34 [AS] Refresh family revocation: any reuse of a rotated-out refresh token, at any
  time after its rotation and also when two requests race for it, refuses the request and
  revokes the whole family: every refresh token and every access token it produced (the
  gateway refuses them), and no request ever gets a second, sibling successor (OAuth 2.1
  §4.3.1, RFC 9700 §4.14, BCP-4).  A retry window for lost responses is off by default;
  when configured, a retry inside it gets the very same pair the first request got.
* ATK-35 [AS] A replayed authorization code revokes what its first redemption issued even
  when both redemptions race: the first one's tokens never outlive the replay (O21-6).

Each race runs many times: one run proves little about an interleaving.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from tests.integration.test_oauth_guard import (
    FORM,
    AuthGateway,
    start_auth_gateway,
    status_is,
    wait_until,
)
from tests.support.backends import start_backend

#: how often each race is run
REPETITIONS = 15
#: concurrent uses of one refresh token per run
RACERS = 4


async def _refresh(gateway: AuthGateway, client_id: str, token: str) -> tuple[int, Any]:
    """One refresh grant: ``(status, JSON body)``."""
    form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id}
    response, body = await gateway.fetch(
        "POST", f"{gateway.issuer}/token", FORM, data=urlencode(form).encode()
    )
    return response.code, json.loads(body)


async def _refused(gateway: AuthGateway, host: str, token: str) -> bool:
    """Whether the gateway answers 401 to ``token`` now (a cut request: ask again)."""
    return await status_is(gateway, host, token, 401)


class RefreshReuseTests(TestCase):
    """ATK-34 through the daemon's token endpoint and gateway."""

    timeout = 240

    async def setUp(self) -> None:
        """A daemon, a protected proxy in front of an echo backend, a registered client."""
        # the races fail many requests on purpose: no failure budget (ATK-37) here
        self.gateway = await start_auth_gateway(self, OAUTH_FAILURE_RATE="off")
        backend = await start_backend(self, reactor)
        await self.gateway.protect("a.test", backend)
        self.resource = self.gateway.resource("a.test")
        self.client_id = await self.gateway.register(refresh=True)

    async def tokens(self) -> dict[str, Any]:
        """A fresh login: the token response."""
        params = await self.gateway.authorize(self.client_id, self.resource)
        return await self.gateway.token(self.client_id, params["code"][0])

    async def test_immediate_reuse_revokes_the_family(self) -> None:
        """ATK-34, BCP-4, O21-9: reusing a rotated token at once is refused, family revoked."""
        first = await self.tokens()
        status, second = await _refresh(self.gateway, self.client_id, first["refresh_token"])
        self.assertEqual(status, 200, second)
        status, reuse = await _refresh(self.gateway, self.client_id, first["refresh_token"])
        self.assertEqual((status, reuse["error"]), (400, "invalid_grant"), reuse)
        status, after = await _refresh(self.gateway, self.client_id, second["refresh_token"])
        self.assertEqual((status, after["error"]), (400, "invalid_grant"), after)
        for access in (first["access_token"], second["access_token"]):
            await wait_until(lambda access=access: _refused(self.gateway, "a.test", access), 1.0)

    async def test_racing_reuse_never_leaves_a_live_sibling(self) -> None:
        """ATK-34: concurrent uses of one refresh token: at most one wins, and not for long.

        A reuse revokes the family, so whatever the race handed out (the winner's pair,
        if any) is refused afterwards: no branch of the family survives.
        """
        for run in range(REPETITIONS):
            first = await self.tokens()
            results = await defer.gatherResults(
                [
                    defer.Deferred.fromCoroutine(
                        _refresh(self.gateway, self.client_id, first["refresh_token"])
                    )
                    for _ in range(RACERS)
                ]
            )
            winners = [body for status, body in results if status == 200]
            self.assertLessEqual(len(winners), 1, (run, results))
            self.assertTrue(all(status in (200, 400) for status, _ in results), results)
            for body in winners:
                status, again = await _refresh(self.gateway, self.client_id, body["refresh_token"])
                self.assertEqual(status, 400, (run, again))
                await wait_until(
                    lambda b=body: _refused(self.gateway, "a.test", b["access_token"]), 1.0
                )
            await wait_until(
                lambda f=first: _refused(self.gateway, "a.test", f["access_token"]), 1.0
            )


class RetryWindowTests(TestCase):
    """ATK-34: a configured retry window hands back the same pair, never a new one."""

    timeout = 120

    async def test_retry_inside_the_window_gets_the_same_pair(self) -> None:
        """ATK-34: with OAUTH_REFRESH_RETRY_WINDOW a lost response is recovered as it was."""
        gateway = await start_auth_gateway(self, OAUTH_REFRESH_RETRY_WINDOW="30")
        backend = await start_backend(self, reactor)
        await gateway.protect("a.test", backend)
        client_id = await gateway.register(refresh=True)
        params = await gateway.authorize(client_id, gateway.resource("a.test"))
        first = await gateway.token(client_id, params["code"][0])
        status, second = await _refresh(gateway, client_id, first["refresh_token"])
        self.assertEqual(status, 200, second)
        status, retried = await _refresh(gateway, client_id, first["refresh_token"])
        self.assertEqual(status, 200, retried)
        self.assertEqual(retried, second)
        self.assertEqual((await gateway.call("a.test", "/", second["access_token"])).code, 200)
        status, third = await _refresh(gateway, client_id, second["refresh_token"])
        self.assertEqual(status, 200, third)


class CodeReplayRaceTests(TestCase):
    """ATK-35 through the daemon: two redemptions of one code at once."""

    timeout = 240

    async def test_racing_replay_revokes_the_first_redemption(self) -> None:
        """ATK-35, O21-6, ATK-20: whichever redemption wins, its tokens are revoked."""
        gateway = await start_auth_gateway(self, OAUTH_FAILURE_RATE="off")
        backend = await start_backend(self, reactor)
        await gateway.protect("a.test", backend)
        client_id = await gateway.register(refresh=True)
        for run in range(REPETITIONS):
            params = await gateway.authorize(client_id, gateway.resource("a.test"))
            code = params["code"][0]
            results = await defer.gatherResults(
                [defer.Deferred.fromCoroutine(gateway.redeem(client_id, code)) for _ in range(2)]
            )
            winners = [body for status, body in results if status == 200]
            self.assertLessEqual(len(winners), 1, (run, results))
            for body in winners:
                await wait_until(lambda b=body: _refused(gateway, "a.test", b["access_token"]), 1.0)
                status, refreshed = await _refresh(gateway, client_id, body["refresh_token"])
                self.assertEqual(status, 400, (run, refreshed))
