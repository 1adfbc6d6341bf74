"""Header hygiene for forwarding (pure: Headers in, Headers out, no I/O).

Request side (:func:`upstream_request_headers`), in this order, so that nothing a client sends
can remove or spoof what we add (ATK-5/6/7, BCP-6):

1. drop hop-by-hop headers and every name nominated in ``Connection``, plus ``Content-Length``
   (the body producer states the length itself) and ``Expect`` (answered here already);
2. drop every client copy of a header we own: ``X-Forwarded-*``, ``Forwarded``, ``X-Real-IP``,
   the client-IP and path-override aliases (``True-Client-IP``, ``X-Client-IP``,
   ``X-Original-URL``…) and identity headers ``X-Auth-*``/``X-User-*``, compared after
   lower-casing and mapping ``_`` to ``-`` (so ``X_Forwarded_Host`` is an alias too);
   and the identity headers other auth proxies and frameworks set and backends trust
   (:data:`IDENTITY`, :data:`IDENTITY_PREFIXES`: the ``Remote-User`` family, oauth2-proxy's,
   Authelia's, Pomerium's, Traefik forward-auth's, Vouch's, cloud proxies'), since only
   the gateway sets identity; then every name with ``_`` (a backend may fold it into
   ``-``, like nginx, unless the proxy says ``keep_underscore_headers``) and the names in
   the proxy's ``strip_request_headers``;
3. set ``Host`` (the client's, or the upstream's when the proxy does not preserve it), then the
   proxy's custom request headers (replacing client values of the same name);
4. last, set ``X-Forwarded-For``/``-Proto``/``-Host`` and ``X-Real-IP`` from the connection
   (the transport's peer, which a trusted PROXY header sets) and any identity headers.

Response side (:func:`relay_response_headers`, from raw header lines, and
:func:`copy_response_headers`, from a ``Headers``): hop-by-hop and ``Connection``-nominated
names are dropped, ``Content-Length`` and every repeated header (``Set-Cookie``) are kept as
sent, then the proxy's custom response headers are set.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from twisted.web.http_headers import Headers, _nameEncoder

from oauthproxy.model import Headers as HeaderPairs

#: RFC 9110 §7.6.1 hop-by-hop headers, plus the non-standard ones seen in the wild
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"http2-settings",
    }
)

#: exact names (after ``_`` -> ``-`` and lower-casing) only we may set
OWNED = frozenset(
    {
        b"forwarded",
        b"x-real-ip",
        b"x-forwarded",
        b"true-client-ip",
        b"x-client-ip",
        b"x-cluster-client-ip",
        b"x-original-forwarded-for",
        b"x-original-url",
        b"x-rewrite-url",
        b"x-original-uri",
    }
)
#: identity headers other proxies and frameworks set and backends trust (exact names)
IDENTITY = frozenset(
    {
        b"remote-user",
        b"x-remote-user",
        b"x-user",
        b"x-email",
        b"x-webauth-user",
        b"x-webauth-email",
        b"x-webauth-groups",
        b"x-webauth-name",
        b"x-authenticated-user",
        b"x-authenticated-userid",
        b"x-authenticated-groups",
        b"x-authenticated-scope",
        b"x-consumer-id",
        b"x-consumer-username",
        b"x-consumer-custom-id",
        b"x-credential-identifier",
        b"x-goog-iap-jwt-assertion",
        b"x-token-subject",
    }
)
#: prefixes (after normalization) only we may set, or that name someone's identity:
#: ours, oauth2-proxy's (X-Auth-Request-*), Authelia's (Remote-*), Pomerium's,
#: Vouch's, Traefik forward-auth (X-Forwarded-User...), Google IAP's, Cloudflare
#: Access', AWS ALB's and Azure App Service's
OWNED_PREFIXES = (b"x-forwarded-", b"x-auth-", b"x-user-")
IDENTITY_PREFIXES = (
    b"remote-",
    b"x-remote-",
    b"x-auth-request-",
    b"x-pomerium-",
    b"x-vouch-",
    b"x-goog-authenticated-",
    b"cf-access-",
    b"x-amzn-oidc-",
    b"x-ms-client-principal",
    b"x-ms-token-",
)

_UPGRADE_KEEP = frozenset({b"upgrade"})
#: never copied: set by us (Host), by the body producer (Content-Length), or already answered
#: by twisted.web (Expect: 100-continue; the body is complete before we forward it)
_REBUILT = frozenset({b"content-length", b"host", b"expect"})


def is_owned(name: bytes) -> bool:
    """Whether a client-sent header of this name must be stripped (we set it or its alias,
    or it names an identity)."""
    n = name.lower().replace(b"_", b"-")
    return (
        n in OWNED
        or n in IDENTITY
        or n.startswith(OWNED_PREFIXES)
        or n.startswith(IDENTITY_PREFIXES)
    )


def nominated(values: Sequence[bytes] | None) -> frozenset[bytes]:
    """Lower-cased header names listed in ``Connection`` values (RFC 9110 §7.6.1)."""
    if not values:
        return frozenset()
    names = set()
    for value in values:
        for token in value.split(b","):
            token = token.strip().lower()
            if token:
                names.add(token)
    return frozenset(names)


def _canonical(name: bytes) -> bytes:
    """Twisted's canonical spelling of a header name (the key its Headers dict uses)."""
    probe = Headers()
    probe.setRawHeaders(name, [b""])
    return next(iter(probe._rawHeaders))


_HOST, _CONNECTION, _XFF, _XFP, _XFH, _XRI = (
    _canonical(n)
    for n in (
        b"host",
        b"connection",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-real-ip",
    )
)

_KEEP, _DROP, _HOP = 0, 1, 2
#: verdict per canonical header name; bounded like Twisted's own name cache
_verdicts: dict[bytes, int] = {}


def _verdict(name: bytes) -> int:
    """Keep, drop (ours, Host, Content-Length) or hop-by-hop, memoized per name."""
    verdict = _verdicts.get(name)
    if verdict is None:
        lower = name.lower()
        if lower in HOP_BY_HOP:
            verdict = _HOP
        elif lower in _REBUILT or is_owned(lower):
            verdict = _DROP
        else:
            verdict = _KEEP
        if len(_verdicts) < 10_000:
            _verdicts[name] = verdict
    return verdict


def upstream_request_headers(
    inbound: Headers,
    *,
    client_ip: str,
    scheme: str,
    host: bytes,
    upstream_netloc: bytes,
    preserve_host: bool,
    custom: HeaderPairs = (),
    identity: Iterable[tuple[bytes, bytes]] = (),
    upgrade: bool = False,
    strip: frozenset[bytes] = frozenset(),
    keep_underscores: bool = False,
) -> Headers:
    """The headers to send upstream for a client request with headers ``inbound``.

    ``host`` is the client's Host value (already matched to the proxy); ``upgrade=True`` keeps
    ``Upgrade`` and sends ``Connection: Upgrade`` for a WebSocket handshake.  ``strip`` are
    further lower-case names never forwarded; names with ``_`` are dropped unless
    ``keep_underscores``.
    """
    # Hot path: the Headers dicts are used directly.  Names in ``inbound`` are already
    # canonical and its values sanitized; the values set here are ASCII we produced.
    source = inbound._rawHeaders
    connection = source.get(_CONNECTION)
    drop = nominated(connection) if connection else frozenset()
    if strip:
        drop = drop | strip
    out = Headers()
    raw = out._rawHeaders
    for name, values in source.items():
        verdict = _verdict(name)
        if verdict == _KEEP:
            if drop and name.lower() in drop:
                continue
            if b"_" in name and not keep_underscores:
                continue
            raw[name] = list(values)
        elif verdict == _HOP and upgrade and name.lower() in _UPGRADE_KEEP:
            raw[name] = list(values)
    raw[_HOST] = [host if preserve_host else upstream_netloc]
    for cname, cvalue in custom:
        out.setRawHeaders(cname, [cvalue])
    if upgrade:
        raw[_CONNECTION] = [b"Upgrade"]
    ip = client_ip.encode("ascii", "replace")
    raw[_XFF] = [ip]
    raw[_XFP] = [b"https" if scheme == "https" else b"http"]
    raw[_XFH] = [host]
    raw[_XRI] = [ip]
    for iname, ivalue in identity:
        out.setRawHeaders(iname, [ivalue])
    return out


def copy_response_headers(upstream: Headers, into: Headers, custom: HeaderPairs = ()) -> None:
    """Copy an upstream response's end-to-end headers into ``into`` and add custom ones."""
    pairs = [(name, value) for name, values in upstream.getAllRawHeaders() for value in values]
    relay_response_headers(pairs, into, custom)


def relay_response_headers(
    pairs: Iterable[tuple[bytes, bytes]],
    into: Headers,
    custom: HeaderPairs = (),
    skip: frozenset[bytes] = HOP_BY_HOP,
) -> None:
    """Copy a response's raw header lines (in order) into ``into``, then the custom ones.

    Names in ``skip`` (lower case; hop-by-hop by default) and the names ``Connection``
    nominates are dropped.  Names take twisted.web's canonical spelling and repeated
    names stay together in the order sent, as in a ``Headers``; a name already in
    ``into`` is replaced.
    """
    nominated_names: frozenset[bytes] = frozenset()
    got: dict[bytes, list[bytes]] = {}
    encode = _nameEncoder.encode
    for name, value in pairs:
        lower = name.lower()
        if lower in skip or lower == b"connection":
            if lower == b"connection":
                nominated_names = nominated_names | nominated([value])
            continue
        canonical = encode(name)
        values = got.get(canonical)
        if values is None:
            got[canonical] = [value]
        else:
            values.append(value)
    raw = into._rawHeaders
    if nominated_names:
        for canonical, values in got.items():
            if canonical.lower() not in nominated_names:
                raw[canonical] = values
    else:
        raw.update(got)
    for cname, cvalue in custom:
        into.setRawHeaders(cname, [cvalue])
