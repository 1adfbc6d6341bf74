"""The control channel between the supervisor and one worker: calls and notices.

A unix socket pair joins the supervisor and each worker.  Frames are
length-prefixed JSON objects (:class:`~twisted.protocols.basic.Int32StringReceiver`;
AMP would do, but caps a value at 64 KiB and a metrics exposition can be larger):

- a **call** ``{"id": 7, "call": "catch_up", "args": {...}}`` is answered by
  ``{"id": 7, "result": ...}`` or ``{"id": 7, "error": "..."}``;
- a **notice** ``{"call": "workers", "args": {...}}`` expects no answer.

Both ends run the same :class:`ControlChannel` with a table of handlers; a
handler returns a value or a Deferred.  Calls that are still waiting when the
channel closes fail with :class:`ChannelClosed`, so no caller waits for a
process that is gone.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver
from twisted.python.failure import Failure

from oauthproxy.errors import OAuthProxyError

#: the largest frame either end accepts (a metrics exposition of a large daemon fits)
MAX_FRAME = 64 * 1024 * 1024

Handler = Callable[..., Any | Awaitable[Any]]

_log = Logger()


class ChannelClosed(OAuthProxyError):
    """The other process closed the control channel (it exited) before answering."""

    code = "worker_gone"


class RemoteError(OAuthProxyError):
    """The other process' handler failed; the detail is its message."""

    code = "worker_call_failed"


class ControlChannel(Int32StringReceiver):
    """One end of a control channel (see the module docstring)."""

    MAX_LENGTH = MAX_FRAME

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        on_close: Callable[[], None] = lambda: None,
    ) -> None:
        """``handlers`` answer the other end's calls and notices by name."""
        self.handlers = dict(handlers)
        self.on_close = on_close
        self.open = False
        self._next_id = 0
        self._waiting: dict[int, Deferred[Any]] = {}

    def connectionMade(self) -> None:
        """The channel is usable."""
        self.open = True

    def call(self, name: str, **args: Any) -> Deferred[Any]:
        """Call ``name`` on the other end; its result, or RemoteError/ChannelClosed."""
        if not self.open:
            d: Deferred[Any] = Deferred()
            d.errback(ChannelClosed(f"the control channel is closed (call {name})"))
            return d
        self._next_id += 1
        call_id = self._next_id
        waiting: Deferred[Any] = Deferred(lambda _: self._forget(call_id))
        self._waiting[call_id] = waiting
        self._send({"id": call_id, "call": name, "args": args})
        return waiting

    def _forget(self, call_id: int) -> None:
        """A call was cancelled: its answer, if it comes, is dropped."""
        self._waiting.pop(call_id, None)

    def notify(self, name: str, **args: Any) -> None:
        """Send a notice (no answer); nothing happens if the channel is closed."""
        if self.open:
            self._send({"call": name, "args": args})

    def _send(self, message: Mapping[str, Any]) -> None:
        """Write one frame."""
        self.sendString(json.dumps(message, separators=(",", ":")).encode("utf-8"))  # type: ignore[no-untyped-call]

    def stringReceived(self, string: bytes) -> None:
        """Dispatch one frame: an answer to our call, or a call or notice for us."""
        try:
            message = json.loads(string)
        except ValueError:
            _log.error("control channel: a frame that is not JSON; closing")
            self._close()
            return
        if "call" in message:
            self._dispatch(message)
            return
        waiting = self._waiting.pop(message.get("id"), None)
        if waiting is None:
            return  # cancelled meanwhile
        if "error" in message:
            waiting.errback(RemoteError(str(message["error"])))
        else:
            waiting.callback(message.get("result"))

    def _dispatch(self, message: Mapping[str, Any]) -> None:
        """Run the handler of a call or notice; answer calls."""
        name, call_id = message["call"], message.get("id")
        handler = self.handlers.get(name)
        if handler is None:
            result: Deferred[Any] = Deferred()
            result.errback(RemoteError(f"no handler for {name!r}"))
        else:
            result = maybeDeferred(_run, handler, message.get("args") or {})
        if call_id is None:
            result.addErrback(lambda f: _log.failure("control notice {name} failed", f, name=name))
            return

        def answer(value: Any) -> None:
            if self.open:
                self._send({"id": call_id, "result": value})

        def failed(failure: Failure) -> None:
            if self.open:
                self._send({"id": call_id, "error": failure.getErrorMessage()})

        result.addCallbacks(answer, failed)

    def lengthLimitExceeded(self, length: int) -> None:
        """A frame too large: the other end is broken; close."""
        _log.error("control channel: a frame of {length} bytes; closing", length=length)
        self._close()

    def _close(self) -> None:
        """Close the transport (connectionLost does the rest)."""
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Fail every call still waiting; tell the owner."""
        self.open = False
        waiting, self._waiting = self._waiting, {}
        for d in waiting.values():
            d.errback(ChannelClosed("the other process closed the control channel"))
        self.on_close()


def _run(handler: Handler, args: Mapping[str, Any]) -> Any:
    """Call ``handler`` with ``args``; a coroutine becomes a Deferred."""
    result = handler(**args)
    if isinstance(result, Coroutine):
        return Deferred.fromCoroutine(result)
    return result
