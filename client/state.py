"""The client's state directory: keys, certificate, CA and the stored enrollment.

Everything secret is written 0600 from its creation (atomic replace) in a 0700 directory.
Layout: ``wg.key`` (WireGuard private key), ``tls.key``/``tls.pem`` (client certificate),
``ca.pem`` (the server's CA, when one was given), ``client.json`` (server, names, config).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from client.errors import EXIT_STATE, ClientError
from elysium.files import write_atomic

DEFAULT_STATE_DIR = Path("/var/lib/elysium-client")
STATE_DIR_ENV = "ELYSIUM_CLIENT_STATE_DIR"
DEFAULT_INTERFACE = "elysium0"


@dataclass
class Enrollment:
    """What ``enroll`` learned and later commands need."""

    server: str
    name: str
    peer_id: int
    ca: str | None  # path of the CA file in the state dir; None: the system's trust store
    interface: str = DEFAULT_INTERFACE
    netns: str | None = None
    config: dict[str, Any] = field(default_factory=dict)  # the job result / GET /v1/peer/config
    config_at: str | None = None  # when this config's version first came (RFC 3339)
    checked_at: str | None = None  # when the server last answered a follower (RFC 3339)


class StateDir:
    """Paths and files of one client state directory."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def from_option(cls, path: Path | None) -> StateDir:
        """``--state-dir``, else ``$ELYSIUM_CLIENT_STATE_DIR``, else the default."""
        if path is None:
            path = Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)
        return cls(path)

    @property
    def wg_key(self) -> Path:
        return self.path / "wg.key"

    @property
    def new_wg_key(self) -> Path:
        """The next key during a rotation; it replaces ``wg_key`` once the hub has it."""
        return self.path / "wg.key.next"

    @property
    def tls_key(self) -> Path:
        return self.path / "tls.key"

    @property
    def tls_cert(self) -> Path:
        return self.path / "tls.pem"

    @property
    def ca_file(self) -> Path:
        return self.path / "ca.pem"

    @property
    def enrollment_file(self) -> Path:
        return self.path / "client.json"

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.path, 0o700)

    def enrolled(self) -> bool:
        return self.enrollment_file.exists()

    def load(self) -> Enrollment:
        """The stored enrollment, or a one-line error saying to enroll first."""
        try:
            data = json.loads(self.enrollment_file.read_text())
        except FileNotFoundError:
            raise ClientError(
                f"not enrolled (no {self.enrollment_file}); run `elysium-client enroll` first",
                code="not_enrolled",
                exit_code=EXIT_STATE,
            ) from None
        except (OSError, ValueError) as exc:
            raise ClientError(
                f"cannot read {self.enrollment_file}: {exc}",
                code="state_unreadable",
                exit_code=EXIT_STATE,
            ) from None
        return Enrollment(**data)

    def save(self, enrollment: Enrollment) -> None:
        write_secret(self.enrollment_file, json.dumps(asdict(enrollment), indent=2) + "\n")

    def read_wg_key(self) -> str:
        try:
            return self.wg_key.read_text().strip()
        except FileNotFoundError:
            raise ClientError(
                f"no WireGuard key at {self.wg_key}", code="no_key", exit_code=EXIT_STATE
            ) from None


def write_secret(path: Path, text: str | bytes) -> None:
    """Write ``path`` with mode 0600 from its creation, by atomic replace."""
    write_atomic(path, text, 0o600)
