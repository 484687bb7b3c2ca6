"""Talking to nftables inside a network namespace.

nft runs through libnftables (ctypes) on a worker thread that entered the namespace with
``setns``, so the caller's threads never change namespace; where the library cannot be loaded,
``ip netns exec NS nft`` does the same more slowly (a process per call).
"""

from __future__ import annotations

import ctypes
import os
import queue
import socket
import subprocess
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from elysium.netns import netns_exec

CLONE_NEWNET = 0x40000000
NFT_CTX_OUTPUT_STATELESS = 1 << 2
NFT_CTX_OUTPUT_JSON = 1 << 4
T = TypeVar("T")


class NftFailed(Exception):
    """nft refused a command; the message is nft's own."""

    def __init__(self, text: str) -> None:
        # nft echoes the offending line under each error; the error lines say what is wrong.
        errors = [line for line in text.splitlines() if "Error:" in line]
        super().__init__("; ".join(errors) or text)


class _NamespaceThread:
    """One long-lived thread inside a network namespace that runs what it is handed."""

    def __init__(self, netns: str | None) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], queue.Queue[Any]] | None] = queue.Queue()
        ready: queue.Queue[BaseException | None] = queue.Queue()
        self._thread = threading.Thread(
            target=self._main, args=(netns, ready), name=f"nft-{netns or 'own'}", daemon=True
        )
        self._thread.start()
        error = ready.get()
        if error is not None:
            raise error

    def _main(self, netns: str | None, ready: queue.Queue[BaseException | None]) -> None:
        try:
            if netns is not None:
                _enter_netns(netns)
        except BaseException as exc:
            ready.put(exc)
            return
        ready.put(None)
        while (job := self._jobs.get()) is not None:
            fn, reply = job
            try:
                reply.put((True, fn()))
            except BaseException as exc:
                reply.put((False, exc))

    def call(self, fn: Callable[[], T]) -> T:
        reply: queue.Queue[tuple[bool, Any]] = queue.Queue()
        self._jobs.put((fn, reply))
        ok, value = reply.get()
        if not ok:
            raise value
        return value

    def stop(self) -> None:
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(timeout=5)


def _enter_netns(netns: str) -> None:
    """Move the calling thread (only it) into ``/run/netns/NETNS``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {netns}: {os.strerror(err)}")
    finally:
        os.close(fd)


class LibNft:
    """libnftables through ctypes, every call on a thread inside the namespace."""

    name = "libnftables"

    def __init__(self, netns: str | None) -> None:
        self._lib = ctypes.CDLL("libnftables.so.1")
        lib = self._lib
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        for fn in ("nft_ctx_buffer_output", "nft_ctx_buffer_error", "nft_ctx_free"):
            getattr(lib, fn).argtypes = [ctypes.c_void_p]
        for fn in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, fn).argtypes = [ctypes.c_void_p]
            getattr(lib, fn).restype = ctypes.c_char_p
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        self._thread = _NamespaceThread(netns)
        self._ctx: int = self._thread.call(self._new_ctx)

    def _new_ctx(self) -> int:
        ctx = self._lib.nft_ctx_new(0)
        if not ctx:
            raise OSError("nft_ctx_new failed")
        self._lib.nft_ctx_buffer_output(ctx)
        self._lib.nft_ctx_buffer_error(ctx)
        return int(ctx)

    def run(self, commands: str, flags: int = 0) -> str:
        """Run ``commands`` as one transaction (like ``nft -f``); nft's output."""
        return self._thread.call(lambda: self._run(commands, flags))

    def _run(self, commands: str, flags: int) -> str:
        lib, ctx = self._lib, self._ctx
        lib.nft_ctx_output_set_flags(ctx, flags)
        rc = lib.nft_run_cmd_from_buffer(ctx, commands.encode())
        out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode()
        err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode()
        if rc != 0:
            raise NftFailed(err.strip() or f"nft failed ({rc})")
        return out

    def has_device(self, name: str) -> bool:
        def look() -> bool:
            try:
                socket.if_nametoindex(name)
            except OSError:
                return False
            return True

        return self._thread.call(look)

    def close(self) -> None:
        if self._ctx:
            ctx, self._ctx = self._ctx, 0
            self._thread.call(lambda: self._lib.nft_ctx_free(ctx))
        self._thread.stop()


class NftCommand:
    """The ``nft`` program, through ``ip netns exec`` when a namespace is named."""

    name = "nft"

    def __init__(self, netns: str | None) -> None:
        self._netns = netns
        self._prefix = netns_exec(netns)

    def run(self, commands: str, flags: int = 0) -> str:
        opts = ["-s"] if flags & NFT_CTX_OUTPUT_STATELESS else []
        opts += ["-j"] if flags & NFT_CTX_OUTPUT_JSON else []
        # With -j, -f reads JSON: the listings we ask for with flags go on the command line.
        args = [*opts, *commands.split()] if flags else ["-f", "-"]
        proc = subprocess.run(
            [*self._prefix, "nft", *args],
            input=None if flags else commands,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            raise NftFailed(proc.stderr.strip() or f"nft failed ({proc.returncode})")
        return proc.stdout

    def has_device(self, name: str) -> bool:
        ns = ["-n", self._netns] if self._netns else []
        cmd = ["ip", *ns, "link", "show", "dev", name]
        return subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0

    def close(self) -> None:
        pass


def open_nft(netns: str | None, backend: str = "auto") -> LibNft | NftCommand:
    """libnftables when it loads (``auto``/``libnftables``), else the ``nft`` program."""
    if backend in ("auto", "libnftables"):
        try:
            return LibNft(netns)
        except OSError:
            if backend == "libnftables":
                raise
    return NftCommand(netns)
