"""Fetching client ID metadata documents (CIMD, MCP-7) without becoming an SSRF proxy.

:class:`MetadataDocumentFetcher` resolves the ``client_id`` URL's host itself, refuses
the whole name if any answer is a special-use address (ATK-4, :func:`cimd.check_addresses`),
then connects to the approved address only (TLS still verifies the URL's host name),
so a second DNS answer cannot redirect the fetch.  Redirects are never followed, the
body is capped at 5 KB while it arrives, and the whole fetch has a deadline.  The
document becomes a ``source="cimd"`` client cached for its ``Cache-Control`` lifetime.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from attrs import define, evolve, field, frozen
from OpenSSL import SSL, crypto
from treq.client import HTTPClient
from treq.content import collect
from twisted.internet import defer
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IHostResolution, IReactorTime, IResolutionReceiver
from twisted.internet.ssl import optionsForClientTLS
from twisted.web.client import Agent, HTTPConnectionPool, ResponseFailed
from twisted.web.iweb import IAgent, IAgentEndpointFactory
from zope.interface import implementer

from oauthproxy.oauth import cimd
from oauthproxy.oauth.errors import InvalidClient
from oauthproxy.oauth.records import OAuthClient
from oauthproxy.tls_trust import pem_certificates

#: (hostname, approved address, port) -> the agent that reaches exactly that address
AgentFactory = Callable[[str, str, int], IAgent]
#: what the fetch asks for
ACCEPT_JSON: dict[bytes | str, bytes | str] = {"Accept": "application/json"}
#: hostname -> every address it resolves to
Resolver = Callable[[str], Deferred[list[str]]]


@implementer(IResolutionReceiver)
class _Addresses:
    """Collects the answers of one ``resolveHostName`` call."""

    def __init__(self) -> None:
        self.addresses: list[str] = []
        self.done: Deferred[list[str]] = Deferred()

    def resolutionBegan(self, resolution: IHostResolution) -> None:
        """Nothing to do."""

    def addressResolved(self, address: Any) -> None:
        """Keep one answer."""
        self.addresses.append(str(address.host))

    def resolutionComplete(self) -> None:
        """Hand over every answer."""
        self.done.callback(self.addresses)


def reactor_resolver(reactor: Any) -> Resolver:
    """A resolver over the reactor's (non-blocking) host name resolver."""

    def resolve(hostname: str) -> Deferred[list[str]]:
        receiver = _Addresses()
        reactor.nameResolver.resolveHostName(receiver, hostname, 443)
        return receiver.done

    return resolve


@implementer(IOpenSSLTrustRoot)
@frozen
class SystemAndExtraAuthorities:
    """The system's CAs plus those of a PEM bundle (``OAUTHPROXY_CIMD_CA_BUNDLE``)."""

    certificates: tuple[crypto.X509, ...]

    @classmethod
    def from_pem(cls, pem: bytes) -> SystemAndExtraAuthorities:
        """Every certificate in ``pem``."""
        return cls(tuple(pem_certificates(pem)))

    def _addCACertsToContext(self, context: SSL.Context) -> None:
        """Trust the system store and the extra CAs."""
        context.set_default_verify_paths()
        store = context.get_cert_store()
        assert store is not None
        for certificate in self.certificates:
            store.add_cert(certificate)


@implementer(IAgentEndpointFactory)
@define
class _PinnedEndpoints:
    """Connects to one approved address whatever the URL says; TLS checks ``hostname``."""

    reactor: Any
    hostname: str
    address: str
    port: int
    #: None = the system's CAs
    trust_root: IOpenSSLTrustRoot | None = None

    def endpointForURI(self, uri: Any) -> Any:
        """A TLS endpoint to the approved address."""
        kind = TCP6ClientEndpoint if ":" in self.address else TCP4ClientEndpoint
        tcp = kind(self.reactor, self.address, self.port, timeout=5)
        options = optionsForClientTLS(self.hostname, trustRoot=self.trust_root)
        return wrapClientTLS(options, tcp)


def pinned_agent_factory(
    reactor: Any, pool: HTTPConnectionPool, trust_root: IOpenSSLTrustRoot | None = None
) -> AgentFactory:
    """Agents that reach only the address the SSRF check approved."""

    def factory(hostname: str, address: str, port: int) -> IAgent:
        endpoints = _PinnedEndpoints(reactor, hostname, address, port, trust_root)
        agent: IAgent = Agent.usingEndpointFactory(  # type: ignore[no-untyped-call]
            reactor, endpoints, pool=pool
        )
        return agent

    return factory


@define
class MetadataDocumentFetcher:
    """Fetches and validates CIMD documents; see the module docstring."""

    clock: IReactorTime
    resolve: Resolver
    agent_for: AgentFactory
    timeout: float = 5.0
    check_addresses: Callable[[list[str]], tuple[str, ...]] = field(default=cimd.check_addresses)

    async def fetch(self, url: str) -> OAuthClient:
        """The client ``url`` describes, with its cache expiry; InvalidClient otherwise."""
        cimd.validate_client_id_url(url)
        parts = urlsplit(url)
        hostname = parts.hostname or ""
        try:
            addresses = self.check_addresses(await self._timed(self.resolve(hostname)))
            agent = self.agent_for(hostname, addresses[0], parts.port or 443)
            response = await self._timed(
                HTTPClient(agent).get(url, headers=ACCEPT_JSON, allow_redirects=False)
            )
            length = response.length if isinstance(response.length, int) else None
            cimd.check_fetch_response(response.code, length)
            body = await self._timed(self._bounded_body(response))
        except (defer.TimeoutError, ResponseFailed, OSError) as e:
            raise InvalidClient(
                f"client metadata document could not be fetched ({type(e).__name__})",
                "client_id",
            ) from None
        now = self.clock.seconds()
        client = cimd.parse_client_metadata_document(url, body, now=now)
        lifetime = cimd.cache_lifetime(response.headers.getRawHeaders("cache-control", [None])[0])
        return evolve(client, cache_expires_at=now + lifetime if lifetime > 0 else 0.0)

    def _bounded_body(self, response: Any) -> Deferred[bytes]:
        """The body, abandoned as soon as it exceeds the document size limit."""
        chunks: list[bytes] = []

        def collector(data: bytes) -> None:
            chunks.append(data)
            if sum(map(len, chunks)) > cimd.MAX_DOCUMENT_SIZE:
                raise InvalidClient("client metadata document is too large", "client_id")

        return collect(response, collector).addCallback(lambda _: b"".join(chunks))

    async def _timed(self, d: Deferred[Any]) -> Any:
        """Await ``d`` within the fetch's deadline."""
        return await d.addTimeout(self.timeout, self.clock)
