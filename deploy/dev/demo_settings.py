"""The demo's names and settings (all from the environment), and how it runs a command."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SERVICES = ("api", "control-worker", "beat", "hub-worker")
WORKERS = ("control-worker", "beat", "hub-worker")
UNDERLAY = "198.18.99"
NETWORK = "10.99.0.0/24"
HUB_TUNNEL_IP = "10.99.0.1"


@dataclass(frozen=True)
class Demo:
    """Where this demo keeps its state, and the names it uses (all from the environment)."""

    name: str
    state: Path
    api_port: int
    # ELYSIUM_DEMO_API_REPLICAS=N (N > 1): N API replicas (separate gunicorn masters on
    # api_port+1 … api_port+N) behind HAProxy on api_port, as README "High availability".
    api_replicas: int = 1

    @classmethod
    def from_env(cls) -> Demo:
        name = os.environ.get("ELYSIUM_DEMO_NAME", "demo")
        state = Path(os.environ.get("ELYSIUM_DEMO_DIR", ROOT / ".state" / name))
        port = int(os.environ.get("ELYSIUM_DEMO_API_PORT", "8443"))
        raw = os.environ.get("ELYSIUM_DEMO_API_REPLICAS", "1")
        if not raw.isdigit() or not 1 <= int(raw) <= 9:
            raise SystemExit(f"up: ELYSIUM_DEMO_API_REPLICAS must be 1-9, not {raw!r}")
        return cls(name, state.resolve(), port, int(raw))

    @property
    def services(self) -> tuple[str, ...]:
        """What `up` starts, in order: the API (or its replicas and HAProxy), then workers."""
        if self.api_replicas == 1:
            return SERVICES
        replicas = tuple(f"api-{i}" for i in range(1, self.api_replicas + 1))
        return (*replicas, "haproxy", *WORKERS)

    def replica_port(self, service: str) -> int:
        """The loopback port of ``api-N`` (``api`` alone: the API port)."""
        _, _, number = service.partition("-")
        return self.api_port + int(number) if number else self.api_port

    @property
    def hub(self) -> str:
        return f"{self.name}-hub"

    def ns(self, role: str) -> str:
        return f"ely-{self.name}-{role}"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def token_file(self) -> Path:
        return self.state / "admin.token"

    def env(self) -> dict[str, str]:
        """The ELYSIUM_* settings every process of this demo reads (also saved as ``env``)."""
        ours = {
            "ELYSIUM_STATE_DIR": str(self.state / "server"),
            "ELYSIUM_API_BIND": f"127.0.0.1:{self.api_port}",
            "ELYSIUM_TLS_CERT": str(self.pki / "server.pem"),
            "ELYSIUM_TLS_KEY": str(self.pki / "server.key"),
            "ELYSIUM_TLS_CA": str(self.pki / "ca.pem"),
            "ELYSIUM_CA_KEY": str(self.pki / "ca.key"),
            "ELYSIUM_WG_DRIVER": os.environ.get("ELYSIUM_WG_DRIVER", "auto"),
        }
        passed = {k: v for k, v in os.environ.items() if k.startswith("ELYSIUM_") and k not in ours}
        return {**passed, **ours}


def log(message: str) -> None:
    print(f"up: {message}", flush=True)


def run(
    *cmd: str, check: bool = True, env: dict[str, str] | None = None, capture: bool = True
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {}), "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}
    result = subprocess.run(cmd, capture_output=capture, text=True, env=full_env, timeout=180)
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip().splitlines()
        raise SystemExit(
            f"up: {' '.join(cmd[:3])} failed: {detail[-1] if detail else result.returncode}"
        )
    return result


def elysium(*args: str, demo: Demo) -> subprocess.CompletedProcess[str]:
    return run(str(VENV_BIN / "elysium"), *args, env=demo.env())
