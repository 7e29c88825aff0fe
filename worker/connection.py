"""Connect to Temporal, or fail with one readable line (never the transport's error dump).

Used by the worker and by every CLI command that talks to Temporal, so an operator with a wrong
PATHWAYS_TEMPORAL_ADDRESS reads the same short sentence everywhere.
"""

from __future__ import annotations

import re

from temporalio.client import Client
from temporalio.runtime import Runtime

from pathways.errors import CommandFailed
from pathways.settings import Settings
from workflows.client import connect

_REASON = re.compile(r'message: "([^"]+)"')


def unreachable(settings: Settings, error: BaseException) -> CommandFailed:
    """The failure to report when Temporal cannot be reached: where, which variable, why."""
    found = _REASON.search(str(error))
    reason = found.group(1) if found else "no answer"
    if "dns error" in str(error).lower():
        reason = "unknown host"
    return CommandFailed(
        f"cannot reach Temporal at {settings.temporal_address} ({reason.lower()}); "
        "check PATHWAYS_TEMPORAL_ADDRESS (or --temporal-address) and that the server is up"
    )


async def connect_or_fail(settings: Settings, runtime: Runtime | None = None) -> Client:
    """A connected client, or CommandFailed (exit 1) with one line naming the address."""
    try:
        return await connect(settings, runtime=runtime)
    except RuntimeError as error:  # the SDK's "Failed client connect: ..." transport error
        raise unreachable(settings, error) from None
