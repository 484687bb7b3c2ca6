"""One error family: a code a program can match, a message a person can read, the fields."""

from __future__ import annotations

from typing import Any


class ElysiumError(Exception):
    """Base of every error Elysium reports to a caller."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        fields: dict[str, str] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.fields = fields or {}

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body's inner object."""
        return {"code": self.code, "message": self.message, "fields": self.fields}

    @property
    def retryable(self) -> bool:
        """Whether trying again later may succeed (5xx-like) rather than the caller's fault."""
        return self.status >= 500


class ValidationError(ElysiumError):
    status = 400
    code = "invalid"

    def __init__(self, field: str, reason: str, *, code: str | None = None) -> None:
        super().__init__(f"{field}: {reason}", code=code, fields={field: reason})


class NotFound(ElysiumError):
    status = 404
    code = "not_found"


class Conflict(ElysiumError):
    status = 409
    code = "conflict"


class Gone(ElysiumError):
    status = 410
    code = "gone"


class Unauthorized(ElysiumError):
    status = 401
    code = "unauthorized"


class Forbidden(ElysiumError):
    status = 403
    code = "forbidden"


class NetworkFull(ElysiumError):
    status = 409
    code = "network_full"


class ConfigError(ElysiumError):
    status = 500
    code = "config"

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(message, fields={setting: message})


class DataplaneError(ElysiumError):
    """The host's WireGuard could not be made to match.

    ``retryable`` is chosen where the error is raised: True when trying again (after a device
    restart, say) can help, False for a request that will fail the same way every time.
    """

    status = 500
    code = "dataplane"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        fields: dict[str, str] | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message, code=code, fields=fields)
        self._retryable = retryable

    @property
    def retryable(self) -> bool:
        return self._retryable


class Unavailable(ElysiumError):
    status = 503
    code = "unavailable"
