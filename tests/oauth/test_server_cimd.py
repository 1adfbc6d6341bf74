"""Client ID metadata documents fetched by the server: SSRF guards, limits, caching (MCP-7)."""

from __future__ import annotations

import json
from typing import Any

from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Request

from oauthproxy.oauth.errors import InvalidClient
from oauthproxy.oauth.resource_cimd import MetadataDocumentFetcher
from tests.oauth.server_harness import OAuthHarness

URL = "https://client.example.com/oauth/metadata.json"
PUBLIC = "93.184.216.34"


def document(**changes: Any) -> dict[str, Any]:
    """A valid CIMD document for :data:`URL`."""
    return {
        "client_id": URL,
        "client_name": "Example MCP Client",
        "redirect_uris": ["http://127.0.0.1:50123/cb"],
        **changes,
    }


class DocumentSite(Resource):
    """Serves one answer for every path, and counts requests."""

    isLeaf = True

    def __init__(
        self, body: bytes, status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.body, self.status, self.headers = body, status, headers or {}
        self.requests = 0

    def render_GET(self, request: Request) -> bytes:
        """The configured answer."""
        self.requests += 1
        request.setResponseCode(self.status)
        for name, value in self.headers.items():
            request.responseHeaders.setRawHeaders(name, [value])
        return self.body


class Fetching:
    """A fetcher whose DNS and network are stand-ins; records where it connected."""

    def __init__(
        self, site: DocumentSite, addresses: list[str], clock: Clock | None = None
    ) -> None:
        self.clock = clock or Clock()
        self.agent: Any = RequestTraversalAgent(site)  # type: ignore[no-untyped-call]
        self.connected: list[tuple[str, str, int]] = []

        def agent_for(hostname: str, address: str, port: int) -> Any:
            self.connected.append((hostname, address, port))
            return self.agent

        self.fetcher = MetadataDocumentFetcher(
            self.clock, lambda host: succeed(list(addresses)), agent_for
        )

    def fetch(self, test: SynchronousTestCase, url: str = URL) -> Deferred[Any]:
        """Start a fetch and pump the stand-in network."""
        d = Deferred.fromCoroutine(self.fetcher.fetch(url))
        for _ in range(20):
            self.agent.flush()
        return d


class FetcherTests(SynchronousTestCase):
    """MetadataDocumentFetcher."""

    def test_private_address_is_never_contacted(self) -> None:
        """ATK-4: a host resolving to loopback is refused before any connection."""
        fetching = Fetching(DocumentSite(json.dumps(document()).encode()), ["127.0.0.1"])
        self.failureResultOf(fetching.fetch(self), InvalidClient)
        self.assertEqual(fetching.connected, [])

    def test_mixed_answers_taint_the_name(self) -> None:
        """ATK-4: one special-use answer among public ones refuses the name (rebinding)."""
        fetching = Fetching(DocumentSite(b"{}"), [PUBLIC, "10.0.0.1"])
        self.failureResultOf(fetching.fetch(self), InvalidClient)
        self.assertEqual(fetching.connected, [])

    def test_valid_document_becomes_a_cached_client(self) -> None:
        """MCP-7: the document's client, cached for its max-age, fetched at the approved IP."""
        site = DocumentSite(
            json.dumps(document()).encode(), headers={"Cache-Control": "max-age=60"}
        )
        fetching = Fetching(site, [PUBLIC])
        client = self.successResultOf(fetching.fetch(self))
        self.assertEqual((client.client_id, client.source), (URL, "cimd"))
        self.assertEqual(client.cache_expires_at, fetching.clock.seconds() + 60)
        self.assertEqual(fetching.connected, [("client.example.com", PUBLIC, 443)])

    def test_redirect_is_not_followed(self) -> None:
        """MCP-7: a redirecting document URL is refused."""
        site = DocumentSite(b"", status=302, headers={"Location": "https://elsewhere/"})
        self.failureResultOf(Fetching(site, [PUBLIC]).fetch(self), InvalidClient)

    def test_oversized_document_is_refused(self) -> None:
        """MCP-7: a document over 5 KB is refused."""
        big = json.dumps(document(client_uri="https://x.example/" + "a" * 6000)).encode()
        self.failureResultOf(Fetching(DocumentSite(big), [PUBLIC]).fetch(self), InvalidClient)

    def test_document_for_another_url_is_refused(self) -> None:
        """MCP-7: the document's client_id must equal its URL exactly."""
        other = json.dumps(document(client_id=URL + "?x")).encode()
        self.failureResultOf(Fetching(DocumentSite(other), [PUBLIC]).fetch(self), InvalidClient)


class ServerTests(SynchronousTestCase):
    """The server with a CIMD fetcher."""

    def setUp(self) -> None:
        """A harness whose server fetches from a stand-in site."""
        self.site = DocumentSite(
            json.dumps(document()).encode(), headers={"Cache-Control": "max-age=600"}
        )
        self.h = OAuthHarness(self)
        self.fetching = Fetching(self.site, [PUBLIC], self.h.clock)
        self.h.server.documents = self.fetching.fetcher

    def authorize(self) -> Any:
        """GET /authorize for the CIMD client, pumping the stand-in network."""
        d = self.h.treq.request("GET", "https://auth.example.test" + self.h.authorize_query(URL))
        for _ in range(20):
            self.fetching.agent.flush()
            self.h.treq.flush()
        response = self.successResultOf(d)
        return response, self.h.settle(self.h.treq.content(response))

    def test_consent_page_names_the_document_host(self) -> None:
        """MCP-7, MCP-20: the consent page shows the host publishing the client."""
        response, body = self.authorize()
        self.assertEqual(response.code, 200, body)
        self.assertIn(b"client.example.com", body)

    def test_document_is_fetched_once_while_cached(self) -> None:
        """MCP-7: within its cache lifetime the document is not fetched again."""
        self.authorize()
        self.authorize()
        self.assertEqual(self.site.requests, 1)

    def test_metadata_advertises_cimd(self) -> None:
        """MCP-7: the server metadata says client ID metadata documents are supported."""
        answer = self.h.call("GET", "/.well-known/oauth-authorization-server")
        self.assertTrue(answer.json()["client_id_metadata_document_supported"])
