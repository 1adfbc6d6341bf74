"""The admin API client used by ``oauthproxyctl`` commands (treq, its own pool).

Every non-2xx answer becomes an :class:`ApiError` whose message is built from the
API's JSON error body ``{"error", "detail", "field"}``; a connection failure
becomes an :class:`ApiError` naming the URL.  Both print as one line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import treq
from twisted.internet import defer
from twisted.internet import error as net_error
from twisted.web.client import HTTPConnectionPool, ResponseFailed

from oauthproxy.admin.messages import pointer_name

#: seconds a single API call may take
TIMEOUT = 30.0


class ApiError(Exception):
    """The API refused the request, or could not be reached."""

    def __init__(self, message: str, status: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


def error_message(status: int, body: bytes) -> ApiError:
    """The :class:`ApiError` for an error response (JSON or not)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and ("detail" in parsed or "error" in parsed):
        detail = str(parsed.get("detail") or parsed.get("error"))
        field = parsed.get("field")
        code = parsed.get("error")
        # the API words input errors with the field's name; name it when they do not
        name = pointer_name(field) if isinstance(field, str) and field.startswith("/") else field
        where = f" ({name})" if status == 422 and name and str(name) not in detail else ""
        prefix = f"{code}: " if code and code not in (detail, "invalid_input") else ""
        return ApiError(f"{prefix}{detail}{where} [HTTP {status}]", status, field)
    text = body.decode("utf-8", "replace").strip().splitlines()
    first = text[0][:200] if text else ""
    return ApiError(f"HTTP {status}{': ' + first if first else ''}", status)


class ApiClient:
    """Calls the admin API at ``base_url`` with an optional bearer ``token``."""

    def __init__(self, reactor: Any, base_url: str, token: str | None) -> None:
        self._reactor = reactor
        self._base = base_url.rstrip("/")
        self._token = token
        self._pool = HTTPConnectionPool(reactor, persistent=True)  # type: ignore[no-untyped-call]

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, str] | None = None,
        timeout: float = TIMEOUT,
    ) -> Any:
        """Send one request; the decoded JSON answer (None for an empty body).

        ``timeout``: seconds the whole call may take (longer for builds and pulls).
        """
        url = self._url(path, params)
        headers = self._headers()
        data = None
        if body is not None:
            headers["Content-Type"] = ["application/json"]
            data = json.dumps(body).encode("utf-8")
        try:
            response = await treq.request(
                method,
                url,
                headers=headers,
                data=data,
                pool=self._pool,
                reactor=self._reactor,
                timeout=timeout,
            )
            content = await treq.content(response)
        except (net_error.ConnectError, net_error.TimeoutError, ResponseFailed) as e:
            raise ApiError(f"cannot reach the admin API at {self._base}: {_reason(e)}") from None
        except net_error.DNSLookupError as e:
            raise ApiError(f"cannot resolve {self._base}: {e}") from None
        except defer.CancelledError:
            # treq cancels the request when ``timeout`` passes
            raise ApiError(
                f"the admin API at {self._base} did not answer in {timeout:g}s"
            ) from None
        if not 200 <= response.code < 300:
            raise error_message(response.code, content)
        if not content.strip():
            return None
        try:
            return json.loads(content)
        except ValueError:
            raise ApiError(f"the API at {self._base} answered with non-JSON") from None

    def _url(self, path: str, params: dict[str, str] | None) -> str:
        """The full URL of ``path`` with its query."""
        return self._base + path + (("?" + urlencode(params)) if params else "")

    def _headers(self) -> dict[bytes | str, list[bytes | str]]:
        """Accept JSON, and the bearer token when there is one."""
        headers: dict[bytes | str, list[bytes | str]] = {"Accept": ["application/json"]}
        if self._token:
            headers["Authorization"] = [f"Bearer {self._token}"]
        return headers

    async def stream(
        self, path: str, params: dict[str, str] | None, deliver: Callable[[bytes], None]
    ) -> None:
        """``GET path`` whose body is a stream: ``deliver`` each piece until it ends.

        Errors are raised as for :meth:`request` (the body is read only on success).
        """
        try:
            response = await treq.get(
                self._url(path, params),
                headers=self._headers(),
                pool=self._pool,
                reactor=self._reactor,
                timeout=TIMEOUT,
                unbuffered=True,
            )
            if not 200 <= response.code < 300:
                raise error_message(response.code, await treq.content(response))
            await treq.collect(response, deliver)
        except (net_error.ConnectError, net_error.TimeoutError, ResponseFailed) as e:
            raise ApiError(f"cannot reach the admin API at {self._base}: {_reason(e)}") from None
        except defer.CancelledError:
            raise ApiError(
                f"the admin API at {self._base} did not answer in {TIMEOUT:g}s"
            ) from None

    async def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        """``GET path``."""
        return await self.request("GET", path, params=params)

    async def post(self, path: str, body: Any = None, timeout: float = TIMEOUT) -> Any:
        """``POST path`` with a JSON body."""
        return await self.request(
            "POST", path, body=body if body is not None else {}, timeout=timeout
        )

    async def put(self, path: str, body: Any) -> Any:
        """``PUT path`` with a JSON body."""
        return await self.request("PUT", path, body=body)

    async def delete(self, path: str) -> Any:
        """``DELETE path``."""
        return await self.request("DELETE", path)

    async def close(self) -> None:
        """Close pooled connections."""
        await self._pool.closeCachedConnections()  # type: ignore[no-untyped-call]


def _reason(e: Exception) -> str:
    """A short reason for a connection failure."""
    if isinstance(e, ResponseFailed):
        return "connection lost"
    if isinstance(e, net_error.ConnectionRefusedError):
        return "connection refused"
    return e.__class__.__name__ if not str(e) else str(e).strip()
