"""One request-log record per finished gateway request, and its access-log line (pure).

:func:`record_from_request` turns a finished ``twisted.web`` request into a frozen
:class:`RequestRecord`: the client IP comes from the connection (the PROXY-protocol
address when a trusted balancer sent one, never a header), the path is kept without its
query string, and no header value is copied at all, so neither the record nor the
:func:`access_line` built from it can carry a token, a cookie or an ``Authorization``
value.  Text fields are cut to fixed lengths, so a record has a bounded size.

What only later stages know (the start time, the authenticated user, the OAuth client,
the upstream, an error) is attached to the request with :func:`notes_for` by whoever
learns it; the record is built from those notes when the request finishes.

:func:`index_entries` names the indexes a record belongs to; both request-log stores
(Redis and memory) use it, so they agree on what ``/logs/ip/...`` etc. find.
"""

from __future__ import annotations

import datetime
import operator
from collections.abc import Callable
from typing import Any, TypeAlias

import attrs
from attrs import define, frozen

#: longest path kept (the rest is cut: paths are for reading, not replaying)
MAX_PATH = 2048
#: longest host, user, client id, upstream or error text kept
MAX_TEXT = 256
MAX_METHOD = 16

#: the index names of :func:`index_entries` (``errors`` and ``all`` take the value "")
INDEXES = ("all", "ip", "host", "status", "user", "client", "errors")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")

#: attribute of a request holding its :class:`RequestNotes`
_NOTES = "_oauthproxy_request_notes"


def status_class(status: int) -> str:
    """``"2xx"``-style class of ``status`` (``"5xx"`` for anything out of range)."""
    return f"{status // 100}xx" if 100 <= status < 600 else "5xx"


@frozen
class RequestRecord:
    """What the request log keeps about one request (times are POSIX seconds)."""

    #: when the response finished
    time: float
    #: ``<epoch>-<scheme>-<random>``, e.g. ``1735689600-https-a7b3c9d2``
    correlation_id: str
    client_ip: str
    method: str
    host: str
    #: the path without its query string
    path: str
    status: int
    bytes_in: int = 0
    bytes_out: int = 0
    #: seconds from the start of the request to its end; None when the start is unknown
    duration: float | None = None
    scheme: str = "http"
    #: the authenticated user (set by the guard), if any
    user: str | None = None
    #: the OAuth client the access token was issued to, if any
    client_id: str | None = None
    #: the upstream the request was forwarded to, if any
    upstream: str | None = None
    #: why the gateway failed the request, if it did (e.g. "upstream timed out")
    error: str | None = None

    @property
    def status_class(self) -> str:
        """``"2xx"``-style class of the status (``"5xx"`` for anything out of range)."""
        return status_class(self.status)

    @property
    def is_error(self) -> bool:
        """Whether ``/logs/errors`` lists this record: a 5xx status or a gateway error."""
        return self.status >= 500 or self.error is not None


@define
class RequestNotes:
    """What later stages learn about a request in flight; read when it finishes."""

    #: when the request arrived (the gateway's clock)
    started: float | None = None
    correlation_id: str | None = None
    user: str | None = None
    client_id: str | None = None
    upstream: str | None = None
    error: str | None = None
    #: request body bytes received, when the body stage counted them
    bytes_in: int | None = None
    #: seconds from sending the request upstream to the upstream's response head (metrics)
    upstream_seconds: float | None = None
    #: why the request is anonymous noise (:mod:`oauthproxy.requestlog.noise`), if it is
    noise: str | None = None
    #: the authorization server answered it (the gateway serves the issuer's host)
    authorization_server: bool = False


def notes_for(request: Any) -> RequestNotes:
    """The notes attached to ``request``, attached now if there are none yet."""
    notes = getattr(request, _NOTES, None)
    if not isinstance(notes, RequestNotes):
        notes = RequestNotes()
        setattr(request, _NOTES, notes)
    return notes


def correlation_id(epoch: float, scheme: str, token: str) -> str:
    """``<epoch>-<scheme>-<token>``: sortable by time, unique by the random ``token``."""
    return f"{int(epoch)}-{scheme}-{token}"


def _text(value: bytes | str | None, limit: int = MAX_TEXT) -> str:
    """``value`` as text of at most ``limit`` characters (undecodable bytes replaced)."""
    if value is None:
        return ""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return text[:limit]


def _bytes_in(request: Any, notes: RequestNotes) -> int:
    """Request body size: as counted by the body stage, else as announced."""
    if notes.bytes_in is not None:
        return notes.bytes_in
    values = request.requestHeaders.getRawHeaders(b"content-length") or []
    if len(values) == 1 and values[0].isdigit():
        return int(values[0])
    return 0


def _host_of(request: Any) -> str:
    """The request's host name, lower case, without the port (``Request.getRequestHostname``
    without its regular expression for the usual ``name[:port]`` form)."""
    hosts = request.requestHeaders.getRawHeaders(b"host")
    if hosts:
        name, colon, port = hosts[0].partition(b":")
        if not colon or port.isdigit():
            return _text(name).lower()
    return _text(request.getRequestHostname()).lower()


#: a record as a plain tuple of its fields in :class:`RequestRecord`'s order
#: (``RequestRecord(*row)`` is the record): what the writer buffers, as a tuple costs a
#: fraction of an attrs instance to make
Row: TypeAlias = tuple[Any, ...]
#: the row of a record
_FIELDS = tuple(a.name for a in attrs.fields(RequestRecord))
record_row: Callable[[RequestRecord], Row] = operator.attrgetter(*_FIELDS)
#: positions of the fields in a :data:`Row`
ROW_TIME, ROW_CLIENT_IP, ROW_HOST, ROW_STATUS, ROW_USER, ROW_CLIENT_ID, ROW_ERROR = (
    _FIELDS.index(name)
    for name in ("time", "client_ip", "host", "status", "user", "client_id", "error")
)


def row_from_request(request: Any, now: float, new_token: Callable[[], str]) -> Row:
    """The :data:`Row` of a finished ``twisted.web`` request (``now`` is its end).

    ``new_token`` makes the random part of a correlation id when no stage set one.
    This runs for every request the gateway answers: it builds the tuple directly.
    """
    notes = notes_for(request)
    scheme = "https" if request.isSecure() else "http"
    peer = getattr(request.getClientAddress(), "host", None)
    started = notes.started
    cid = notes.correlation_id
    cid = (
        correlation_id(started if started is not None else now, scheme, new_token())
        if not cid
        else _text(cid)
    )
    user, client_id, upstream, error = notes.user, notes.client_id, notes.upstream, notes.error
    return (
        now,
        cid,
        peer[:MAX_TEXT] if isinstance(peer, str) else "unknown",
        _text(request.method, MAX_METHOD),
        _host_of(request),
        _text(request.path, MAX_PATH),
        int(request.code),
        _bytes_in(request, notes),
        int(getattr(request, "sentLength", 0) or 0),
        None if started is None else max(0.0, now - started),
        scheme,
        None if user is None else _text(user),
        None if client_id is None else _text(client_id),
        None if upstream is None else _text(upstream),
        None if error is None else _text(error),
    )


def record_from_request(request: Any, now: float, new_token: Callable[[], str]) -> RequestRecord:
    """The record of a finished ``twisted.web`` request (``now`` is its end).

    ``new_token`` makes the random part of a correlation id when no stage set one.
    """
    return RequestRecord(*row_from_request(request, now, new_token))


def index_entries(record: RequestRecord) -> list[tuple[str, str]]:
    """The ``(index, value)`` pairs under which ``record`` is found."""
    entries = [
        ("all", ""),
        ("ip", record.client_ip),
        ("host", record.host),
        ("status", record.status_class),
    ]
    if record.user:
        entries.append(("user", record.user))
    if record.client_id:
        entries.append(("client", record.client_id))
    if record.is_error:
        entries.append(("errors", ""))
    return entries


def utc_day(seconds: float) -> str:
    """The UTC date of ``seconds`` as ``YYYY-MM-DD`` (the unique-visitor buckets)."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d")


def record_json(record: RequestRecord) -> dict[str, Any]:
    """The record as a JSON object (the admin API's and the stores' representation)."""
    return attrs.asdict(record)


def record_from_json(data: Any) -> RequestRecord:
    """The record of :func:`record_json` output; ValueError if ``data`` is not one."""
    if not isinstance(data, dict):
        raise ValueError("a request record is a JSON object")
    names = {a.name for a in attrs.fields(RequestRecord)}
    try:
        return RequestRecord(**{k: v for k, v in data.items() if k in names})
    except TypeError as e:
        raise ValueError(f"not a request record: {e}") from None


def _escape(text: str) -> str:
    """``text`` safe inside one log line: control characters, quotes and backslashes escaped."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def _value(text: str) -> str:
    """A ``name=value`` value: escaped, and quoted when it has spaces."""
    escaped = _escape(text)
    return f'"{escaped}"' if " " in escaped or not escaped else escaped


def access_line(record: RequestRecord) -> str:
    """The access-log line of ``record`` (one line, no secrets: there are none to leak).

    ``ip host [time] "METHOD /path" status bytes_out duration_ms cid=... user=...``
    """
    moment = datetime.datetime.fromtimestamp(record.time, datetime.UTC)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    duration = "-" if record.duration is None else f"{record.duration * 1000:.1f}ms"
    fields = [
        _value(record.client_ip),
        _value(record.host) if record.host else "-",
        f"[{stamp}]",
        f'"{_escape(record.method)} {_escape(record.path)}"',
        str(record.status),
        str(record.bytes_out),
        duration,
        f"cid={_value(record.correlation_id)}",
    ]
    for name in ("user", "client_id", "upstream", "error"):
        value = getattr(record, name)
        if value:
            fields.append(f"{name}={_value(value)}")
    return " ".join(fields)
