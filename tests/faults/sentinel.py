"""A Redis primary, its replica and three sentinels on loopback ports, made by a test.

No persistence: a killed primary loses what it had not yet sent to the replica, as a crash
would. Every process is the test's own (never the shared Redis), stopped by its pid.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import redis

from tests.api.conftest import free_port
from tests.stack import Process, wait_for

ENV = {"PATH": "/usr/bin:/bin"}
DOWN_AFTER_MS = 1000  # a primary silent this long is down (sentinels then elect and promote)


class SentinelRedis:
    """``primary`` and ``replica`` redis-servers watched by three sentinels (quorum 2)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.master_name = f"ely-{secrets.token_hex(3)}"
        self.ports = {"primary": free_port(), "replica": free_port()}
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.processes: dict[str, Process] = {}

    @property
    def sentinels(self) -> tuple[str, ...]:
        """ELYSIUM_REDIS_SENTINELS."""
        return tuple(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    @property
    def logs(self) -> list[Path]:
        return [p.log_path for p in self.processes.values()]

    def _server(self, role: str, *extra: str) -> None:
        args = ["redis-server", "--port", str(self.ports[role]), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.work), *extra]
        self.processes[role] = Process(args, ENV, self.work / f"redis-{role}.log")

    def start(self) -> None:
        self._server("primary")
        self._server("replica", "--replicaof", "127.0.0.1", str(self.ports["primary"]))
        for i, port in enumerate(self.sentinel_ports, start=1):
            config = self.work / f"sentinel{i}.conf"  # sentinels rewrite their config
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.work}\n"
                f"sentinel monitor {self.master_name} 127.0.0.1 {self.ports['primary']} 2\n"
                f"sentinel down-after-milliseconds {self.master_name} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {self.master_name} 10000\n"
                f"sentinel parallel-syncs {self.master_name} 1\n"
            )
            self.processes[f"sentinel{i}"] = Process(
                ["redis-sentinel", str(config)], ENV, self.work / f"sentinel{i}.log"
            )
        wait_for(self._ready, 20, "the replica in sync and three sentinels that know it")

    def _ready(self) -> bool:
        replica = redis.Redis(port=self.ports["replica"], socket_timeout=1)
        try:
            if replica.info("replication").get("master_link_status") != "up":
                return False
        finally:
            replica.close()
        for port in self.sentinel_ports:
            sentinel = redis.Redis(port=port, socket_timeout=1)
            try:
                state = sentinel.sentinel_master(self.master_name)
            finally:
                sentinel.close()
            if state["num-other-sentinels"] < 2 or state["num-slaves"] < 1:
                return False
        return True

    def primary_port(self) -> int:
        """The port the sentinels name as primary now."""
        sentinel = redis.Redis(port=self.sentinel_ports[0], socket_timeout=1)
        try:
            _, port = sentinel.sentinel_get_master_addr_by_name(self.master_name)
        finally:
            sentinel.close()
        return int(port)

    def kill_primary(self) -> None:
        """SIGKILL the primary (it stays down: the sentinels must promote the replica)."""
        self.processes["primary"].kill()

    def stop(self) -> None:
        for proc in reversed(self.processes.values()):
            proc.stop()
