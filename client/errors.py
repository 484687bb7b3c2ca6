"""What the client reports to a person: one line and an exit code a script can test."""

from __future__ import annotations

from elysium.errors import ElysiumError

# Exit codes (2 is click's own for bad usage).
EXIT_FAILED = 1
EXIT_UNREACHABLE = 3
EXIT_TLS = 4
EXIT_TOKEN = 5
EXIT_JOB = 6
EXIT_STATE = 7


class ClientError(ElysiumError):
    """An expected failure: printed as ``error: <message>``, no traceback, ``exit_code``."""

    def __init__(self, message: str, *, code: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message, code=code)
        self.exit_code = exit_code
