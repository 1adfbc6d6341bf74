# treq and twisted.web are untyped; mypy strict would flag every call into them
# mypy: disable-error-code="no-untyped-call"
"""``oauthproxyctl oauth keys rotate`` against the real daemon (issue 11).

The next key is published (JWKS) before it signs; at its activation the daemon signs new
tokens with it; the old key leaves the JWKS once the longest token lifetime has passed.
The refusal of a token signed by a retired key, unexpired, is shown in
``tests.oauth.test_key_rotation`` with a clock (here tokens expire before their key
retires, by design).
"""

from __future__ import annotations

import json
from typing import Any

from joserfc import jws
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tests.cli.test_proxy_route_service import Ctl
from tests.integration.test_oauth_guard import AuthGateway, start_auth_gateway, wait_until
from tests.support.backends import start_backend


def kid_of(token: str) -> str:
    """The ``kid`` in a JWT's header."""
    return str(jws.extract_compact(token.encode()).protected["kid"])


async def jwks_kids(gateway: AuthGateway) -> set[str]:
    """The kids of the daemon's ``/jwks``."""
    _, body = await gateway.fetch("GET", f"{gateway.issuer}/jwks")
    return {key["kid"] for key in json.loads(body)["keys"]}


class KeyRotationTests(TestCase):
    """Rotation through the CLI, watched through the JWKS and the tokens."""

    timeout = 120

    async def test_rotation_publishes_first_then_signs_then_retires(self) -> None:
        """The next key: in the JWKS at once, signing at activation, the old one gone later."""
        gateway = await start_auth_gateway(self, OAUTH_ACCESS_TOKEN_LIFETIME="4")
        backend = await start_backend(self, reactor)
        await gateway.protect("a.test", backend)
        ctl = Ctl(self, gateway.daemon.api_url, gateway.admin)
        client_id = await gateway.register()

        async def login() -> str:
            params = await gateway.authorize(client_id, gateway.resource("a.test"))
            token: str = (await gateway.token(client_id, params["code"][0]))["access_token"]
            return token

        old = kid_of(await login())
        rotated: dict[str, Any] = await ctl.json("oauth", "keys", "rotate", "--activate-in", "2")
        self.assertEqual(rotated["state"], "next")
        new = rotated["kid"]

        async def both_published() -> bool:
            return await jwks_kids(gateway) == {old, new}

        await wait_until(both_published, 2.0)
        states = {k["kid"]: k["state"] for k in await ctl.json("oauth", "keys", "list")}
        self.assertEqual(states, {old: "active", new: "next"})
        line = await ctl.fails("oauth", "keys", "rotate")
        self.assertIn(new, line)

        async def signs_with_new() -> bool:
            return kid_of(await login()) == new

        await wait_until(signs_with_new, 5.0)
        after = await login()
        self.assertEqual((await gateway.call("a.test", "/", after)).code, 200)

        async def old_gone() -> bool:
            return await jwks_kids(gateway) == {new}

        await wait_until(old_gone, 8.0)
        states = {k["kid"]: k["state"] for k in await ctl.json("oauth", "keys", "list")}
        self.assertEqual(states, {old: "retired", new: "active"})
