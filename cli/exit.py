"""Leave a command that used the Temporal SDK with exactly its intended status.

The SDK's native runtime can crash the interpreter at exit (PyGILState_Release, sdk-python issue
300), which would turn a success into a core dump. Commands that touch Temporal therefore run their
coroutine, flush their output, and leave through os._exit.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn

import structlog

from pathways.errors import CommandFailed

log = structlog.get_logger("cli")

CONNECT_FAILED = "Failed client connect"
"""How the SDK's transport error starts when Temporal cannot be reached."""


def finish(coroutine: Coroutine[Any, Any, int | None]) -> NoReturn:
    code = 0
    try:
        code = asyncio.run(coroutine) or 0
    except CommandFailed as failure:
        print(f"error: {failure}", file=sys.stderr)
        code = failure.code
    except KeyboardInterrupt:
        code = 130
    except Exception as error:  # report, never dump patient data: only the type and message
        if str(error).startswith(CONNECT_FAILED):  # a connect not guarded by connect_or_fail
            print("error: cannot reach Temporal; check PATHWAYS_TEMPORAL_ADDRESS", file=sys.stderr)
        else:
            log.error("command failed", error_type=type(error).__name__, error=str(error))
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
