"""The daemon's log output: twisted.logger observers for text and JSON lines.

``tap.makeService`` builds one observer with :func:`make_observer` and hands it
to twistd (as the application's ``ILogObserver``), so ``--log-format`` and
``LOG_LEVEL`` take effect from the first line.  Libraries that log through the
stdlib (acme, docker, urllib3) are bridged in by :func:`bridge_stdlib_logging`.

Secrets never reach the output: fields whose names say they are secret
(``password``, ``secret``, ``private_key``, ``authorization``, ``token_value``)
are replaced by ``"***"`` before formatting.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import IO, Any

from attrs import frozen
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    eventAsJSON,
    formatEventAsClassicLogText,
)
from zope.interface import implementer

#: substrings of event field names whose values are never written
SECRET_FIELD_MARKERS = ("password", "secret", "private_key", "authorization", "token_value")

_REDACTED = "***"


def redact(event: LogEvent) -> LogEvent:
    """A copy of ``event`` with secret-looking fields replaced by ``***``."""
    hidden = {
        key: _REDACTED
        for key in event
        if not key.startswith("log_") and any(m in key.lower() for m in SECRET_FIELD_MARKERS)
    }
    return {**event, **hidden} if hidden else event


def format_json(event: LogEvent) -> str:
    """One JSON object (no newline) with ``log_level`` as a plain string."""
    flat: dict[str, Any] = dict(redact(event))
    level = flat.get("log_level")
    if level is not None and not isinstance(level, str):
        # a constantly.NamedConstant, which eventAsJSON would serialise as an object
        flat["log_level"] = getattr(level, "name", str(level))
    return eventAsJSON(flat)


def format_text(event: LogEvent) -> str:
    """The classic ``timestamp [namespace] message`` line (without newline)."""
    return (formatEventAsClassicLogText(redact(event)) or "").rstrip("\n")


@implementer(ILogObserver)
@frozen
class LineObserver:
    """Writes each event as one formatted line and flushes (stdout may be a pipe)."""

    stream: IO[str]
    json: bool = False

    def __call__(self, event: LogEvent) -> None:
        """Format and write one event."""
        line = format_json(event) if self.json else format_text(event)
        if line:
            self.stream.write(line + "\n")
            self.stream.flush()


def make_observer(stream: IO[str], log_format: str, log_level: str) -> ILogObserver:
    """The daemon's observer: "text" or "json" lines, events below ``log_level`` dropped."""
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(log_level))
    return FilteringLogObserver(LineObserver(stream, json=log_format == "json"), [predicate])


#: stdlib levels mapped to twisted.logger's (everything below INFO is debug)
_STDLIB_LEVELS: Mapping[int, LogLevel] = {
    logging.CRITICAL: LogLevel.critical,
    logging.ERROR: LogLevel.error,
    logging.WARNING: LogLevel.warn,
    logging.INFO: LogLevel.info,
}


class StdlibBridge(logging.Handler):
    """A stdlib ``logging.Handler`` that re-emits records into twisted.logger."""

    def emit(self, record: logging.LogRecord) -> None:
        """Forward one record, namespaced by the stdlib logger's name."""
        level = LogLevel.debug
        for threshold, mapped in _STDLIB_LEVELS.items():
            if record.levelno >= threshold:
                level = mapped
                break
        try:
            message = record.getMessage()
        except (TypeError, ValueError) as e:
            message = f"{record.msg!r} (bad format arguments: {e})"
        # "message" is reserved by the legacy log system, hence "text".
        Logger(namespace=record.name).emit(level, "{text}", text=message)


_STDLIB_LEVEL_NAMES = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def bridge_stdlib_logging(log_level: str, root: logging.Logger | None = None) -> StdlibBridge:
    """Send stdlib logging (at ``log_level`` and above) into twisted.logger; idempotent."""
    root = root if root is not None else logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, StdlibBridge):
            root.removeHandler(handler)
    bridge = StdlibBridge()
    root.addHandler(bridge)
    root.setLevel(_STDLIB_LEVEL_NAMES[log_level])
    return bridge
