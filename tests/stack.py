"""Real Elysium processes for tests: workers (and later beat, API) as subprocesses.

Each process gets the test session's settings through ``ELYSIUM_*`` variables, logs to a
file under the test's directory, and is stopped by its own pid when the test ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from elysium.settings import Settings


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a child process read ``settings``."""
    env = {**os.environ, **settings.to_env(), **extra}
    env["WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Process:
    """One child process started by a test; stopped by pid, never by name."""

    def __init__(self, args: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, env=dict(env), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def signal_group(self, sig: int) -> None:
        """``sig`` to the process and every child it forked (its own session: a gunicorn
        master and its workers, as when their host goes)."""
        os.killpg(self.pid, sig)

    def kill_group(self) -> None:
        """SIGKILL to the process and its children, as a host's crash would."""
        if self.alive():
            self.signal_group(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 10) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # The whole group: a gunicorn master killed alone leaves its workers (and their
                # database connections) behind until their own requests end.
                self.kill_group()
        self._log.close()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def elysium_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli", *args]


def wait_for(
    check: Callable[[], object], timeout: float, what: str, interval: float = 0.1
) -> object:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # the thing is not up yet
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(
        f"timed out after {timeout}s waiting for {what}"
        + (f" (last error: {last_exc})" if last_exc else "")
    )
