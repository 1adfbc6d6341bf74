"""The admin API as one Twisted resource: the resource classes mounted side by side.

:class:`AdminAPI` builds the shared :class:`~oauthproxy.admin.endpoint.ApiContext`
(authenticator, limits), the resource classes, and the OpenAPI document from their
declarations.  :class:`ApiRoot` dispatches each request to the resource whose Klein
routes match it and answers unmatched paths and methods with the same JSON errors
as the endpoints (404, 405).  Serve it with :meth:`AdminAPI.site`, whose request
factory stops keeping request bodies past the size limit.

Adding a resource: write a class like :class:`~oauthproxy.admin.tokens.TokenResource`
and construct it in :meth:`AdminAPI.resources` (or pass it to :meth:`AdminAPI.resource`
when its dependencies live elsewhere); it then appears in ``/openapi.json`` too.
The place for ``/docs`` (Swagger UI from vendored assets) is next to
:class:`~oauthproxy.admin.openapi.OpenApiResource`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from attrs import define, field
from klein import Klein
from klein.resource import KleinResource
from twisted.internet.interfaces import IReactorTime
from twisted.web import http
from twisted.web.resource import IResource
from twisted.web.server import Request, Site
from werkzeug.exceptions import MethodNotAllowed as WerkzeugMethodNotAllowed
from werkzeug.exceptions import NotFound as WerkzeugNotFound
from werkzeug.routing import RequestRedirect
from zope.interface import implementer

from oauthproxy import __version__
from oauthproxy.acme.service import IssuingService
from oauthproxy.admin.access import Authenticator, NoAccessTokens
from oauthproxy.admin.auth_config import ProxyAuthResource, RouteAuthResource
from oauthproxy.admin.auth_rules import AuthRuleResource
from oauthproxy.admin.certificates import CertificateResource
from oauthproxy.admin.docker_containers import DockerContainerResource
from oauthproxy.admin.docker_services import DockerServiceResource, DockerWiring
from oauthproxy.admin.docs import DocsResource
from oauthproxy.admin.endpoint import ApiContext, endpoints_of
from oauthproxy.admin.errors import MalformedRequest, MethodNotAllowed, render_error
from oauthproxy.admin.health import HealthResource, HealthSource, Readiness
from oauthproxy.admin.inputs import DEFAULT_MAX_BODY, bounded_request
from oauthproxy.admin.log_charts import LogChartResource
from oauthproxy.admin.logs import LogResource
from oauthproxy.admin.metrics import MetricsResource
from oauthproxy.admin.oauth_admin import OAuthAdminResource
from oauthproxy.admin.oauth_registration import InitialTokenResource
from oauthproxy.admin.oauth_views import OAuthViewResource
from oauthproxy.admin.openapi import OpenApiResource, openapi_document
from oauthproxy.admin.proxies import ProxyResource
from oauthproxy.admin.proxy_oauth import ProxyOAuthResource
from oauthproxy.admin.proxy_removal import ProxyRemovalResource
from oauthproxy.admin.proxy_routes import ProxyRouteResource
from oauthproxy.admin.route_tester import RouteTestResource
from oauthproxy.admin.routes import RouteResource
from oauthproxy.admin.service_ports import ServicePortResource
from oauthproxy.admin.services import ServiceResource
from oauthproxy.admin.tokens import TokenResource
from oauthproxy.admin.ui import UIResource
from oauthproxy.config import Config
from oauthproxy.errors import NotFound
from oauthproxy.interfaces import IAccessTokenVerifier, ISnapshotSource, IStorage
from oauthproxy.metrics.registry import Metrics
from oauthproxy.model import Proxy
from oauthproxy.oauth.proxies import resource_of
from oauthproxy.oauth.status import OAuthStatus
from oauthproxy.serving.site import StrictSite


@implementer(IResource)
class ApiRoot:
    """Dispatches a request to the first mounted resource with a matching route."""

    isLeaf = True

    def __init__(self, resources: Sequence[object]) -> None:
        self._mounts: list[tuple[Klein, KleinResource]] = []
        for resource in resources:
            app = getattr(resource, "app", None)
            if not isinstance(app, Klein):
                raise TypeError(f"{resource!r} has no Klein app")
            self._mounts.append((app, KleinResource(app)))

    def getChildWithDefault(self, name: bytes, request: Request) -> IResource:
        """Never called: this resource is a leaf."""
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        """Children are Klein routes, not Twisted resources."""
        raise NotImplementedError("mount a resource class instead")

    def render(self, request: Request) -> object:
        """Hand ``request`` to the resource that routes it, or answer 404/405 in JSON."""
        segments = request.postpath or []
        try:
            path = "/" + "/".join(segment.decode("utf-8") for segment in segments)
            method = request.method.decode("ascii")
        except UnicodeDecodeError:
            return render_error(request, MalformedRequest("the URL is not UTF-8"))
        if "//" in path or any(b"/" in s or b"\x00" in s for s in segments):
            # one path, one spelling: no merged slashes, no %2F turning into a separator
            return render_error(request, NotFound("no such endpoint"))
        allowed: set[str] = set()
        for app, resource in self._mounts:
            adapter = app.url_map.bind("localhost", path_info=path, default_method=method)
            try:
                adapter.match()
            except WerkzeugNotFound:
                continue
            except WerkzeugMethodNotAllowed as refused:
                allowed.update(refused.valid_methods or ())
                continue
            except RequestRedirect:
                pass
            return resource.render(request)
        if allowed:
            return render_error(request, MethodNotAllowed(tuple(sorted(allowed))))
        return render_error(request, NotFound("no such endpoint"))


@define
class AdminAPI:
    """The admin API of one daemon; ``site()`` is what the ``--api`` listener serves."""

    storage: IStorage
    snapshots: ISnapshotSource
    clock: IReactorTime
    health: HealthSource
    version: str = __version__
    max_body: int = DEFAULT_MAX_BODY
    #: validate every response against its declared schema (for tests)
    check_responses: bool = False
    touch_interval: float = 60.0
    #: OAuth access tokens for ``auth_type: oauth`` rules; the default accepts none
    access_tokens: IAccessTokenVerifier = field(factory=NoAccessTokens)
    #: orders certificates for ``/certificates/``; None = those endpoints answer 503
    issuing: IssuingService | None = None
    #: Docker services (``/services/``, ``/ports/``); None = those endpoints are not mounted
    docker: DockerWiring | None = None
    #: the authorization server's state; None = not known, OAuth protection not checked
    oauth_status: Callable[[], OAuthStatus] | None = None
    #: a proxy's OAuth resource URI (the daemon's public ports applied)
    resource_of: Callable[[Proxy], str] = resource_of
    #: served at ``/metrics`` and told the OAuth endpoints' answers; None = no /metrics
    metrics: Metrics | None = None
    #: why the daemon should get no traffic (``/health/ready``); empty = ready
    readiness: Readiness = field(default=lambda: ())
    context: ApiContext = field(init=False)

    def __attrs_post_init__(self) -> None:
        """Build the context shared by every resource."""
        authenticator = Authenticator(
            self.snapshots,
            self.storage.tokens,
            self.clock,
            self.touch_interval,
            verifier=self.access_tokens,
        )
        self.context = ApiContext(
            authenticator, max_body=self.max_body, check_responses=self.check_responses
        )

    def resources(self) -> list[object]:
        """The resource classes built from this API's own dependencies."""
        docker: list[object] = []
        if self.docker is not None:
            # after the external services (``/services/external/``); ports and containers
            # (``/services/ports/...``, ``/services/cleanup``) before the services
            # (``/services/{name}``): the first resource routing a path serves it
            docker = [
                ServicePortResource(self.context, self.storage, self.clock, self.docker),
                DockerContainerResource(self.context, self.storage, self.clock, self.docker),
                DockerServiceResource(self.context, self.storage, self.clock, self.docker),
            ]
        return [
            HealthResource(self.context, self.snapshots, self.health, self.readiness),
            TokenResource(self.context, self.storage, self.clock),
            OAuthAdminResource(self.context, self.storage.oauth, self.snapshots, self.clock),
            InitialTokenResource(self.context, self.storage.oauth, self.clock),
            OAuthViewResource(
                self.context, self.snapshots, self.clock, self.oauth_status, self.resource_of
            ),
            AuthRuleResource(self.context, self.storage, self.clock, self.oauth_status),
            RouteAuthResource(self.context, self.storage, self.clock, self.oauth_status),
            ProxyAuthResource(self.context, self.storage, self.clock, self.oauth_status),
            DocsResource(),
            UIResource(),
            ProxyResource(self.context, self.storage, self.clock),
            ProxyRemovalResource(self.context, self.storage, self.clock),
            ProxyRouteResource(self.context, self.storage, self.clock),
            ProxyOAuthResource(self.context, self.storage, self.clock, self.oauth_status),
            RouteResource(self.context, self.storage, self.clock),
            RouteTestResource(self.context, self.snapshots),
            ServiceResource(self.context, self.storage, self.clock),
            *docker,
            CertificateResource(self.context, self.storage, self.clock, self.issuing),
            LogResource(self.context, self.storage.request_log, self.clock),
            LogChartResource(self.context, self.storage.request_log, self.clock),
            *(
                [MetricsResource(self.context, self.snapshots, self.metrics)]
                if self.metrics is not None
                else []
            ),
        ]

    def resource(self, *extra: object) -> IResource:
        """The root resource: every resource (plus ``extra`` ones) and ``/openapi.json``."""
        resources = [*self.resources(), *extra]
        endpoints = [declared for resource in resources for declared in endpoints_of(resource)]
        document = openapi_document([*endpoints, *endpoints_of(OpenApiResource)], self.version)
        resources.append(OpenApiResource(self.context, document))
        for resource in resources:
            # e.g. the auth rules' test endpoint needs every endpoint's declared auth
            bind = getattr(resource, "bind_endpoints", None)
            if callable(bind):
                bind([*endpoints, *endpoints_of(OpenApiResource)])
        return ApiRoot(resources)

    def site(self, *extra: object, config: Config | None = None) -> Site:
        """A Site serving :meth:`resource` that keeps no request body over ``max_body``.

        Its connections have the daemon's HTTP limits from ``config`` (head deadline,
        head size, idle timeout; :class:`~oauthproxy.serving.site.StrictSite`).
        """
        factory = bounded_request(self.max_body)
        site = AdminSite(
            self.resource(*extra), config or Config(), self.clock, requestFactory=factory
        )
        if self.metrics is not None:
            site.access_log = self.metrics.traffic.admin_log
        return site


class AdminSite(StrictSite):
    """The admin listener's Site: its access log also goes to ``access_log`` (the metrics)."""

    access_log: Callable[[http.Request], None] | None = None

    def log(self, request: http.Request) -> None:
        """Twisted's access log, then the hook."""
        super().log(request)
        if self.access_log is not None:
            self.access_log(request)
