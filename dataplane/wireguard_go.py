"""wireguard-go device processes, one per interface, each listening on a UAPI socket of ours.

wireguard-go's own socket path (``/run/wireguard/<ifname>.sock``) is fixed and shared by
every namespace, so two ``wg0`` in two namespaces would collide. Instead we make the listening
socket ourselves under ``<state_dir>/netns/<ns or "host">/`` and hand it over in
``WG_UAPI_FD``. wireguard-go still watches ``/run/wireguard/<ifname>.sock`` with inotify (and
exits if it is missing), so the process starts in a private mount namespace where our socket
directory is bind-mounted on ``/run/wireguard``; the host's mounts are untouched. Where
``/run/wireguard`` is a symbolic link (a container image's way of saying the path is ours),
it is pointed at our directory instead: no mount namespace, so no CAP_SYS_ADMIN.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from dataplane.uapi_protocol import transact, unix_address
from elysium.errors import DataplaneError
from elysium.netns import netns_exec

HOST_MOUNT_POINT = Path("/run/wireguard")
# $0: our socket directory, $1: interface name, $2: the wireguard-go binary.
_BIND_AND_EXEC = 'mount --bind "$0" /run/wireguard && exec "$2" -f "$1"'
START_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 3.0
GET = b"get=1\n\n"


class WireguardGo:
    """Starts, finds and stops the wireguard-go processes of one network namespace."""

    def __init__(self, state_dir: Path, netns: str | None, binary: str = "wireguard-go") -> None:
        self.netns = netns
        self.binary = binary
        self.dir = Path(state_dir) / "netns" / (netns or "host")
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def socket_path(self, ifname: str) -> Path:
        return self.dir / f"{ifname}.sock"

    def pid(self, ifname: str) -> int | None:
        """The pid of the interface's live wireguard-go process, if there is one."""
        child = self._children.get(ifname)
        if child is not None and child.poll() is not None:
            del self._children[ifname]  # reaped: no zombie left behind
        try:
            pid = int((self.dir / f"{ifname}.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if _is_wireguard_go(pid, ifname) else None

    def answers(self, ifname: str) -> bool:
        """Whether the process is alive and its UAPI socket answers ``get=1``."""
        if self.pid(ifname) is None:
            return False
        try:
            transact(self.socket_path(ifname), GET, timeout=START_TIMEOUT_S)
        except (OSError, DataplaneError):
            return False
        return True

    def names(self) -> list[str]:
        """Interfaces whose wireguard-go process is alive."""
        if not self.dir.is_dir():
            return []
        return sorted(p.stem for p in self.dir.glob("*.pid") if self.pid(p.stem) is not None)

    def start(self, ifname: str) -> int:
        """Start (or restart) the device process and wait until its socket answers."""
        self.stop(ifname)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        linked = self.netns is None and _link_mount_point(self.dir)
        if not linked:
            HOST_MOUNT_POINT.mkdir(parents=True, exist_ok=True)
        path = self.socket_path(ifname)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old_umask = os.umask(0o177)
            try:
                with unix_address(path) as address:
                    listener.bind(address)
            finally:
                os.umask(old_umask)
            listener.listen(128)
            fd = listener.fileno()
            os.set_inheritable(fd, True)
            child = self._spawn(ifname, fd, linked)
        finally:
            listener.close()  # the child holds its own copy
        self._children[ifname] = child
        (self.dir / f"{ifname}.pid").write_text(f"{child.pid}\n")
        self._wait_ready(ifname, child)
        return child.pid

    def _spawn(self, ifname: str, fd: int, linked: bool) -> subprocess.Popen[bytes]:
        bind = ["sh", "-c", _BIND_AND_EXEC, str(self.dir), ifname, self.binary]
        if linked:
            command = [self.binary, "-f", ifname]
        elif self.netns is not None:
            command = [*netns_exec(self.netns), *bind]
        else:
            command = ["unshare", "--mount", "--propagation", "private", *bind]
        env = dict(
            os.environ,
            WG_UAPI_FD=str(fd),
            WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD="1",
        )
        env.pop("WG_TUN_FD", None)
        log = (self.dir / f"{ifname}.log").open("ab")
        try:
            return subprocess.Popen(
                command,
                env=env,
                pass_fds=(fd,),
                start_new_session=True,  # the device outlives a killed worker
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        except OSError as exc:
            raise DataplaneError(
                f"cannot start {self.binary}: {exc}", code="device_start_failed", retryable=True
            ) from exc
        finally:
            log.close()

    def _wait_ready(self, ifname: str, child: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if child.poll() is not None:
                break
            try:
                transact(self.socket_path(ifname), GET, timeout=START_TIMEOUT_S)
                return
            except (OSError, DataplaneError):
                time.sleep(0.02)
        self.stop(ifname)
        raise DataplaneError(
            f"wireguard-go for {ifname} did not come up: {self._log_tail(ifname)}",
            code="device_start_failed",
            retryable=True,
        )

    def stop(self, ifname: str) -> bool:
        """Stop the interface's process (its TUN device goes with it); False if none ran."""
        pid = self.pid(ifname)
        child = self._children.pop(ifname, None)
        if pid is not None:
            _terminate(pid, child)
        for suffix in (".pid", ".sock"):
            with contextlib.suppress(FileNotFoundError):
                (self.dir / f"{ifname}{suffix}").unlink()
        return pid is not None

    def _log_tail(self, ifname: str) -> str:
        try:
            lines = (self.dir / f"{ifname}.log").read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        useful = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith(("│", "┌", "└"))]
        return " | ".join(useful[-3:]) or "(empty log)"


def _link_mount_point(directory: Path) -> bool:
    """Point ``/run/wireguard`` at ``directory`` if it is a symbolic link (atomically);
    False when it is not one, as on a host."""
    if not HOST_MOUNT_POINT.is_symlink():
        return False
    if HOST_MOUNT_POINT.resolve() != directory.resolve():
        staged = HOST_MOUNT_POINT.with_name(f".{HOST_MOUNT_POINT.name}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()
        staged.symlink_to(directory)
        os.replace(staged, HOST_MOUNT_POINT)
    return True


def _is_wireguard_go(pid: int, ifname: str) -> bool:
    """Alive (not a zombie) and really our wireguard-go for ``ifname`` (pids get reused)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] == b"Z":
        return False
    return ifname.encode() in cmdline and any(b"wireguard-go" in arg for arg in cmdline)


def _terminate(pid: int, child: subprocess.Popen[bytes] | None) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if child is not None and child.poll() is not None:
            return
        if child is None and not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if child is not None:
        child.wait(timeout=STOP_TIMEOUT_S)
