"""Operator profiles: which API server, the CA that vouches for it, and the bearer token.

A profile is one JSON file, ``$XDG_CONFIG_HOME/elysium/profiles/<name>.json`` (mode 0600, in
a 0700 directory), with a copy of the CA certificate next to it (``<name>.ca.pem``), so the
profile keeps working when the file it was made from moves. The profile in use is
``--profile``, else ``$ELYSIUM_PROFILE``, else ``default``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from elysium.errors import ElysiumError
from elysium.exit_codes import EXIT_FAILED, EXIT_STATE

PROFILE_ENV = "ELYSIUM_PROFILE"
DEFAULT_PROFILE = "default"
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class OperatorError(ElysiumError):
    """An expected failure of the operator command: one line on stderr, ``exit_code``."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "failed",
        exit_code: int = EXIT_FAILED,
        fields: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, code=code, fields=fields)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Profile:
    name: str
    server: str
    token: str
    ca: Path | None  # None: the system's trusted CAs


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/elysium`` (default ``~/.config/elysium``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "elysium"


def profile_name(given: str | None) -> str:
    name = given or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE
    if not NAME.match(name):
        raise OperatorError(
            f"profile name {name!r}: must be 1-64 of A-Z a-z 0-9 _ . -", code="bad_profile"
        )
    return name


def _paths(name: str) -> tuple[Path, Path]:
    d = config_dir() / "profiles"
    return d / f"{name}.json", d / f"{name}.ca.pem"


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` as 0600, atomically (a reader sees the old or the new)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def save(name: str, server: str, token: str, ca_pem: bytes | None) -> Profile:
    """Store a profile (replacing one of the same name); the CA is copied when given."""
    path, ca_path = _paths(name)
    if ca_pem is not None:
        _write_private(ca_path, ca_pem)
    elif ca_path.exists():
        ca_path.unlink()
    body = {"server": server, "token": token, "ca": str(ca_path) if ca_pem is not None else None}
    _write_private(path, (json.dumps(body, indent=2) + "\n").encode())
    return Profile(name, server, token, ca_path if ca_pem is not None else None)


def load(given: str | None) -> Profile:
    """The profile in use, or a one-line error telling how to make it."""
    name = profile_name(given)
    path, _ = _paths(name)
    try:
        body = json.loads(path.read_text())
        ca = Path(body["ca"]) if body.get("ca") else None
        return Profile(name, str(body["server"]), str(body["token"]), ca)
    except FileNotFoundError:
        hint = "elysium login --server URL --ca FILE" + (
            f" --profile {name}" if name != DEFAULT_PROFILE else ""
        )
        raise OperatorError(
            f"not logged in (no profile {name!r}); run: {hint}",
            code="no_profile",
            exit_code=EXIT_STATE,
        ) from None
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise OperatorError(
            f"profile {name!r} ({path}) is unreadable: {exc}; log in again",
            code="bad_profile",
            exit_code=EXIT_STATE,
        ) from None


def remove(given: str | None) -> tuple[str, bool]:
    """Forget a profile: its file and its CA copy. Whether there was one."""
    name = profile_name(given)
    found = False
    for path in _paths(name):
        if path.exists():
            path.unlink()
            found = True
    return name, found
