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
import re
from collections.abc import Callable, Iterable
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
    #: seconds from the start of the request to its end (to the microsecond for a
    #: finished request); None when the start is unknown
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


#: a record as a plain tuple of its fields in :class:`RequestRecord`'s order
#: (``RequestRecord(*row)`` is the record): what the writer buffers, as a tuple costs a
#: fraction of an attrs instance to make
Row: TypeAlias = tuple[Any, ...]
#: the row of a record
_FIELDS = tuple(a.name for a in attrs.fields(RequestRecord))
record_row: Callable[[RequestRecord], Row] = operator.attrgetter(*_FIELDS)
#: positions of the fields in a :data:`Row`
(
    ROW_TIME,
    ROW_CLIENT_IP,
    ROW_METHOD,
    ROW_HOST,
    ROW_STATUS,
    ROW_BYTES_IN,
    ROW_BYTES_OUT,
    ROW_DURATION,
    ROW_USER,
    ROW_CLIENT_ID,
    ROW_ERROR,
) = (
    _FIELDS.index(name)
    for name in (
        "time", "client_ip", "method", "host", "status", "bytes_in", "bytes_out", "duration",
        "user", "client_id", "error",
    )
)  # fmt: skip

#: what the access-log hook keeps of a finished request until its row is made
#: (:func:`finished_request`, :class:`RowMaker`): references to what the request
#: already holds, nothing decoded, cut or formatted on the request's path
Finished: TypeAlias = tuple[Any, ...]


def finished_request(request: Any, now: float) -> Finished:
    """What :class:`RowMaker` needs of the finished ``twisted.web`` ``request`` (``now``
    is its end), taken without any work beyond reading attributes."""
    return (
        now,
        getattr(request, _NOTES, None),
        request.getClientAddress(),
        request.isSecure(),
        request.method,
        request.path,
        request.code,
        getattr(request, "sentLength", 0),
        request.requestHeaders,
        request.getHost(),
    )


def _host_name(value: bytes) -> str:
    """The host name of a ``Host`` value, lower case, without the port: what
    ``Request.getRequestHostname`` makes of it, without its regular expression for the
    usual ``name[:port]`` form."""
    name, colon, port = value.partition(b":")
    if colon and not port.isdigit():
        # not name[:port] (an IPv6 literal...)
        name = _HOST_VALUE.match(value).group("host")  # type: ignore[union-attr]
    return _text(name).lower()


class _Texts(dict[bytes, str]):
    """Text of bytes values that repeat (hosts, methods, paths): each made once by
    ``convert`` and remembered, ``_REMEMBERED`` of them at most."""

    def __init__(self, convert: Callable[[bytes], str]) -> None:
        super().__init__()
        self.convert = convert

    def __missing__(self, value: bytes) -> str:
        """Make, remember and return the text of ``value``."""
        if len(self) >= _REMEMBERED:
            self.clear()
        text = self[value] = self.convert(value)
        return text


@define
class RowMaker:
    """Makes the :data:`Row` s of finished requests (:data:`Finished`), many at a time.

    The values that repeat from request to request (host names, methods, paths) are
    decoded once and remembered.  ``new_token`` makes the random part of a
    correlation id when no stage set one.
    """

    new_token: Callable[[], str]
    _hosts: _Texts = attrs.field(factory=lambda: _Texts(_host_name), init=False, repr=False)
    _methods: _Texts = attrs.field(
        factory=lambda: _Texts(lambda method: _text(method, MAX_METHOD)), init=False, repr=False
    )
    _paths: _Texts = attrs.field(
        factory=lambda: _Texts(lambda path: _text(path, MAX_PATH)), init=False, repr=False
    )

    def rows(
        self,
        finished: Iterable[Finished],
        failed: Callable[[], None],
        notes_of_rows: list[RequestNotes | None] | None = None,
    ) -> list[Row]:
        """The rows of ``finished``, in order; ``failed`` is called for each request whose
        row cannot be made (a bug: it is left out).  ``notes_of_rows``, if given, gets
        the notes of each row's request, in the same order."""
        rows: list[Row] = []
        append, new_token = rows.append, self.new_token
        hosts, methods, paths = self._hosts, self._methods, self._paths
        for now, notes, peer, secure, method, path, code, sent, headers, server in finished:
            try:
                scheme = "https" if secure else "http"
                ip = getattr(peer, "host", None)
                if notes is None:
                    started = cid = user = client_id = upstream = error = bytes_in = None
                else:
                    started, cid, user, client_id = (
                        notes.started,
                        notes.correlation_id,
                        notes.user,
                        notes.client_id,
                    )
                    upstream, error, bytes_in = notes.upstream, notes.error, notes.bytes_in
                if bytes_in is None:
                    lengths = headers.getRawHeaders(b"content-length")
                    bytes_in = (
                        int(lengths[0])
                        if lengths and len(lengths) == 1 and lengths[0].isdigit()
                        else 0
                    )
                host_values = headers.getRawHeaders(b"host")
                append(
                    (
                        now,
                        f"{int(now if started is None else started)}-{scheme}-{new_token()}"
                        if not cid
                        else _text(cid),
                        ip[:MAX_TEXT] if isinstance(ip, str) else "unknown",
                        methods[method],
                        hosts[host_values[0]]
                        if host_values
                        else _text(getattr(server, "host", None) or "").lower(),
                        paths[path],
                        int(code),
                        bytes_in,
                        int(sent or 0),
                        None if started is None else round(max(0.0, now - started) * 1e6) / 1e6,
                        scheme,
                        None if user is None else _text(user),
                        None if client_id is None else _text(client_id),
                        None if upstream is None else _text(upstream),
                        None if error is None else _text(error),
                    )
                )
                if notes_of_rows is not None:
                    notes_of_rows.append(notes)
            except Exception:
                failed()
        return rows


#: texts a :class:`_Texts` remembers at most
_REMEMBERED = 1000
#: twisted.web's reading of a ``Host`` value (``Request.getRequestHostname``)
_HOST_VALUE = re.compile(rb"^\[?(?P<host>.*?)\]?(:\d+)?$")


def row_from_request(request: Any, now: float, new_token: Callable[[], str]) -> Row:
    """The :data:`Row` of a finished ``twisted.web`` request (``now`` is its end).

    ``new_token`` makes the random part of a correlation id when no stage set one.
    """

    def failed() -> None:
        raise ValueError("no row for this request")

    return RowMaker(new_token).rows([finished_request(request, now)], failed)[0]


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
