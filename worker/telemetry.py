"""The Temporal SDK runtime's telemetry: core logs into the process's logging, one service_name.

The SDK core (Rust) writes its own log lines in its own format unless they are forwarded; forwarded
to the `temporalio.core` logger they go through pathways.logs like every other line, so they follow
PATHWAYS_LOG_FORMAT (one JSON object per line when asked).
"""

from __future__ import annotations

import logging

from temporalio import activity, workflow
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from pathways.settings import Settings

SERVICE_NAME = "pathways-worker"
"""The `service_name` label on every metric the worker exports (SDK and domain alike), so
dashboards tell its series from other Temporal SDK users' (the SDK's default is
`temporal-core-sdk`)."""

CORE_LOGGER = logging.getLogger("temporalio.core")
"""Where the SDK core's (Rust) log lines go: through the process's logging, so they follow
PATHWAYS_LOG_FORMAT like every other line instead of core's own console format."""


def telemetry(settings: Settings, metrics: PrometheusConfig | None = None) -> TelemetryConfig:
    """Core logs forwarded to Python logging (WARN and up, DEBUG with PATHWAYS_LOG_LEVEL=DEBUG);
    metrics, when exported, labelled service_name=pathways-worker (only once: the SDK's own
    service_name label would otherwise be repeated, which Prometheus refuses)."""
    core_level = "DEBUG" if settings.log_level.upper() == "DEBUG" else "WARN"
    forwarding = LogForwardingConfig(
        logger=CORE_LOGGER, append_target_to_name=False, prepend_target_on_message=False,
        append_log_fields_to_message=False,  # fields become JSON keys (pathways.logs)
    )
    return TelemetryConfig(
        logging=LoggingConfig(
            filter=TelemetryFilter(core_level=core_level, other_level="ERROR"),
            forwarding=forwarding,
        ),
        metrics=metrics,
        global_tags={"service_name": SERVICE_NAME},
        attach_service_name=False,
    )


def logging_runtime(settings: Settings) -> Runtime:
    """A runtime without metrics whose core logs still follow PATHWAYS_LOG_FORMAT."""
    return Runtime(telemetry=telemetry(settings))


def core_logs_follow_settings(settings: Settings) -> None:
    """Make the SDK's default runtime (used by every client made without one: the API, setup,
    start) forward core logs, before any client is made."""
    Runtime.set_default(logging_runtime(settings), error_if_already_set=False)


def structured_sdk_logs() -> None:
    """The SDK's workflow and activity loggers keep their ids as record extras (keys of a JSON
    line, see pathways.logs) instead of also appending them to every message as text."""
    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False
