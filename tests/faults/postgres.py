"""Private PostgreSQL 15 clusters for fault tests: one alone, or a primary and its standby.

Made with Debian's binaries (``initdb``, ``pg_basebackup``) in temp dirs, run as the
``postgres`` OS user on free loopback ports, never the shared 15/main; removed afterwards.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from db.migrate import migrate
from tests.api.conftest import free_port
from tests.faults.conftest import PG_BIN
from tests.stack import wait_for


class PrivateCluster:
    """A throwaway PostgreSQL 15 cluster with an ``elysium`` superuser (trust, loopback)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ely-pg-", dir="/tmp"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.port = free_port()
        self.log = self.dir / "postgres.log"
        self.url = f"postgresql://elysium@127.0.0.1:{self.port}/elysium"

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=60
        )

    def create(self) -> None:
        data = str(self.dir / "data")
        self._as_postgres(str(PG_BIN / "initdb"), "-D", data, "-U", "elysium", "--auth=trust")
        self.start()
        admin = f"postgresql://elysium@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE elysium")
        migrate(self.url)

    def copy_of(self, primary: PrivateCluster) -> None:
        """Make this cluster a streaming standby of ``primary`` (``pg_basebackup -R``)."""
        self._as_postgres(
            str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port),
            "-U", "elysium", "-D", str(self.dir / "data"), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        self.start()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-l", str(self.log),
            "-o", options, "-w", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", mode, "-w", "stop"
        )

    def promote(self) -> None:
        """A standby becomes a primary (``pg_ctl promote``, waited for)."""
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-w", "promote")

    def remove(self, keep_log: Path) -> None:
        if (self.dir / "data" / "postmaster.pid").exists():
            self.stop("immediate")
        if self.log.exists():
            shutil.copy(self.log, keep_log)
        shutil.rmtree(self.dir, ignore_errors=True)


class StandbyPair:
    """A primary whose every commit waits for its streaming standby (synchronous replication:
    a commit the primary acknowledged is on the standby too), and the multi-host URL that
    finds whichever of them takes writes."""

    def __init__(self) -> None:
        self.primary = PrivateCluster()
        self.standby = PrivateCluster()

    @property
    def url(self) -> str:
        hosts = f"127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
        return f"postgresql://elysium@{hosts}/elysium?target_session_attrs=read-write"

    def create(self) -> None:
        self.primary.create()
        self.standby.copy_of(self.primary)
        # Only now, and only on the primary (the standby's copy has it not): set earlier, the
        # primary's commits would wait for a standby not yet made; copied, the promoted
        # standby's would wait for one that never comes.
        with psycopg.connect(self.primary.url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            conn.execute("SELECT pg_reload_conf()")
        wait_for(self._synchronous, 30, "the standby to stream synchronously")

    def _synchronous(self) -> bool:
        with psycopg.connect(self.primary.url, autocommit=True) as conn:
            row = conn.execute("SELECT sync_state FROM pg_stat_replication").fetchone()
        return row is not None and row[0] == "sync"

    def remove(self, keep_logs: Path) -> None:
        self.standby.remove(keep_logs / "postgres-standby.log")
        self.primary.remove(keep_logs / "postgres-primary.log")
