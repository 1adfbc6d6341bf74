# treq and twisted are partly untyped; mypy strict would flag calls into them
# mypy: disable-error-code="no-untyped-call"
"""The MCP Python SDK as the client, a real MCP server behind an OAuth-protected proxy.

Nobody here wrote either end: ``mcp.client.auth.OAuthClientProvider`` discovers everything
from the 401 and the metadata documents, registers (DCR) or uses a pre-registered client,
logs in through the fake GitHub, and calls tools of an ``MCPServer`` from the same SDK
(:mod:`tests.support.mcp_server`) that sits behind the daemon's gateway.

The SDK compares the protected-resource ``resource`` with the URL it connects to, so the
client must use the proxy's real resource URL, ``https://mcp.test`` (port 443).  The daemon's
HTTPS listener therefore binds port 443 on a private loopback address (127.0.0.x), with a
certificate of a test CA for ``mcp.test`` and ``auth.test`` written to its store; the client's
transport sends ``*.test`` to that address (SNI and ``Host`` unchanged) and trusts the CA.
The SDK client is asyncio code, run in a thread while the reactor serves the fake GitHub.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import socket
import ssl
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import httpx2
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)
from twisted.internet import reactor, task
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from oauthproxy.bootstrap import open_storage
from oauthproxy.config import Config
from tests.integration.test_oauth_guard import LOOPBACK_ACME, wait_until
from tests.support.daemon import DaemonProcess, start_daemon
from tests.support.fake_github import FakeGitHub, FakeUser, start_fake_github
from tests.support.mcp_server import start_mcp_server
from tests.support.metadata_host import start_metadata_host
from tests.support.tls import TestAuthority

ISSUER = "https://auth.test"
MCP_URL = "https://mcp.test/mcp"
REDIRECT = "http://127.0.0.1:50321/callback"


def free_loopback_address() -> str:
    """A 127.0.0.x address whose port 443 is free (so tests on one machine do not clash)."""
    for _ in range(50):
        address = f"127.0.0.{random.randint(100, 250)}"
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((address, 443))
            except OSError:
                continue
            return address
    raise AssertionError("no loopback address with a free port 443")


class LoopbackTransport(httpx2.AsyncBaseTransport):
    """Sends ``*.test`` to one loopback address, keeping SNI and Host; one pool per host.

    One pool per host name: the gateway refuses a request whose Host differs from the
    connection's SNI name (421, ATK-13), so connections are never shared across names.
    """

    def __init__(self, address: str, context: ssl.SSLContext) -> None:
        self._address = address
        self._context = context
        self._transports: dict[str, httpx2.AsyncHTTPTransport] = {}
        #: (method, host + path, status) of every exchange, for assertions and failures
        self.exchanges: list[tuple[str, str, int]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Route one request."""
        host = request.url.host
        transport = self._transports.get(host)
        if transport is None:
            transport = httpx2.AsyncHTTPTransport(verify=self._context)
            self._transports[host] = transport
        if host.endswith(".test"):
            # a copy: the client reads cookies and redirects off the request it sent
            request = httpx2.Request(
                request.method,
                request.url.copy_with(host=self._address),
                headers=request.headers,
                stream=request.stream,
                extensions={**request.extensions, "sni_hostname": host},
            )
        response = await transport.handle_async_request(request)
        self.exchanges.append((request.method, f"{host}{request.url.path}", response.status_code))
        return response

    async def aclose(self) -> None:
        """Close every pool."""
        for transport in self._transports.values():
            await transport.aclose()


class MemoryTokens:
    """The SDK's TokenStorage, in memory; remembers every token it was given."""

    def __init__(self, client: OAuthClientInformationFull | None = None) -> None:
        self.client = client
        self.tokens: OAuthToken | None = None
        self.history: list[OAuthToken] = []

    async def get_tokens(self) -> OAuthToken | None:
        """The current tokens."""
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        """New tokens (login or refresh)."""
        self.tokens = tokens
        self.history.append(tokens)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        """The registered client."""
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        """The client DCR registered."""
        self.client = client_info


class Browser:
    """Follows the authorize URL like a user: consent (with its CSRF token), GitHub, back."""

    def __init__(self, transport: LoopbackTransport) -> None:
        self._transport = transport
        self.result: AuthorizationCodeResult | None = None
        self.authorize_urls: list[str] = []

    async def redirect_handler(self, url: str) -> None:
        """The SDK hands us the authorize URL."""
        self.authorize_urls.append(url)
        async with httpx2.AsyncClient(transport=self._transport, timeout=10) as browser:
            page = await browser.get(url)
            assert page.status_code == 200, page.text
            fields = dict(re.findall(r'name="(request_id|csrf_token)" value="([^"]+)"', page.text))
            consent = await browser.post(
                f"{ISSUER}/authorize/consent", data={**fields, "decision": "approve"}
            )
            assert consent.status_code in (302, 303), consent.text
            location = consent.headers["location"]
            for _ in range(5):
                if location.startswith(REDIRECT):
                    break
                step = await browser.get(location)
                assert step.status_code in (302, 303), step.text
                location = step.headers["location"]
        params = parse_qs(urlsplit(location).query)
        assert "code" in params, location
        self.result = AuthorizationCodeResult(
            code=params["code"][0],
            state=params.get("state", [None])[0],
            iss=params.get("iss", [None])[0],
        )

    async def callback_handler(self) -> AuthorizationCodeResult:
        """The code the redirect brought back."""
        assert self.result is not None
        return self.result


async def run_client(
    address: str,
    ca_pem: str,
    storage: MemoryTokens,
    pause: float = 0.0,
    client_metadata_url: str | None = None,
) -> dict[str, Any]:
    """Connect with the SDK, call ``add`` and ``whoami`` (again after ``pause`` s).

    With ``client_metadata_url`` the SDK uses it as its client_id (CIMD) instead of DCR.
    """
    context = ssl.create_default_context(cadata=ca_pem)
    transport = LoopbackTransport(address, context)
    browser = Browser(transport)
    provider = OAuthClientProvider(
        server_url=MCP_URL,
        client_metadata=OAuthClientMetadata(
            redirect_uris=[REDIRECT],  # type: ignore[list-item]
            client_name="mcp sdk test",
            token_endpoint_auth_method="none",
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
        ),
        storage=storage,
        redirect_handler=browser.redirect_handler,
        callback_handler=browser.callback_handler,
        client_metadata_url=client_metadata_url,
    )
    seen: dict[str, Any] = {}
    try:
        await _session(transport, provider, seen, pause)
    except BaseExceptionGroup as group:
        # anyio wraps the SDK's error: surface the first one, it names the problem
        raise AssertionError(f"{_innermost(group)!r} after {transport.exchanges}") from group
    seen["logins"] = len(browser.authorize_urls)
    seen["exchanges"] = list(transport.exchanges)
    seen["authorize_url"] = browser.authorize_urls[0] if browser.authorize_urls else None
    return seen


def _innermost(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


async def _session(
    transport: LoopbackTransport, provider: OAuthClientProvider, seen: dict[str, Any], pause: float
) -> None:
    """One MCP session: initialize, call tools."""
    async with (
        httpx2.AsyncClient(transport=transport, auth=provider, timeout=30) as http,
        streamable_http_client(MCP_URL, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        added = await session.call_tool("add", {"a": 2, "b": 3})
        seen["add"] = added.content[0].text  # type: ignore[union-attr]
        who = await session.call_tool("whoami", {})
        seen["whoami"] = who.content[0].text  # type: ignore[union-attr]
        token = await session.call_tool("saw_authorization", {})
        seen["saw_authorization"] = token.content[0].text  # type: ignore[union-attr]
        if pause:
            await asyncio.sleep(pause)
            again = await session.call_tool("add", {"a": 4, "b": 5})
            seen["after_pause"] = again.content[0].text  # type: ignore[union-attr]


class SdkSetup:
    """The daemon on 127.0.0.x:443, its certificate, the MCP server behind ``mcp.test``."""

    def __init__(self, daemon: DaemonProcess, address: str, ca_pem: str) -> None:
        self.daemon = daemon
        self.address = address
        self.ca_pem = ca_pem

    async def api(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """The admin API as the admin."""
        token = self.daemon.admin_token
        assert token is not None
        return await _api(self.daemon, token, method, path, body)

    async def run_client(self, storage: MemoryTokens, **options: Any) -> dict[str, Any]:
        """:func:`run_client` in a thread; a failure also shows the daemon's error log.

        The SDK only says that the server answered an error: what the gateway recorded
        about it (an upstream failure, say) is in ``/logs/errors``.
        """
        try:
            seen: dict[str, Any] = await deferToThread(
                asyncio.run, run_client(self.address, self.ca_pem, storage, **options)
            )
        except AssertionError as e:
            raise AssertionError(f"{e}\nthe daemon's /logs/errors: {await self._errors()}") from e
        return seen

    async def _errors(self) -> Any:
        """The last few records of ``/logs/errors`` (waiting a moment for the log's flush)."""
        errors: Any = None
        for _ in range(20):
            _, errors = await self.daemon.get("/logs/errors?limit=5", self.daemon.admin_token)
            if not isinstance(errors, dict) or errors.get("items"):
                break
            await task.deferLater(reactor, 0.1, lambda: None)
        return errors


async def _api(
    daemon: DaemonProcess, token: str, method: str, path: str, body: Any
) -> tuple[int, Any]:
    import treq
    from twisted.web.client import HTTPConnectionPool

    pool = HTTPConnectionPool(reactor, persistent=False)
    try:
        response = await treq.request(
            method,
            daemon.api_url + path,
            data=json.dumps(body).encode(),
            headers=cast(
                Any, {"Authorization": [f"Bearer {token}"], "Content-Type": ["application/json"]}
            ),
            pool=pool,
            timeout=10,
        )
        content = await treq.content(response)
    finally:
        await pool.closeCachedConnections()
    return response.code, json.loads(content) if content else None


async def start_sdk_setup(test: TestCase, **env: str) -> SdkSetup:
    """Fake GitHub, the MCP server, the daemon with its HTTPS listener and certificate."""
    github = await start_fake_github(
        reactor, FakeGitHub("gh-id", "gh-secret", FakeUser(7, "alice"))
    )
    test.addCleanup(github.stop)
    mcp_url = await start_mcp_server(test)
    address = free_loopback_address()
    environment = {
        **LOOPBACK_ACME,
        "OAUTHPROXY_OAUTH_ISSUER": ISSUER,
        "GITHUB_CLIENT_ID": "gh-id",
        "GITHUB_CLIENT_SECRET": "gh-secret",
        "OAUTHPROXY_GITHUB_BASE_URL": github.base_url,
        "OAUTHPROXY_GITHUB_API_URL": github.base_url,
        **env,
    }
    daemon = await start_daemon(
        test, args=["--https", f"tcp:443:interface={address}"], env=environment
    )
    await daemon.wait_for(lambda body: "https" in body.get("listeners", {}))
    authority = TestAuthority.create()
    storage = open_storage(Config(data_dir=daemon.data_dir), reactor)
    test.addCleanup(storage.close)
    await storage.certificates.create(
        authority.issue("mcp.test", "auth.test", cert_name="sdk-test")
    )
    setup = SdkSetup(daemon, address, authority.ca_pem)
    target = mcp_url.removesuffix("/mcp")
    code, body = await setup.api(
        "POST", "/proxy/targets/", {"hostname": "mcp.test", "target_url": target}
    )
    assert code == 201, body
    code, body = await setup.api(
        "POST",
        "/proxy/targets/mcp.test/auth",
        {"auth_type": "oauth", "auth_proxy": "auth.test", "auth_mode": "forward"},
    )
    assert code in (200, 201), body
    await wait_until(lambda: deferToThread(asyncio.run, _ready(setup)), 10.0)
    return setup


async def _ready(setup: SdkSetup) -> bool:
    """The proxy answers 401 over TLS with the test certificate."""
    context = ssl.create_default_context(cadata=setup.ca_pem)
    transport = LoopbackTransport(setup.address, context)
    try:
        async with httpx2.AsyncClient(transport=transport, timeout=5) as http:
            response = await http.post(MCP_URL, json={})
            return response.status_code == 401
    except (httpx2.HTTPError, ssl.SSLError, OSError):
        return False
    finally:
        await transport.aclose()


class McpSdkTests(TestCase):
    """The SDK's OAuth client against the daemon, end to end."""

    timeout = 180

    async def test_dcr_login_and_tool_call(self) -> None:
        """MCP-1..5, MCP-8, MCP-11, MCP-19, MCP-22: discovery, DCR, PKCE login, tool call.

        The tool call runs over streamable HTTP through the proxy (MCP-22).
        """
        setup = await start_sdk_setup(self)
        storage = MemoryTokens()
        seen = await setup.run_client(storage)
        self.assertEqual(seen["add"], "5")
        self.assertEqual(seen["whoami"], "alice")
        self.assertEqual(seen["saw_authorization"], "no")
        self.assertEqual(seen["logins"], 1)
        assert storage.client is not None
        query = parse_qs(urlsplit(seen["authorize_url"]).query)
        self.assertEqual(query["resource"], ["https://mcp.test"])
        self.assertEqual(query["code_challenge_method"], ["S256"])

    async def test_pre_registered_client(self) -> None:
        """A client registered by the operator (``POST /oauth/clients``) logs in without DCR."""
        setup = await start_sdk_setup(self)
        code, client = await setup.api(
            "POST",
            "/oauth/clients",
            {
                "redirect_uris": [REDIRECT],
                "client_name": "pre-registered",
                "token_endpoint_auth_method": "client_secret_post",
            },
        )
        self.assertEqual(code, 201, client)
        info = OAuthClientInformationFull(
            client_id=client["client_id"],
            client_secret=client["client_secret"],
            redirect_uris=[REDIRECT],  # type: ignore[list-item]
            token_endpoint_auth_method="client_secret_post",
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
        )
        storage = MemoryTokens(info)
        seen = await setup.run_client(storage)
        self.assertEqual(seen["add"], "5")
        assert storage.client is not None
        self.assertEqual(storage.client.client_id, client["client_id"])

    async def test_refresh_after_access_token_expires(self) -> None:
        """O21-6, MCP-17: a call after the access token expired refreshes it, no new login.

        The lifetime (25 s) covers login and session setup with room to spare: until the
        gateway relays a response head before the first body byte, the SDK's GET stream
        waits for the MCP server's first SSE ping (15 s).
        """
        setup = await start_sdk_setup(self, OAUTH_ACCESS_TOKEN_LIFETIME="25")
        storage = MemoryTokens()
        seen = await setup.run_client(storage, pause=26.0)
        self.assertEqual(seen["after_pause"], "9")
        self.assertEqual(seen["logins"], 1, seen["exchanges"])
        self.assertEqual(len(storage.history), 2)
        first, last = storage.history
        self.assertNotEqual(first.access_token, last.access_token)
        self.assertNotEqual(first.refresh_token, last.refresh_token)

    async def test_client_id_metadata_document(self) -> None:
        """MCP-6, MCP-7: the SDK uses a CIMD URL as its client_id; the daemon fetches it.

        The document lives on loopback, which the SSRF guard refuses unless the operator
        lists the network (``OAUTHPROXY_CIMD_ALLOWED_NETWORKS``); its host's CA is given
        with ``OAUTHPROXY_CIMD_CA_BUNDLE``.  No registration happens.
        """
        host = start_metadata_host(
            self,
            {
                "client_name": "mcp sdk cimd test",
                "redirect_uris": [REDIRECT],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            },
        )
        setup = await start_sdk_setup(
            self,
            OAUTHPROXY_CIMD_ALLOWED_NETWORKS="127.0.0.0/8",
            OAUTHPROXY_CIMD_CA_BUNDLE=host.ca_bundle,
        )
        storage = MemoryTokens()
        seen = await setup.run_client(storage, client_metadata_url=host.url)
        self.assertEqual(seen["add"], "5")
        self.assertEqual(seen["whoami"], "alice")
        query = parse_qs(urlsplit(seen["authorize_url"]).query)
        self.assertEqual(query["client_id"], [host.url])
        self.assertNotIn(("POST", "auth.test/register", 201), seen["exchanges"])
        code, clients = await setup.api("GET", "/oauth/clients?source=cimd", None)
        self.assertEqual(code, 200, clients)
        self.assertIn(host.url, json.dumps(clients))
