"""What the client reports to a person: one line and an exit code a script can test."""

from __future__ import annotations

from elysium.errors import ElysiumError
from elysium.exit_codes import (
    EXIT_FAILED,
    EXIT_JOB,
    EXIT_STATE,
    EXIT_TLS,
    EXIT_TOKEN,
    EXIT_UNREACHABLE,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_JOB",
    "EXIT_STATE",
    "EXIT_TLS",
    "EXIT_TOKEN",
    "EXIT_UNREACHABLE",
    "ClientError",
]


class ClientError(ElysiumError):
    """An expected failure: printed as ``error: <message>``, no traceback, ``exit_code``."""

    def __init__(self, message: str, *, code: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message, code=code)
        self.exit_code = exit_code
