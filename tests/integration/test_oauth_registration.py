# treq and twisted.web are untyped; mypy strict would flag every call into them
# mypy: disable-error-code="no-untyped-call"
"""Registration and guessing limits of the real daemon's authorization server.

New requirement ID, in the numbering of ``shared/reference/REQUIREMENTS.md``:

* ATK-37 [AS] Registration limits: ``/register`` is rate-limited per source, and so are
  failed ``/token`` and ``/authorize`` requests (429 with ``Retry-After``); the source
  is the connection's address, never a header; the client cap is configuration; a full
  registry evicts its oldest never-used dynamically registered client instead of refusing
  everyone; clients that never completed an authorization are reaped after hours; an
  operator may close registration or require initial access tokens (RFC 7591 §3).

The daemon's issuer is its HTTP listener on loopback; every request comes from 127.0.0.1.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from twisted.trial.unittest import TestCase

from tests.integration.test_oauth_guard import (
    FORM,
    JSON,
    REDIRECT,
    AuthGateway,
    start_auth_gateway,
)


async def register(
    gateway: AuthGateway, name: str, token: str | None = None, **headers: str
) -> tuple[int, Any, Any]:
    """``POST /register`` for a public client named ``name``: (status, body, response)."""
    sent: Any = {**JSON, **{k: [v] for k, v in headers.items()}}
    if token is not None:
        sent["Authorization"] = [f"Bearer {token}"]
    metadata = {
        "redirect_uris": [REDIRECT],
        "client_name": name,
        "token_endpoint_auth_method": "none",
    }
    response, body = await gateway.fetch(
        "POST", f"{gateway.issuer}/register", sent, data=json.dumps(metadata).encode()
    )
    return response.code, json.loads(body), response


class RateLimitTests(TestCase):
    """ATK-37: what one source may send."""

    timeout = 120

    async def test_registrations_of_one_source_are_limited(self) -> None:
        """ATK-37, ATK-28: past the per-source rate, /register answers 429 + Retry-After.

        Every request carries another X-Forwarded-For: the source is the connection.
        """
        gateway = await start_auth_gateway(self, OAUTH_REGISTER_RATE="3/hour")
        for n in range(3):
            status, body, _ = await register(gateway, f"c{n}", **{"X-Forwarded-For": f"10.0.0.{n}"})
            self.assertEqual(status, 201, body)
        status, body, response = await register(gateway, "c9", **{"X-Forwarded-For": "10.9.9.9"})
        self.assertEqual(status, 429, body)
        self.assertEqual(body["error"], "temporarily_unavailable")
        [retry] = response.headers.getRawHeaders(b"retry-after")
        self.assertGreater(int(retry), 0)

    async def test_failed_token_requests_of_one_source_are_limited(self) -> None:
        """ATK-37: guessing codes at /token is cut off after the failure budget."""
        gateway = await start_auth_gateway(self, OAUTH_FAILURE_RATE="4/minute")
        _, client, _ = await register(gateway, "guesser")
        statuses = []
        for n in range(6):
            form = {"grant_type": "authorization_code", "code": f"guess-{n}",
                    "client_id": client["client_id"], "code_verifier": "v" * 43}  # fmt: skip
            response, _ = await gateway.fetch(
                "POST", f"{gateway.issuer}/token", FORM, data=urlencode(form).encode()
            )
            statuses.append(response.code)
        self.assertEqual(statuses, [400, 400, 400, 400, 429, 429])

    async def test_failed_authorize_requests_of_one_source_are_limited(self) -> None:
        """ATK-37: probing /authorize with unknown clients is cut off as well."""
        gateway = await start_auth_gateway(self, OAUTH_FAILURE_RATE="2/minute")
        statuses = []
        for n in range(3):
            query = urlencode({"response_type": "code", "client_id": f"probe-{n}"})
            response, _ = await gateway.fetch("GET", f"{gateway.issuer}/authorize?{query}")
            statuses.append(response.code)
        self.assertEqual(statuses, [401, 401, 429])


class RegistryTests(TestCase):
    """ATK-37: the registry stays open to new clients, and may be closed on purpose."""

    timeout = 120

    async def test_full_registry_evicts_the_oldest_unused_client(self) -> None:
        """ATK-37, ATK-28: at the cap, a new client replaces the oldest never-used one."""
        gateway = await start_auth_gateway(self, OAUTH_MAX_CLIENTS="3")
        _, used, _ = await register(gateway, "used")
        params = await gateway.authorize(used["client_id"], gateway.issuer)
        self.assertIn("code", params)
        _, oldest, _ = await register(gateway, "oldest unused")
        await register(gateway, "newer unused")
        status, newest, _ = await register(gateway, "newest")
        self.assertEqual(status, 201, newest)
        code, clients = await gateway.api("GET", "/oauth/clients")
        self.assertEqual(code, 200, clients)
        names = sorted(c["client_name"] for c in clients["items"])
        self.assertEqual(names, ["newer unused", "newest", "used"])
        self.assertNotIn(oldest["client_id"], json.dumps(clients))

    async def test_registration_with_initial_access_tokens(self) -> None:
        """ATK-37, RFC 7591 §3: closed registration needs an operator's initial token."""
        gateway = await start_auth_gateway(self, OAUTH_REGISTRATION="token")
        status, body, response = await register(gateway, "anonymous")
        self.assertEqual((status, body["error"]), (401, "invalid_token"), body)
        self.assertTrue(response.headers.getRawHeaders(b"www-authenticate"))
        code, issued = await gateway.api(
            "POST", "/oauth/initial-tokens", {"name": "ci", "max_uses": 1}
        )
        self.assertEqual(code, 201, issued)
        status, body, _ = await register(gateway, "invited", issued["token"])
        self.assertEqual(status, 201, body)
        status, body, _ = await register(gateway, "again", issued["token"])
        self.assertEqual(status, 401, body)
        code, listed = await gateway.api("GET", "/oauth/initial-tokens")
        self.assertEqual(code, 200, listed)
        self.assertEqual([(t["name"], t["uses"]) for t in listed["items"]], [("ci", 1)])
        self.assertNotIn(issued["token"], json.dumps(listed))

    async def test_closed_registration(self) -> None:
        """ATK-37: OAUTH_REGISTRATION=closed refuses DCR and stops advertising it."""
        gateway = await start_auth_gateway(self, OAUTH_REGISTRATION="closed")
        status, body, _ = await register(gateway, "anyone")
        self.assertEqual(status, 403, body)
        _, metadata = await gateway.fetch(
            "GET", f"{gateway.issuer}/.well-known/oauth-authorization-server"
        )
        self.assertNotIn("registration_endpoint", json.loads(metadata))
