"""Shell completion of ``elysium``, and the real entry point as a process (its exit code)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def test_completion_bash_prints_a_script_and_the_command_completes_verbs() -> None:
    script = run("completion", "bash")
    words = run(
        _ELYSIUM_COMPLETE="bash_complete", COMP_WORDS="elysium enroll-token cr", COMP_CWORD="2"
    )
    groups = run(_ELYSIUM_COMPLETE="bash_complete", COMP_WORDS="elysium pe", COMP_CWORD="1")

    assert script.returncode == 0 and "_ELYSIUM_COMPLETE=bash_complete" in script.stdout
    assert "complete -o nosort -F _elysium_completion elysium" in script.stdout
    assert words.stdout.splitlines() == ["plain,create"]
    assert groups.stdout.splitlines() == ["plain,peer"]


def test_the_installed_entry_point_fails_in_one_line_with_the_clients_exit_codes(
    tmp_path: Path,
) -> None:
    profiles = tmp_path / "elysium" / "profiles"
    profiles.mkdir(parents=True)
    (profiles / "down.json").write_text(
        json.dumps({"server": "https://127.0.0.1:1", "token": "ely_x", "ca": None})
    )

    down = run("peer", "list", XDG_CONFIG_HOME=str(tmp_path), ELYSIUM_PROFILE="down")
    none = run("hub", "list", XDG_CONFIG_HOME=str(tmp_path))

    assert down.returncode == 3 and down.stdout == ""
    assert down.stderr.startswith("elysium: cannot reach the API at https://127.0.0.1:1")
    assert len(down.stderr.strip().splitlines()) == 1
    assert none.returncode == 7 and "not logged in" in none.stderr
