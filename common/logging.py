"""structlog setup: console output on a terminal, JSON lines otherwise."""

import logging
import sys
from typing import Any

import structlog

# Keys whose values are never written to a log, whoever passes them.
_SECRET_WORDS = ("password", "secret", "token", "key", "authorization")


def is_secret_name(name: str) -> bool:
    """Does this name (a log key, a setting's variable) stand for a secret?"""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def _redact(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    for k in event:
        if k != "event" and is_secret_name(k):
            event[k] = "***"
    return event


def setup_logging(level: str = "info", json: bool | None = None) -> None:
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # aiohttp's access log would print every proxied request; keep library noise at warning.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
