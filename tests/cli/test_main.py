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


def test_the_policy_example_is_a_policy_the_api_accepts() -> None:
    from cli.policy import EXAMPLE_POLICY
    from elysium.policy import compile_policy, parse_policy

    parsed = parse_policy(
        EXAMPLE_POLICY, known_tags={"ops", "servers", "laptop"}, known_peers=set()
    )
    assert len(compile_policy("wg0", parsed).rules) >= 3
    out = run("policy", "example", "--interface-id", "4")
    assert out.returncode == 0 and "/v1/interfaces/4/policy" in out.stdout
