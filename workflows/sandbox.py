"""The workflow sandbox, with the pure domain passed through, and its re-imports kept cheap.

`pathways` is deterministic, side-effect-free domain code (and networkx, which its definition
validation uses, reads os.environ at import): importing them once, outside the sandbox, is both
safe and much faster than re-importing them for every workflow run.

The logging renderers (structlog, and rich, which structlog can use to format tracebacks) run
inside the sandbox whenever the SDK logs a workflow task failure from there: they are passed
through, or a first import there (rich reads os.getcwd()) raises RestrictedWorkflowAccessError
and hides the failure being logged.
"""

from __future__ import annotations

import importlib.util
import py_compile
import sys
from pathlib import Path

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PASSED_THROUGH = ("pathways", "networkx", "yaml", "structlog", "rich")

RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH)
)

def precompile(fallback_dir: Path) -> list[Path]:
    """Write the bytecode of this package's modules, which the sandbox imports afresh for
    every workflow instance it creates; returns the files written.

    Without a .pyc the sandbox compiles workflows/pathway.py (and search.py) from source for
    every workflow instance (each start, and each wake-up of a pathway evicted from the
    worker's cache): 6% of the worker's CPU in `bench.vs_bare`. Python writes none when
    PYTHONDONTWRITEBYTECODE is set, as container images often do. Beside the source if it is
    writable, else under `fallback_dir` (as `sys.pycache_prefix`, where imports then look).
    """
    return [write_bytecode(str(source), fallback_dir)
            for source in sorted(Path(__file__).parent.glob("*.py"))]


def write_bytecode(source: str, fallback_dir: Path) -> Path:
    """The .pyc of one source file, written beside it or under `fallback_dir`."""
    try:
        return _write(source)
    except (OSError, py_compile.PyCompileError):  # a read-only install: a prefix we can write
        if sys.pycache_prefix is None:
            fallback_dir.mkdir(parents=True, exist_ok=True)
            sys.pycache_prefix = str(fallback_dir.resolve())
        return _write(source)


def _write(source: str) -> Path:
    cfile = importlib.util.cache_from_source(source)
    py_compile.compile(source, cfile=cfile, doraise=True)
    return Path(cfile)
