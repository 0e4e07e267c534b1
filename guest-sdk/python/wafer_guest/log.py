"""Logging from a plugin through the host's ``log`` import.

The host tags each line with the plugin's name and version, rate-limits it
and writes it to its own log. Natively (in unit tests) lines go to standard
error. Field values are converted with ``str``::

    from wafer_guest import log
    log.info("batch computed", rows=12)
    log.emit(log.Level.WARN, "odd input", {"user": "u1"})
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from enum import Enum


class Level(Enum):
    """Severity of a log line."""

    TRACE = "trace"
    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


# Where lines go: set to the WIT import by export_plugin inside a component.
_sink: Callable[[Level, str, list[tuple[str, str]]], None] | None = None


def set_sink(sink: Callable[[Level, str, list[tuple[str, str]]], None] | None) -> None:
    """Sends log lines to ``sink`` (``None``: standard error). Used by the SDK and by tests."""
    global _sink
    _sink = sink


def emit(
    level: Level,
    message: str,
    fields: Mapping[str, object] | Iterable[tuple[str, object]] = (),
) -> None:
    """Logs ``message`` at ``level`` with key/value ``fields``."""
    items = fields.items() if isinstance(fields, Mapping) else fields
    pairs = [(str(k), str(v)) for k, v in items]
    if _sink is not None:
        _sink(level, str(message), pairs)
    else:
        text = " ".join(f"{k}={v}" for k, v in pairs)
        print(f"[{level.name}] {message}{' ' if text else ''}{text}", file=sys.stderr)


def trace(message: str, **fields: object) -> None:
    """Logs at trace level."""
    emit(Level.TRACE, message, fields)


def debug(message: str, **fields: object) -> None:
    """Logs at debug level."""
    emit(Level.DEBUG, message, fields)


def info(message: str, **fields: object) -> None:
    """Logs at info level."""
    emit(Level.INFO, message, fields)


def warn(message: str, **fields: object) -> None:
    """Logs at warn level."""
    emit(Level.WARN, message, fields)


def error(message: str, **fields: object) -> None:
    """Logs at error level."""
    emit(Level.ERROR, message, fields)
