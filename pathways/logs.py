"""structlog set-up, done once per process: JSON in production, console on a TTY."""

from __future__ import annotations

import logging
import sys

import structlog

_configured = False


def _core_fields(
    _logger: object, _name: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    """A line forwarded from the Temporal SDK core (its record carries `temporal_log`): its
    target and fields as keys of the line, not text appended to the message."""
    record = event.get("_record")
    core = getattr(record, "temporal_log", None)
    if core is not None:
        event["target"] = core.target
        for key, value in (getattr(core, "fields", None) or {}).items():
            event.setdefault(key, value)
    return event


def configure_logging(log_format: str = "auto", level: str = "INFO") -> None:
    """Route structlog and stdlib logging through one renderer (idempotent)."""
    global _configured
    if _configured:
        return
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    # JSON: a traceback is one string member of the line; console: rendered by structlog
    renderers: list[structlog.types.Processor] = (
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if use_json else [structlog.dev.ConsoleRenderer()]
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _core_fields,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderers],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    logging.captureWarnings(True)  # Python warnings too are lines in the chosen format
    _configured = True
