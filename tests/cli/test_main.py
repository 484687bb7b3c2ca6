"""The `elysium` command fails the way a person can read: one line, a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def test_an_unreachable_database_is_one_line_and_exit_3() -> None:
    done = run("db", "migrate", ELYSIUM_DATABASE_URL="postgresql://e:e@127.0.0.1:1/nowhere")
    assert done.returncode == 3
    assert done.stderr.startswith("elysium: the database is not reachable")
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_a_bad_setting_names_the_variable_and_exits_2() -> None:
    done = run("db", "migrate", ELYSIUM_DB_POOL_MIN="many")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "elysium: ELYSIUM_DB_POOL_MIN: invalid literal for int() with base 10: 'many'"
    ]
