"""Read-only views of the OAuth setup: ``/oauth/health`` and ``/resources`` (the seed's).

The seed had ``just oauth-health`` and a ``/resources`` API for protected resources.
Here both only show what exists, computed from the daemon's OAuth state
(:class:`~oauthproxy.oauth.status.OAuthStatus`) and its snapshot:

- ``GET /oauth/health`` (no auth, like ``/health``): the authorization server's state
  and what to fix, its issuer and metadata URL, registration mode, signing keys and
  how many resources it protects;
- ``GET /resources`` and ``GET /resources/{hostname}``: each OAuth-protected proxy the
  caller may see, with the resource URI its tokens are bound to, where its metadata is,
  the server that issues its tokens, its mode, scopes and allowlist.  Protecting a
  proxy is done on the proxy (``/proxy/targets/{hostname}/auth``), not here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from attrs import define
from klein import Klein
from twisted.internet.interfaces import IReactorTime

from oauthproxy.admin.access import visible
from oauthproxy.admin.endpoint import ApiContext, Call, endpoint
from oauthproxy.admin.listing import page_query, page_schema, paginate
from oauthproxy.admin.proxies import HOSTNAME_PARAM
from oauthproxy.admin.schema import Schema, array, boolean, integer, nullable, obj, string
from oauthproxy.errors import NotFound
from oauthproxy.interfaces import ISnapshotSource
from oauthproxy.model import Proxy
from oauthproxy.oauth.keys import active_record, verification_records
from oauthproxy.oauth.metadata import AS_WELL_KNOWN, protected_resource_metadata_urls
from oauthproxy.oauth.proxies import is_protected
from oauthproxy.oauth.status import OAuthStatus

_URL = nullable(string(max_length=2048))
_NAMES = array(string(max_length=200), max_items=200)
OAUTH_HEALTH = obj(
    {
        "state": string(enum=("off", "starting", "ready", "failed", "unknown")),
        "issuer": _URL,
        "github_app": boolean(),
        "problem": nullable(string(max_length=1000)),
        "registration": string(enum=("open", "token", "closed")),
        "metadata_url": _URL,
        "jwks_uri": _URL,
        "signing_key": nullable(string(max_length=200, description="the active kid")),
        "signing_keys": integer(minimum=0, description="keys tokens may be signed with"),
        "protected_resources": integer(minimum=0),
    },
    required=(
        "state", "issuer", "github_app", "problem", "registration", "metadata_url",
        "jwks_uri", "signing_key", "signing_keys", "protected_resources",
    ),
)  # fmt: skip
#: ``/oauth/health`` of an admin API not told the OAuth state (tests, tools)
UNKNOWN = {"state": "unknown", "issuer": None, "github_app": False, "problem": None}
_RESOURCE_FIELDS: dict[str, Schema] = {
    "hostname": string(max_length=253),
    "resource": string(max_length=2048, description="the audience of its tokens"),
    "metadata_url": string(max_length=2048, description="its RFC 9728 document"),
    "authorization_servers": _NAMES,
    "auth_mode": string(enum=("redirect", "forward", "passthrough")),
    "required_scopes": _NAMES,
    "required_users": _NAMES,
    "excluded_paths": _NAMES,
}
RESOURCE = obj(_RESOURCE_FIELDS, required=tuple(_RESOURCE_FIELDS))


@define
class OAuthViewResource:
    """``/oauth/health``, ``/resources`` and ``/resources/{hostname}``."""

    app: ClassVar[Klein] = Klein()
    api: ApiContext
    snapshots: ISnapshotSource
    clock: IReactorTime
    #: the authorization server's state; None = not known (no OAuth wiring)
    oauth_status: Callable[[], OAuthStatus] | None
    #: a proxy's resource URI, with the daemon's public ports
    resource_of: Callable[[Proxy], str]

    def status(self) -> OAuthStatus | None:
        """The OAuth state, if this API knows it."""
        return None if self.oauth_status is None else self.oauth_status()

    def resource_json(self, proxy: Proxy) -> dict[str, object]:
        """One protected proxy as a resource."""
        assert proxy.auth is not None
        status = self.status()
        resource = self.resource_of(proxy)
        named = proxy.oauth_resource.authorization_servers if proxy.oauth_resource else ()
        servers = list(named) or ([status.issuer] if status and status.issuer else [])
        return {
            "hostname": proxy.hostname,
            "resource": resource,
            "metadata_url": protected_resource_metadata_urls(resource)[0],
            "authorization_servers": servers,
            "auth_mode": proxy.auth.auth_mode,
            "required_scopes": list(proxy.auth.required_scopes),
            "required_users": list(proxy.auth.required_users),
            "excluded_paths": list(proxy.auth.excluded_paths),
        }

    @endpoint(app, "GET", "/oauth/health", summary="The OAuth authorization server's health",
              tags=("oauth", "health"), auth="none", returns={200: OAUTH_HEALTH},
              operation_id="oauth_health")  # fmt: skip
    async def health(self, call: Call) -> object:
        """State, issuer, what to fix; keys and resources as they are now."""
        status = self.status()
        snapshot = self.snapshots.current
        now = self.clock.seconds()
        keys = verification_records(snapshot.oauth_signing_keys.values(), now)
        active = active_record(keys, now)
        issuer = status.issuer if status else None
        return {
            **(status.json() if status else UNKNOWN),
            "registration": status.registration if status else "open",
            "metadata_url": f"{issuer}/.well-known/{AS_WELL_KNOWN}" if issuer else None,
            "jwks_uri": f"{issuer}/jwks" if issuer else None,
            "signing_key": active.kid if active is not None else None,
            "signing_keys": len(keys),
            "protected_resources": sum(1 for p in snapshot.proxies.values() if is_protected(p)),
        }

    @endpoint(app, "GET", "/resources", summary="List OAuth-protected resources (read-only)",
              tags=("proxies",), query=page_query(), returns={200: page_schema(RESOURCE)},
              operation_id="resources_list")  # fmt: skip
    async def list_resources(self, call: Call) -> object:
        """Every OAuth-protected proxy the caller may see, by hostname."""
        proxies = sorted(
            (p for p in self.snapshots.current.proxies.values() if is_protected(p)),
            key=lambda p: p.hostname,
        )
        seen = visible(call.principal, proxies, lambda p: p.owner)
        return paginate(seen, call.query, self.resource_json)

    @endpoint(app, "GET", "/resources/{hostname}", summary="Show one OAuth-protected resource",
              tags=("proxies",), params=HOSTNAME_PARAM, returns={200: RESOURCE},
              operation_id="resources_show")  # fmt: skip
    async def show_resource(self, call: Call) -> object:
        """The resource of one protected proxy (404 if not protected or not visible)."""
        hostname = call.params["hostname"].lower()
        proxy = self.snapshots.current.proxies.get(hostname)
        if (
            proxy is None
            or not is_protected(proxy)
            or not visible(call.principal, [proxy], lambda p: p.owner)
        ):
            raise NotFound(f"no protected resource {hostname!r}", field="hostname")
        return self.resource_json(proxy)
