"""``twistd oauthproxy``: command-line options and the one composition root.

:func:`makeService` is the only place where concrete components are wired
together (through :func:`compose`).  The startup order matters and lives in
:class:`~oauthproxy.daemon.Daemon`:

1. the embedded redis-server (only when no ``REDIS_URL`` is configured);
2. the storage connection, once Redis answers;
3. the admin-token bootstrap (printed once on first start);
4. the mirror (snapshot + event tail) the data plane reads;
5. the components built on storage and the mirror (:func:`compose`): their
   services start (certificate map, ACME issuing service, the Docker reconciler),
   then their listeners open: the admin API, then the gateway's (:func:`build_gateway`).

SIGTERM runs it backwards: stop listening, drain open requests (bounded by
``drain_timeout``), stop the components' services and run their cleanups, stop
the mirror, close storage, stop the embedded Redis.

With ``--workers N`` (N > 1) twistd runs a :class:`~oauthproxy.workers.supervisor.Supervisor`
instead, which does steps 1 and 3 once and opens the sockets; each worker process
builds its daemon with :func:`make_worker`, the same composition on the inherited sockets.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from attrs import define
from twisted.application.service import IService, MultiService
from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import ILogObserver, Logger
from twisted.python import usage
from twisted.python.components import Componentized

from oauthproxy.acme.autocert import AutoCertService
from oauthproxy.acme.responder import ChallengeResource
from oauthproxy.acme.service import IssuingService, make_issuing_service
from oauthproxy.admin.access import NoAccessTokens
from oauthproxy.admin.api import AdminAPI
from oauthproxy.admin.docker_services import DockerWiring
from oauthproxy.config import Config, load_config, process_environment, read_dotenv
from oauthproxy.containers.allocator import PortAllocator, bind_probe, no_probe
from oauthproxy.containers.engine import DockerEngine
from oauthproxy.containers.guarded import GuardedPorts
from oauthproxy.containers.lifecycle import ServiceLifecycle
from oauthproxy.containers.reconciler import Reconciler
from oauthproxy.containers.rules import DockerRules
from oauthproxy.containers.runtime import DisabledRuntime
from oauthproxy.daemon import Daemon, Listener, WorkerRole
from oauthproxy.errors import ConfigError
from oauthproxy.gateway.forward import Forwarder
from oauthproxy.gateway.guard_wiring import OAuthWiring, start_oauth_server, wire_oauth
from oauthproxy.gateway.hosts import GatewayResource
from oauthproxy.gateway.listeners import (
    SocketOpener,
    gateway_endpoints,
    socket_endpoint,
    with_backlog,
)
from oauthproxy.gateway.site import GatewaySite
from oauthproxy.gateway.sni import CertificateMap
from oauthproxy.gateway.table import LiveTable
from oauthproxy.gateway.tls import CertificateMapService
from oauthproxy.logs import bridge_stdlib_logging, make_observer
from oauthproxy.metrics.registry import Metrics
from oauthproxy.oauth.proxies import resource_of
from oauthproxy.requestlog.finished import FinishedRequests, RowSink
from oauthproxy.requestlog.noise import NoiseBudget
from oauthproxy.requestlog.writer import RequestLogWriter
from oauthproxy.serving.heap import FrozenHeap
from oauthproxy.storage.embedded import EmbeddedRedis
from oauthproxy.workers.supervisor import Supervisor, worker_environment


class Options(usage.Options):
    """Options of ``twistd oauthproxy``; unset ones fall back to the environment and ``.env``."""

    optParameters = [
        ["http", None, None, "HTTP listener endpoint (default tcp:80; 'off' disables)"],
        ["https", None, None, "HTTPS listener endpoint (default tcp:443; 'off' disables)"],
        ["api", None, None, "admin API endpoint (default tcp:9000:interface=127.0.0.1)"],
        ["proxy-http", None, None, "HTTP listener expecting PROXY headers (default off)"],
        ["proxy-https", None, None, "HTTPS listener expecting PROXY headers (default off)"],
        ["public-https-port", None, None, "port clients use for HTTPS (default: the listener's)"],
        ["public-http-port", None, None, "port clients use for HTTP (default: the listener's)"],
        ["redis", None, None, "Redis URL (REDIS_URL); unset = embedded redis-server"],
        ["redis-password", None, None, "Redis password (REDIS_PASSWORD)"],
        ["data-dir", None, None, "data directory (default ./oauthproxy-data)"],
        ["log-format", None, None, "text or json (default text)"],
        ["log-level", None, None, "debug, info, warn, error, critical (LOG_LEVEL)"],
        [
            "workers",
            None,
            None,
            "worker processes sharing the listeners: a number or 'auto' = one per core "
            "(OAUTHPROXY_WORKERS; default 1)",
        ],
    ]

    config: Config

    def postOptions(self) -> None:
        """Build the Config; an invalid setting exits 1 with one line naming it.

        Not a UsageError: twistd would print the whole usage text above the line.
        Unknown options stay UsageErrors (twistd's parser raises those itself).
        """
        try:
            self.config = load_config(dict(self), process_environment(), read_dotenv())
        except ConfigError as e:
            sys.stderr.write(f"oauthproxy: error: {' '.join(e.detail.split())}\n")
            sys.stderr.flush()
            raise SystemExit(1) from None


def _endpoint(reactor: Any, description: str, setting: str = "api") -> IStreamServerEndpoint:
    """Parse an endpoint description (already validated by config)."""
    result: IStreamServerEndpoint = endpoints.serverFromString(  # type: ignore[no-untyped-call]
        reactor, description
    )
    return result


@define(eq=False)
class Gateway:
    """The data plane: routing table, forwarder, certificate map, Site and listeners."""

    table: LiveTable
    forwarder: Forwarder
    site: GatewaySite
    #: feeds the certificate map; None when no TLS listener is configured
    certificate_service: CertificateMapService | None
    listeners: list[Listener]

    def services(self) -> list[IService]:
        """What must run before the listeners open (the TLS fallback certificate loads)."""
        return [self.certificate_service] if self.certificate_service is not None else []

    def close(self) -> defer.Deferred[None]:
        """Stop following the mirror and close the idle upstream connections (shutdown)."""
        self.table.detach()
        return self.forwarder.close()


def build_gateway(
    config: Config,
    reactor: Any,
    storage: Any,
    snapshots: Any,
    access_log: Callable[[Any], None] | None = None,
    on_tls_connection: Callable[[Any], None] | None = None,
    open_socket: SocketOpener = socket_endpoint,
) -> Gateway:
    """The gateway over ``snapshots`` with one :class:`Listener` per enabled listener.

    ``http``, ``https``, ``proxy-http`` and ``proxy-https`` all serve the same
    :class:`GatewaySite`; TLS listeners bind only once the fallback certificate
    is loaded.  The HTTP-to-HTTPS redirect names the public HTTPS port (the
    ``https`` listener's, unless ``OAUTHPROXY_PUBLIC_HTTPS_PORT`` says otherwise).
    """
    table = LiveTable(https_port=config.public_port("https"))
    table.attach(snapshots)
    forwarder = Forwarder(reactor)
    acme = ChallengeResource(storage.challenges)
    site = GatewaySite(GatewayResource(table, forwarder, acme), config, reactor, access_log)
    certificates = CertificateMap(on_connection=on_tls_connection)
    service = None
    if config.https_endpoint or config.proxy_https_endpoint:
        store = storage.certificates
        service = CertificateMapService(certificates, snapshots, store, reactor, reactor)
    listeners = [
        Listener(found.name, found.description, found.endpoint, site)
        for found in gateway_endpoints(reactor, config, certificates, open_socket)
    ]
    return Gateway(table, forwarder, site, service, listeners)


@define(eq=False)
class Containers:
    """Docker services: the engine (thread pools), the lifecycle, guarded ports, reconciler."""

    #: None when Docker services are turned off (``OAUTHPROXY_DOCKER=off``)
    engine: DockerEngine | None
    lifecycle: ServiceLifecycle
    ports: GuardedPorts
    reconciler: Reconciler
    wiring: DockerWiring

    def start(self, parent: MultiService) -> None:
        """Start the thread pools and put the reconciler under ``parent`` (unless turned off)."""
        if self.engine is not None:
            self.engine.open()
            self.reconciler.setServiceParent(parent)  # type: ignore[no-untyped-call]

    def close(self) -> defer.Deferred[None]:
        """Stop the Docker thread pools and the guarded ports' upstream connections."""
        if self.engine is not None:
            self.engine.close()
        return self.ports.forwarder.close()


def build_containers(
    config: Config,
    reactor: Any,
    storage: Any,
    snapshots: Any,
    record: Callable[[Any], None] | None = None,
    access_log: Callable[[Any], None] | None = None,
) -> Containers:
    """Docker services on ``DOCKER_HOST`` (Docker need not be there: calls then answer 503).

    ``record`` and ``access_log`` are the request log's sinks for the guarded ports.
    With ``OAUTHPROXY_DOCKER=off`` Docker is never contacted and the endpoints say so.
    """
    engine = None
    runtime: Any = DisabledRuntime()
    if config.docker_enabled:
        runtime = engine = DockerEngine(
            reactor,
            host=config.docker_host,
            version=config.docker_api_version,
            timeout=config.docker_timeout,
            cert_path=config.docker_cert_path,
        )
    rules = DockerRules.from_config(config)
    # a bind test on this host says something only when Docker runs on this host
    probe = bind_probe if config.docker_host.startswith("unix://") else no_probe
    allocator = PortAllocator(storage.docker_services, rules.ports, probe)
    lifecycle = ServiceLifecycle(
        storage,
        runtime,
        rules,
        reactor,
        allocator,
        lock_ttl=config.docker_lock_ttl,
        start_grace=config.docker_start_grace,
    )
    ports = GuardedPorts(reactor, config, Forwarder(reactor), record, access_log)
    reconciler = Reconciler(
        lifecycle,
        snapshots,
        ports,
        reactor,
        interval=config.docker_reconcile_interval,
        lock_ttl=config.docker_lock_ttl,
    )
    wiring = DockerWiring(lifecycle, reconciler.run_pass, config.base_domain)
    return Containers(engine, lifecycle, ports, reconciler, wiring)


def _with_oauth(
    health: Callable[[], dict[str, Any]], oauth: OAuthWiring
) -> Callable[[], dict[str, Any]]:
    """``health`` plus the authorization server's state (``/health``'s ``oauth`` entry)."""

    def combined() -> dict[str, Any]:
        return {**health(), "oauth": oauth.status().json()}

    return combined


def admin_listener(
    config: Config,
    reactor: Any,
    storage: Any,
    snapshots: Any,
    health: Callable[[], dict[str, Any]],
    issuing: IssuingService | None = None,
    oauth: OAuthWiring | None = None,
    daemon: Daemon | None = None,
    docker: DockerWiring | None = None,
    metrics: Metrics | None = None,
) -> list[Listener]:
    """The admin API (Klein) on ``config.api_endpoint``, with the OAuth server once built."""
    verifier = NoAccessTokens() if oauth is None else oauth.access_tokens or NoAccessTokens()
    if oauth is not None:
        health = _with_oauth(health, oauth)
    readiness = daemon.readiness if daemon is not None else (lambda: ())
    api = AdminAPI(
        storage,
        snapshots,
        reactor,
        health,
        issuing=issuing,
        access_tokens=verifier,
        docker=docker,
        oauth_status=None if oauth is None else oauth.status,
        resource_of=resource_of if oauth is None else oauth.guard.resource_of,
        metrics=metrics,
        readiness=readiness,
    )
    site = api.site(config=config) if config.api_endpoint is not None else None
    if oauth is not None and daemon is not None:
        start_oauth_server(oauth, config, reactor, storage, snapshots, api, site, daemon.services)
    if site is None or config.api_endpoint is None:
        return []
    open_socket = _endpoint if daemon is None or daemon.open_socket is None else daemon.open_socket
    description = with_backlog(config.api_endpoint, config.listen_backlog)
    endpoint = open_socket(reactor, description, "api")
    return [Listener("api", config.api_endpoint, endpoint, site)]


def compose(daemon: Daemon) -> list[Listener]:
    """Build what runs on the daemon's storage and mirror; the listeners to open, in order.

    The one place to add a component: put its services under ``daemon.services``
    (started before any listener opens, stopped after they drained) and its
    shutdown work in ``daemon.cleanups``.
    """
    config, reactor, storage, mirror = daemon.config, daemon.reactor, daemon.storage, daemon.mirror
    assert storage is not None and mirror is not None, "compose runs after storage and mirror"
    metrics = Metrics(mirror, reactor)
    sinks: list[RowSink] = [metrics.traffic]
    writer = guarded_log = record = None
    if config.request_log:
        budget = NoiseBudget(per_minute=config.request_log_noise_budget)
        writer = RequestLogWriter(storage.request_log, reactor, noise=budget)
        writer.setServiceParent(daemon.services)  # type: ignore[no-untyped-call]
        sinks.append(writer)
        record = writer.record
        # the guarded ports' HTTP requests are logged, not counted in the gateway's metrics
        guarded = FinishedRequests(reactor, [writer])
        guarded.setServiceParent(daemon.services)  # type: ignore[no-untyped-call]
        guarded_log = guarded.access_log
    # started after the writer, so stopped before it: what it keeps reaches the last flush
    finished = FinishedRequests(reactor, sinks, authorization_server=metrics.traffic.admin_log)
    finished.setServiceParent(daemon.services)  # type: ignore[no-untyped-call]
    metrics.before_scrape = finished.drain
    gateway = build_gateway(
        config,
        reactor,
        storage,
        mirror,
        access_log=finished.access_log,
        on_tls_connection=metrics.tls.watch,
        open_socket=daemon.open_socket or socket_endpoint,
    )
    daemon.cleanups.append(mirror.subscribe(metrics.event_lag))
    if daemon.worker is not None:
        daemon.worker.serve_metrics(metrics)
    metrics.watch_state(
        listeners=lambda: [(listener.name, w.protocols) for listener, _, w in daemon.ports],
        redis_up=lambda: daemon.storage_state().reachable,
        request_log=writer.stats if writer is not None else None,
    )
    for service in gateway.services():
        service.setServiceParent(daemon.services)  # type: ignore[no-untyped-call]
    daemon.cleanups.append(gateway.close)
    issuing = make_issuing_service(reactor, reactor, storage, config)
    issuing.on_attempt = metrics.acme
    issuing.setServiceParent(daemon.services)  # type: ignore[no-untyped-call]
    autocert = AutoCertService(mirror, issuing, reactor, email=config.admin_email or None)
    autocert.setServiceParent(daemon.services)  # type: ignore[no-untyped-call]
    oauth = wire_oauth(config, reactor, mirror)
    # the gateway's one hook (GatewayResource.render) asks the guard before forwarding
    gateway.site.resource.guard = oauth.guard
    daemon.cleanups.append(oauth.close)
    containers = build_containers(config, reactor, storage, mirror, record, guarded_log)
    containers.start(daemon.services)
    daemon.cleanups.append(containers.close)
    daemon.drainables.append(containers.ports)
    # full GC collections off the request path (serving/heap.py: the p99 under load)
    FrozenHeap(reactor).setServiceParent(daemon.services)  # type: ignore[no-untyped-call]
    listeners = admin_listener(
        config,
        reactor,
        storage,
        mirror,
        daemon.health,
        issuing,
        oauth,
        daemon,
        containers.wiring,
        metrics,
    )
    return listeners + gateway.listeners


@define(eq=False, slots=False)
class Root(MultiService):
    """The service twistd runs; it also gives twistd our log observer."""

    observer: ILogObserver
    log_level: str = "info"

    def __attrs_post_init__(self) -> None:
        """Initialise MultiService (attrs does not call it)."""
        MultiService.__init__(self)  # type: ignore[no-untyped-call]

    def startService(self) -> None:
        """Bridge stdlib logging (acme, docker, urllib3) into twisted.logger, then start."""
        bridge_stdlib_logging(self.log_level)
        super().startService()  # type: ignore[no-untyped-call]

    def setServiceParent(self, parent: Any) -> None:
        """Attach to the application and register the log observer on it for twistd."""
        super().setServiceParent(parent)  # type: ignore[no-untyped-call]
        if not isinstance(parent, Componentized):
            return
        if parent.getComponent(ILogObserver) is None:  # type: ignore[no-untyped-call]
            parent.setComponent(ILogObserver, self.observer)  # type: ignore[no-untyped-call]


def makeService(options: Options) -> MultiService:
    """Wire the daemon from ``options.config`` (the only composition root)."""
    from twisted.internet import reactor

    config = options.config
    observer = make_observer(sys.stdout, config.log_format, config.log_level)
    root = Root(observer, config.log_level)
    embedded = None
    if config.redis_url is None:
        embedded = EmbeddedRedis(
            config.data_dir, reactor, binary=config.redis_server, maxmemory=config.redis_maxmemory
        )
    stdout = sys.stdout

    def announce(line: str) -> None:
        # The token goes to the operator's terminal as a plain line, and to the log.
        stdout.write(line + "\n")
        stdout.flush()
        Logger().warn("{line}", line=line)

    if config.workers > 1:
        supervisor = Supervisor(
            config,
            reactor,
            embedded,
            announce,
            environment=worker_environment(process_environment()),
        )
        supervisor.setServiceParent(root)  # type: ignore[no-untyped-call]
        return root
    daemon = Daemon(config, reactor, embedded, announce, compose=compose)
    daemon.setServiceParent(root)  # type: ignore[no-untyped-call]
    return root


def make_worker(
    config: Config, reactor: Any, link: WorkerRole, open_socket: SocketOpener
) -> Daemon:
    """The daemon of one worker process of ``--workers N`` (:mod:`oauthproxy.workers.child`).

    The same components as a single daemon (:func:`compose`); its supervisor owns the
    embedded Redis and the listening sockets, which ``open_socket`` adopts.
    """
    return Daemon(config, reactor, compose=compose, open_socket=open_socket, worker=link)
