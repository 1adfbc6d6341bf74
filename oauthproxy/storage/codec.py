"""Records of :mod:`oauthproxy.model` to JSON and back, with cattrs.

The JSON is what Redis keeps in the ``records:<kind>`` hashes and what events
carry, so it must stay readable by older and newer versions: unknown fields are
ignored and missing fields take their defaults.  Encoding is deterministic
(sorted keys, no spaces) so equal records give equal strings.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from cattrs import BaseValidationError, transform_error
from cattrs.preconf.json import make_converter

from oauthproxy.errors import OAuthProxyError
from oauthproxy.model import (
    ApiToken,
    AuthRule,
    Certificate,
    DockerService,
    ExternalService,
    OAuthRevocation,
    OAuthSigningKey,
    Proxy,
    Route,
)

T = TypeVar("T")

Record = (
    Proxy
    | Route
    | Certificate
    | ApiToken
    | ExternalService
    | DockerService
    | AuthRule
    | OAuthRevocation
    | OAuthSigningKey
)

#: record kind (``keys.RECORD_KINDS``) -> model class
RECORD_TYPES: dict[str, type[Record]] = {
    "proxy": Proxy,
    "route": Route,
    "certificate": Certificate,
    "token": ApiToken,
    "service": ExternalService,
    "docker_service": DockerService,
    "auth_rule": AuthRule,
    "oauth_revocation": OAuthRevocation,
    "oauth_signing_key": OAuthSigningKey,
}

#: record kind -> the field its key comes from (named by Conflict/NotFound errors)
KEY_FIELDS: dict[str, str] = {
    "proxy": "hostname",
    "route": "route_id",
    "certificate": "cert_name",
    "token": "name",
    "service": "name",
    "docker_service": "name",
    "auth_rule": "config_id",
    "oauth_revocation": "jti",
    "oauth_signing_key": "kid",
}

_converter = make_converter()


class CodecError(OAuthProxyError):
    """A stored record could not be decoded."""

    code = "corrupt_record"


def encode(record: object) -> str:
    """Encode an attrs record as compact, deterministic JSON."""
    return json.dumps(_converter.unstructure(record), sort_keys=True, separators=(",", ":"))


def decode(cls: type[T], text: str | bytes) -> T:
    """Decode JSON made by :func:`encode` into a ``cls``.

    :raises CodecError: naming the class and the problem when ``text`` is not
        valid JSON or does not fit ``cls``.
    """
    try:
        data: Any = json.loads(text)
        return _converter.structure(data, cls)
    except (ValueError, TypeError, KeyError, BaseValidationError) as e:
        problem = "; ".join(_describe(e))
        raise CodecError(f"cannot decode {cls.__name__}: {problem}") from e


def _describe(error: BaseException) -> list[str]:
    """Flatten cattrs' nested validation errors into readable messages."""
    if isinstance(error, BaseValidationError):
        return transform_error(error)
    return [str(error) or type(error).__name__]


def record_key(record: Record) -> str:
    """The key a record is stored under: hostname (lower-case), route_id or name."""
    if isinstance(record, Proxy):
        return record.hostname.lower()
    if isinstance(record, Route):
        return record.route_id
    if isinstance(record, Certificate):
        return record.cert_name
    if isinstance(record, AuthRule):
        return record.config_id
    if isinstance(record, OAuthRevocation):
        return record.jti
    if isinstance(record, OAuthSigningKey):
        return record.kid
    return record.name


def kind_of(record: Record) -> str:
    """The record kind (``proxy``, ``route``, ...) of ``record``."""
    for kind, cls in RECORD_TYPES.items():
        if type(record) is cls:
            return kind
    raise TypeError(f"{type(record).__name__} is not a stored record type")


def encode_record(record: Record) -> str:
    """Encode a record of any stored kind."""
    return encode(record)


def decode_record(kind: str, text: str | bytes) -> Record:
    """Decode the JSON of a record of ``kind``."""
    try:
        cls = RECORD_TYPES[kind]
    except KeyError:
        raise CodecError(f"unknown record kind {kind!r}") from None
    return decode(cls, text)
