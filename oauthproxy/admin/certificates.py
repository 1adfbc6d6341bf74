"""``/certificates/``: ACME certificates (create, list, show, renew, convert, delete, attach).

Creating a certificate records it ``pending`` and the issuing service
(:mod:`oauthproxy.acme.service`) orders it in the background; clients poll
``GET /certificates/{cert_name}`` (``oauthproxyctl cert wait``) until it is
``ready`` or ``failed`` (with ``error`` and ``retry_at``).  Renewal and conversion
between the staging and production directories also order in the background; the
certificate a name has keeps being served until its successor is ready.

Records belong to the token that created them: a non-admin token sees and changes
only its own (others' are 404), the admin token all; a non-admin token cannot order
the hostname of another token's proxy.  A private key leaves the API
only for the admin token, and only when asked for (``?include_private_key=true``).
The gateway's self-signed fallback (``_fallback``) lives in the same store: it is
left out of listings and cannot be changed or attached here.

``POST /proxy/targets/{hostname}/cert`` (the seed's ``proxy-cert-attach``) makes a
proxy serve a given certificate, which must cover its hostname.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from attrs import define, evolve
from klein import Klein
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from oauthproxy.acme.autocert import covers
from oauthproxy.acme.certs import FailureBudget, normalize_domains
from oauthproxy.acme.service import IssuingService
from oauthproxy.admin.access import (
    Principal,
    may_access,
    require_access,
    require_admin,
    visible,
)
from oauthproxy.admin.endpoint import ApiContext, Call, Reply, endpoint
from oauthproxy.admin.listing import page_query, page_schema, paginate
from oauthproxy.admin.proxies import HOSTNAME_PARAM, PROXY, proxy_json, visible_proxy
from oauthproxy.admin.schema import Schema, array, boolean, integer, nullable, number, obj, string
from oauthproxy.admin.validation import NAME_WORDS
from oauthproxy.errors import Conflict, Forbidden, InvalidInput, NotFound, StorageUnavailable
from oauthproxy.gateway.sni import FALLBACK_CERT_NAME
from oauthproxy.interfaces import IStorage
from oauthproxy.model import Certificate, Proxy

TAGS = ("certificates",)
_log = Logger()

CERT_NAME = string(
    min_length=1,
    max_length=64,
    pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
    description="letters, digits, '.', '_' and '-'",
    example="shared-cert",
    error=NAME_WORDS,
)
#: path parameter: also the reserved ``_fallback``, so that it gets a clear refusal
CERT_NAME_PARAM = {
    "cert_name": string(
        min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]*$", error=NAME_WORDS
    )
}
DOMAIN = string(min_length=1, max_length=253, example="api.example.com")

CERT_CREATE = obj(
    {
        "cert_name": CERT_NAME,
        "domain": DOMAIN,
        "domains": array(DOMAIN, max_items=100, description="several names (cert-create-multi)"),
        "email": string(
            max_length=254, format="email", description="ACME contact; default ADMIN_EMAIL"
        ),
        "staging": boolean(default=False, description="order from the staging directory"),
    },
    required=("cert_name",),
    description="give exactly one of domain and domains",
)
CERT_CONVERT = obj(
    {"staging": boolean(default=False, description="true: to staging; false: to production")},
)
CERT_ATTACH = obj({"cert_name": CERT_NAME}, required=("cert_name",))

_CERT_FIELDS: dict[str, Schema] = {
    "cert_name": string(max_length=128),
    "domains": array(string(max_length=253), max_items=100),
    "email": string(max_length=254),
    "staging": boolean(),
    "acme_directory_url": string(max_length=2048),
    "status": string(enum=("pending", "ready", "failed")),
    "issuer": nullable(string(max_length=1024)),
    "not_before": nullable(number(description="POSIX seconds")),
    "not_after": nullable(number(description="POSIX seconds")),
    "fingerprint_sha256": nullable(string(max_length=64, description="of the leaf, hex")),
    "error": nullable(string(max_length=65536, description="the last failure's reason")),
    "retry_at": nullable(number(description="next attempt after a failure, POSIX seconds")),
    "failures": integer(minimum=0, description="failed attempts in a row"),
    "owner": string(max_length=64, description="the token that created it"),
    "created_at": number(minimum=0, description="POSIX seconds"),
    "updated_at": number(minimum=0, description="POSIX seconds"),
}
CERT = obj(_CERT_FIELDS, required=tuple(_CERT_FIELDS))
CERT_DETAIL = obj(
    {
        **_CERT_FIELDS,
        "fullchain_pem": nullable(string(max_length=1 << 20, description="leaf first")),
        "private_key_pem": nullable(
            string(max_length=1 << 16, description="only for the admin token, when asked")
        ),
    },
    required=(*_CERT_FIELDS, "fullchain_pem"),
)
_FILTERS: dict[str, Schema] = {
    "status": string(enum=("pending", "ready", "failed")),
    "owner": string(max_length=64),
    "staging": boolean(),
}
_LIST_QUERY: dict[str, Schema] = {
    **_FILTERS,
    "covers": string(
        max_length=253, description="only certificates valid for this hostname (wildcards count)"
    ),
}


class IssuerUnavailable(StorageUnavailable):
    """This daemon has no issuing service (ACME is not configured)."""

    code = "issuer_unavailable"


def certificate_json(certificate: Certificate) -> dict[str, object]:
    """The API's view of a certificate (no PEMs)."""
    return {
        "cert_name": certificate.cert_name,
        "domains": list(certificate.domains),
        "email": certificate.email,
        "staging": certificate.staging,
        "acme_directory_url": certificate.acme_directory_url,
        "status": certificate.status,
        "issuer": certificate.issuer,
        "not_before": certificate.not_before,
        "not_after": certificate.not_after,
        "fingerprint_sha256": certificate.fingerprint_sha256,
        "error": certificate.error,
        "retry_at": certificate.retry_at,
        "failures": certificate.failures,
        "owner": certificate.owner,
        "created_at": certificate.created_at,
        "updated_at": certificate.updated_at,
    }


def _owner(certificate: Certificate) -> str:
    """Who owns ``certificate``."""
    return certificate.owner


def _domains(body: Mapping[str, Any]) -> tuple[str, ...]:
    """The names of a create body: exactly one of ``domain`` and ``domains``."""
    if ("domain" in body) == ("domains" in body):
        raise InvalidInput("give exactly one of domain and domains", field="/domain")
    where = "/domain" if "domain" in body else "/domains"
    names: list[str] = [body["domain"]] if "domain" in body else list(body["domains"])
    try:
        return normalize_domains(names)
    except InvalidInput as error:
        raise InvalidInput(error.detail, field=where) from None


def _not_reserved(cert_name: str, action: str) -> None:
    """Refuse ``action`` on the gateway's fallback certificate (403)."""
    if cert_name == FALLBACK_CERT_NAME:
        raise Forbidden(f"the fallback certificate is managed by the gateway; cannot {action} it")


@define
class CertificateResource:
    """The certificate endpoints (ordering through ``issuing``, None = refused with 503)."""

    app: ClassVar[Klein] = Klein()
    api: ApiContext
    storage: IStorage
    clock: IReactorTime
    issuing: IssuingService | None = None

    def _issuer(self) -> IssuingService:
        """The issuing service; 503 when this daemon has none."""
        if self.issuing is None:
            raise IssuerUnavailable("certificates cannot be ordered: no ACME issuing service")
        return self.issuing

    async def _visible(self, principal: Principal, cert_name: str) -> Certificate:
        """The certificate if ``principal`` may access it; NotFound otherwise."""
        what = f"certificate {cert_name!r}"
        certificate: Certificate | None = await self.storage.certificates.get(cert_name)
        if certificate is None:
            raise NotFound(f"no {what}", field="cert_name")
        require_access(principal, certificate.owner, what)
        return certificate

    async def _no_foreign_names(self, principal: Principal, domains: tuple[str, ...]) -> None:
        """A non-admin token may not order names of proxies that other tokens own."""
        if principal.is_admin:
            return
        for domain in domains:
            proxy: Proxy | None = await self.storage.proxies.get(domain)
            if proxy is not None and proxy.owner != principal.name:
                raise Forbidden(f"{domain!r} is another token's proxy", field="/domains")

    @endpoint(
        app,
        "POST",
        "/certificates/",
        summary="Create a certificate for one or more names; ordered in the background",
        tags=TAGS,
        body=CERT_CREATE,
        returns={201: CERT},
        errors=(409,),
    )
    async def create(self, call: Call) -> object:
        """Record the certificate ``pending`` and start the ACME order; poll it until ready."""
        issuing = self._issuer()
        name = call.body["cert_name"]
        domains = _domains(call.body)
        if await self.storage.certificates.get(name) is not None:
            raise Conflict(f"a certificate named {name!r} exists", field="/cert_name")
        await self._no_foreign_names(call.principal, domains)
        record = await issuing.request_certificate(
            name,
            domains,
            email=call.body.get("email"),
            staging=bool(call.body.get("staging", False)),
            owner=call.principal.name,
        )
        return Reply(201, certificate_json(record), {"location": f"/certificates/{name}"})

    @endpoint(
        app,
        "GET",
        "/certificates/",
        summary="List certificates (a non-admin token sees only its own)",
        tags=TAGS,
        query=page_query(_LIST_QUERY),
        returns={200: page_schema(CERT)},
    )
    async def list(self, call: Call) -> object:
        """The caller's certificates by name, filtered by exact field values and ``covers``."""
        hostname = call.query.get("covers")
        records = [
            record
            for record in await self.storage.certificates.list()
            if record.cert_name != FALLBACK_CERT_NAME
            and (hostname is None or covers(record.domains, hostname))
        ]
        certificates = visible(call.principal, records, _owner)
        return paginate(certificates, call.query, certificate_json, filters=tuple(_FILTERS))

    @endpoint(
        app,
        "GET",
        "/certificates/{cert_name}",
        summary="Show a certificate (its private key only to the admin token, on request)",
        tags=TAGS,
        params=CERT_NAME_PARAM,
        query={"include_private_key": boolean(default=False, description="admin token only")},
        returns={200: CERT_DETAIL},
    )
    async def show(self, call: Call) -> object:
        """The record and its chain; ``include_private_key=true`` adds the key (admin only)."""
        certificate = await self._visible(call.principal, call.params["cert_name"])
        shown: dict[str, object] = {
            **certificate_json(certificate),
            "fullchain_pem": certificate.fullchain_pem,
        }
        if call.query.get("include_private_key"):
            require_admin(call.principal, "read private keys")
            _log.info(
                "private key of {cert_name} read by {who}",
                cert_name=certificate.cert_name,
                who=call.principal.name,
            )
            shown["private_key_pem"] = certificate.private_key_pem
        return shown

    @endpoint(
        app,
        "POST",
        "/certificates/{cert_name}/renew",
        summary="Renew a certificate now; ordered in the background",
        tags=TAGS,
        params=CERT_NAME_PARAM,
        returns={202: CERT},
        errors=(409,),
    )
    async def renew(self, call: Call) -> object:
        """Start a new order whatever the schedule; 409 while the CA's failure budget is spent."""
        issuing = self._issuer()
        certificate = await self._visible(call.principal, call.params["cert_name"])
        _not_reserved(certificate.cert_name, "renew")
        budget = FailureBudget.from_entries(
            entry
            for record in await self.storage.certificates.list()
            for entry in record.failed_authorizations
        )
        now = self.clock.seconds()
        allowed = budget.next_allowed(certificate.domains, now)
        if allowed > now:
            raise Conflict(
                f"too many failed validations for {', '.join(certificate.domains)}; "
                f"retry in {int(allowed - now) + 1} seconds"
            )
        renewing: Deferred[Certificate | None] = issuing.renew(certificate.cert_name)
        renewing.addErrback(_log_background_failure, certificate.cert_name, "renewal")
        return Reply(202, certificate_json(certificate))

    @endpoint(
        app,
        "POST",
        "/certificates/{cert_name}/convert",
        summary="Move a certificate to the production (or staging) directory and reorder it",
        tags=TAGS,
        params=CERT_NAME_PARAM,
        body=CERT_CONVERT,
        body_required=False,
        returns={202: CERT},
        errors=(409,),
    )
    async def convert(self, call: Call) -> object:
        """Order the certificate again from the other directory; the current one stays served."""
        issuing = self._issuer()
        certificate = await self._visible(call.principal, call.params["cert_name"])
        _not_reserved(certificate.cert_name, "convert")
        staging = bool((call.body or {}).get("staging", False))
        if certificate.staging == staging:
            which = "staging" if staging else "production"
            raise Conflict(
                f"certificate {certificate.cert_name!r} is already a {which} certificate",
                field="/staging",
            )
        moved = await issuing.convert(certificate.cert_name, staging)
        return Reply(202, certificate_json(moved))

    @endpoint(
        app,
        "DELETE",
        "/certificates/{cert_name}",
        summary="Delete a certificate; its names fall back to other certificates",
        tags=TAGS,
        params=CERT_NAME_PARAM,
        returns={204: None},
    )
    async def delete(self, call: Call) -> object:
        """Remove the certificate from every daemon's SNI map (an order in flight is dropped)."""
        certificate = await self._visible(call.principal, call.params["cert_name"])
        _not_reserved(certificate.cert_name, "delete")
        await self.storage.certificates.delete(certificate.cert_name)
        return Reply(204)

    @endpoint(
        app,
        "POST",
        "/proxy/targets/{hostname}/cert",
        summary="Attach a certificate to a proxy (it must cover the hostname)",
        tags=TAGS,
        params=HOSTNAME_PARAM,
        body=CERT_ATTACH,
        returns={200: PROXY},
    )
    async def attach(self, call: Call) -> object:
        """Serve ``cert_name`` for the proxy's hostname (wildcard certificates allowed)."""
        proxy = await visible_proxy(self.storage, call.principal, call.params["hostname"])
        name = call.body["cert_name"]
        _not_reserved(name, "attach")
        certificate: Certificate | None = await self.storage.certificates.get(name)
        if certificate is None or not may_access(call.principal, certificate.owner):
            raise NotFound(f"no certificate {name!r}", field="/cert_name")
        if not covers(certificate.domains, proxy.hostname):
            raise InvalidInput(
                f"certificate {name!r} ({', '.join(certificate.domains)}) "
                f"does not cover {proxy.hostname!r}",
                field="/cert_name",
            )
        attached = evolve(proxy, cert_name=name, updated_at=self.clock.seconds())
        await self.storage.proxies.update(attached)
        return proxy_json(attached)

    @endpoint(
        app,
        "DELETE",
        "/proxy/targets/{hostname}/cert",
        summary="Detach a proxy's certificate (any certificate covering it is served)",
        tags=TAGS,
        params=HOSTNAME_PARAM,
        returns={200: PROXY},
    )
    async def detach(self, call: Call) -> object:
        """Clear the proxy's ``cert_name``."""
        proxy = await visible_proxy(self.storage, call.principal, call.params["hostname"])
        detached = evolve(proxy, cert_name=None, updated_at=self.clock.seconds())
        await self.storage.proxies.update(detached)
        return proxy_json(detached)


def _log_background_failure(failure: Failure, cert_name: str, what: str) -> None:
    """An order the API started but nobody waits for failed before its outcome was stored."""
    _log.failure("{what} of {cert_name} failed", failure, what=what, cert_name=cert_name)
