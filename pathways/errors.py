"""An expected failure of an operator command: its message is printed, never a traceback."""

from __future__ import annotations


class CommandFailed(Exception):
    """An expected failure: its message is printed, the exit status is `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code
