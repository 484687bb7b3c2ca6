"""The WireGuard cross-platform UAPI text protocol: build ``set=1`` requests, parse ``get=1``.

Spec: https://www.wireguard.com/xplatform/ -- ``key=value`` lines, keys in hex, a request and
its answer both end with a blank line, the answer ends with ``errno=N``.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import socket
from binascii import a2b_base64, a2b_hex, b2a_base64
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path

from dataplane.base import PeerStats
from dataplane.peer_state import ZERO_KEY_HEX, DeviceState, DeviceUpdate, PeerState
from elysium.errors import DataplaneError

EADDRINUSE = 98
RECV_CHUNK = 1 << 20
_b64 = base64.b64encode


class UapiError(DataplaneError):
    """The device answered a transaction with a non-zero errno."""

    code = "uapi"

    def __init__(self, errno: int, message: str) -> None:
        port_in_use = abs(errno) == EADDRINUSE
        super().__init__(
            message, code="port_in_use" if port_in_use else "uapi", retryable=not port_in_use
        )
        self.errno = errno


def b64_to_hex(key: str) -> str:
    return a2b_base64(key).hex()


def hex_to_b64(key: bytes | str) -> str:
    return _b64(bytes.fromhex(key.decode() if isinstance(key, bytes) else key)).decode()


def encode_set(update: DeviceUpdate) -> bytes:
    """One ``set=1`` request. ``listen_port`` goes first so a refused port changes nothing."""
    return b"".join(encode_set_parts(update))


def encode_set_parts(update: DeviceUpdate, peers_per_part: int = 1000) -> Iterator[bytes]:
    """The ``set=1`` request in pieces, so the device parses one while the next is built."""
    lines = ["set=1"]
    if update.listen_port is not None:
        lines.append(f"listen_port={update.listen_port}")
    if update.private_key is not None:
        lines.append(f"private_key={b64_to_hex(update.private_key)}")
    if update.fwmark is not None:
        lines.append(f"fwmark={update.fwmark}")
    add = lines.append
    for n, p in enumerate(update.peers, 1):
        add(f"public_key={b64_to_hex(p.public_key)}")
        if p.remove:
            add("remove=true")
            continue
        if p.update_only:
            add("update_only=true")
        if p.preshared_key is not None:
            add(f"preshared_key={b64_to_hex(p.preshared_key) if p.preshared_key else ZERO_KEY_HEX}")
        if p.endpoint is not None:
            add(f"endpoint={p.endpoint}")
        if p.keepalive is not None:
            add(f"persistent_keepalive_interval={p.keepalive}")
        if p.replace_allowed_ips:
            add("replace_allowed_ips=true")
        for ip in p.allowed_ips:
            add(f"allowed_ip={ip}")
        if n % peers_per_part == 0:
            yield ("\n".join(lines) + "\n").encode()
            lines = []
            add = lines.append
    lines.append("\n")
    yield "\n".join(lines).encode() if len(lines) > 1 else b"\n"


@contextlib.contextmanager
def unix_address(path: Path) -> Iterator[str]:
    """``path`` as an AF_UNIX address: a long one (over 108 bytes) is reached through
    ``/proc/self/fd`` of its directory, so deep state directories still work."""
    text = str(path)
    if len(os.fsencode(text)) < 100:
        yield text
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def transact(path: Path, request: bytes | Iterable[bytes], timeout: float = 30.0) -> bytes:
    """Send one request on a fresh connection and return the answer up to its blank line.

    Raises OSError when nothing listens; :class:`UapiError` when the answer's errno is not 0.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        with unix_address(path) as address:
            sock.connect(address)
        try:
            if isinstance(request, bytes):
                sock.sendall(request)
            else:
                for part in request:
                    sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the device stopped reading after an error: its answer says which
        chunks: list[bytes] = []
        tail = b""
        while True:
            chunk = sock.recv(RECV_CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
            tail = (tail + chunk)[-2:]
            if tail == b"\n\n":
                break
    answer = b"".join(chunks)
    if not answer.endswith(b"\n\n"):
        raise DataplaneError(f"UAPI socket {path} closed mid-answer", code="uapi", retryable=True)
    start = answer.rfind(b"errno=")
    errno = int(answer[start + 6 : -2]) if start >= 0 else 0
    if errno:
        raise UapiError(errno, f"device refused the request (errno={errno})")
    return answer[:start] if start >= 0 else answer


def parse_state(answer: bytes) -> DeviceState:
    """A ``get=1`` answer as device settings and peer configuration (no counters)."""
    state = DeviceState()
    peers = state.peers
    key: str | None = None
    ips: list[str] = []
    endpoint: str | None = None
    keepalive = 0
    psk: str | None = None

    def flush() -> None:
        if key is not None:
            peers[key] = PeerState(key, frozenset(ips), endpoint, keepalive, psk)

    for line in answer.split(b"\n"):
        name, _, value = line.partition(b"=")
        if name == b"allowed_ip":
            ips.append(value.decode())
        elif name == b"public_key":
            flush()
            key, ips, endpoint, keepalive, psk = hex_to_b64(value), [], None, 0, None
        elif name == b"endpoint":
            endpoint = value.decode()
        elif name == b"persistent_keepalive_interval":
            keepalive = int(value)
        elif name == b"preshared_key":
            psk = None if value == ZERO_KEY_HEX.encode() else hex_to_b64(value)
        elif key is None:
            if name == b"private_key":
                state.private_key = hex_to_b64(value)
            elif name == b"listen_port":
                state.listen_port = int(value)
            elif name == b"fwmark":
                state.fwmark = int(value)
    flush()
    return state


# wireguard-go writes each peer's fields in this order; a device that does not (another
# implementation) is parsed line by line instead, which is slower but order-free.
_PEER_RE = re.compile(
    # "." (never a newline) scans faster than character classes; *+ does not backtrack.
    rb"public_key=(.{64})\npreshared_key=.{64}\nprotocol_version=\d+\n"
    rb"(?:endpoint=(.*)\n)?last_handshake_time_sec=(\d+)\nlast_handshake_time_nsec=(\d+)\n"
    rb"tx_bytes=(\d+)\nrx_bytes=(\d+)\npersistent_keepalive_interval=\d+\n"
    rb"((?:allowed_ip=.*\n)*+)"
)


def parse_stats(answer: bytes) -> list[PeerStats]:
    """A ``get=1`` answer as per-peer endpoint, handshake time, counters and allowed IPs."""
    return _parse_peers(answer.split(b"public_key=")[1:])


class StatsReader:
    """Parses one device's ``get=1`` answers, reusing the stats of peers that did not change.

    A peer whose text in the answer is byte for byte what it was last time (an idle peer: same
    counters, same handshake) gets the same :class:`PeerStats` back without being parsed;
    stats are a function of that text alone, so a reused one is never stale. Only the last
    answer's peers are kept: the cache never outgrows the device.
    """

    def __init__(self) -> None:
        self._last: dict[bytes, PeerStats] = {}

    def parse(self, answer: bytes) -> list[PeerStats]:
        sections = answer.split(b"public_key=")
        del sections[0]  # the device's own settings
        known = self._last
        out = list(map(known.get, sections))
        missing = [s for s, stats in zip(sections, out, strict=True) if stats is None]
        if missing:
            fresh = iter(_parse_peers(missing))
            out = [stats if stats is not None else next(fresh) for stats in out]
        self._last = dict(zip(sections, out, strict=True))  # type: ignore[arg-type]
        return out  # type: ignore[return-value]


def _parse_peers(sections: list[bytes]) -> list[PeerStats]:
    """Peers from their sections of an answer (each the text after one ``public_key=``)."""
    text = b"public_key=" + b"public_key=".join(sections) if sections else b""
    matches = _PEER_RE.findall(text)
    if len(matches) != len(sections):
        return _parse_stats_by_line(text)
    if not matches:
        return []
    # Column by column: each field of every peer converted in one C-level pass.
    hex_keys, endpoints, secs, nsecs, txs, rxs, ips = zip(*matches, strict=True)
    fromts = datetime.fromtimestamp
    columns = zip(
        _hex_keys_to_b64(hex_keys),
        [e.decode() if e else None for e in endpoints],
        [
            fromts(int(sec) + int(nsec) / 1e9, UTC) if sec != b"0" else None
            for sec, nsec in zip(secs, nsecs, strict=True)
        ],
        map(int, rxs),
        map(int, txs),
        [tuple(i[11:-1].decode().split("\nallowed_ip=")) if i else () for i in ips],
        strict=True,
    )
    # tuple.__new__ straight from C: PeerStats(...) would run Python code for each of 10k peers.
    return list(map(tuple.__new__, repeat(PeerStats), columns))


def _hex_keys_to_b64(hex_keys: Sequence[bytes]) -> list[str]:
    """Many hex keys to base64 in two C calls.

    Each 32-byte key gets a zero byte appended: base64 of 33 bytes has no padding and its
    first 43 characters are exactly those of the key's own 44-character form.
    """
    if not hex_keys:
        return []
    joined = b2a_base64(a2b_hex(b"00".join(hex_keys) + b"00"), newline=False).decode()
    return [joined[i : i + 43] + "=" for i in range(0, len(joined), 44)]


def _parse_stats_by_line(answer: bytes) -> list[PeerStats]:
    out: list[PeerStats] = []
    fromts = datetime.fromtimestamp
    # Each peer section starts with public_key=; the device section comes before the first.
    for section in (b"\n" + answer).split(b"\npublic_key=")[1:]:
        fields = section.split(b"\n")
        key = _b64(bytes.fromhex(fields[0].decode())).decode()
        endpoint: str | None = None
        sec = nsec = rx = tx = 0
        ips: list[str] = []
        for line in fields[1:]:
            name, _, value = line.partition(b"=")
            if name == b"allowed_ip":
                ips.append(value.decode())
            elif name == b"rx_bytes":
                rx = int(value)
            elif name == b"tx_bytes":
                tx = int(value)
            elif name == b"last_handshake_time_sec":
                sec = int(value)
            elif name == b"last_handshake_time_nsec":
                nsec = int(value)
            elif name == b"endpoint":
                endpoint = value.decode()
        handshake = fromts(sec + nsec / 1e9, UTC) if sec else None
        out.append(PeerStats(key, endpoint, handshake, rx, tx, tuple(ips)))
    return out
