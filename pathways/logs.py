"""structlog set-up, done once per process: JSON in production, console on a TTY."""

from __future__ import annotations

import logging
import sys

import structlog

_configured = False


_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message", "asctime", "color_message",  # uvicorn's ANSI copy of its message
}
_SDK_DETAILS = ("temporal_workflow", "temporal_activity")
"""Dicts of ids (workflow id, run id, type, attempt) the Temporal SDK's loggers attach."""


def _sdk_fields(
    _logger: object, _name: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    """A stdlib record's extras as keys of the line: what code passed in `extra=`, the Temporal
    SDK's workflow and activity ids, and for a line forwarded from the SDK core (its record
    carries `temporal_log`) the core's target and fields, rather than text in the message."""
    record = event.get("_record")
    if record is None:
        return event
    for key, value in record.__dict__.items():
        if key in _SDK_DETAILS and isinstance(value, dict):
            for name, detail in value.items():
                event.setdefault(name, detail)
        elif key not in _RECORD_ATTRIBUTES and key != "temporal_log" and not key.startswith("_"):
            event.setdefault(key, value)
    core = getattr(record, "temporal_log", None)
    if core is not None:
        event["target"] = core.target
        for key, value in (getattr(core, "fields", None) or {}).items():
            event.setdefault(key, value)
    return event
class NoQueryStrings(logging.Filter):
    """Access log lines with the path only: a query string may hold patient data (the console's
    worklist search is a saved view in its URL, and may be a patient's name or NHS number)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


def quiet_access_log() -> None:
    """Drop query strings from uvicorn's access log (its path is the third argument)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, NoQueryStrings) for f in access.filters):
        access.addFilter(NoQueryStrings())


def configure_logging(log_format: str = "auto", level: str = "INFO") -> None:
    """Route structlog and stdlib logging through one renderer (idempotent)."""
    global _configured
    if _configured:
        return
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    # A traceback is plain text (one string member of a JSON line): structlog's default rich
    # traceback prints every frame's local variables (patient data) and, rendered inside the
    # workflow sandbox when the SDK logs a failed workflow task, took longer than the SDK's
    # 2 s deadlock limit, turning the real failure into a _DeadlockError.
    renderers: list[structlog.types.Processor] = (
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if use_json
        else [structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)]
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _sdk_fields,
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
    quiet_access_log()
    _configured = True
