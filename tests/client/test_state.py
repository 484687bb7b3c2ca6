"""The state directory keeps secrets private: 0700 directory, 0600 keys, config, certificate."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from client.errors import EXIT_STATE, ClientError
from client.state import STATE_DIR_ENV, Enrollment, StateDir, write_secret


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_saved_enrollment_reads_back_and_is_0600(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "client")
    state.create()
    enrollment = Enrollment(
        server="https://127.0.0.1:8443",
        name="laptop",
        peer_id=7,
        ca=str(state.ca_file),
        netns="ns1",
        config={"addresses": ["10.8.0.2/24"]},
    )

    state.save(enrollment)

    assert state.load() == enrollment
    assert mode(state.path) == 0o700
    assert mode(state.enrollment_file) == 0o600


def test_secrets_are_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0)
    try:
        write_secret(tmp_path / "wg.key", "secret\n")
    finally:
        os.umask(old)

    assert mode(tmp_path / "wg.key") == 0o600
    assert not list(tmp_path.glob(".*tmp"))


def test_loading_without_enrollment_says_to_enroll_first(tmp_path: Path) -> None:
    with pytest.raises(ClientError) as caught:
        StateDir(tmp_path).load()

    assert caught.value.code == "not_enrolled"
    assert caught.value.exit_code == EXIT_STATE
    assert "elysium-client enroll" in caught.value.message


def test_state_dir_comes_from_option_then_environment_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "env"))

    assert StateDir.from_option(tmp_path / "opt").path == tmp_path / "opt"
    assert StateDir.from_option(None).path == tmp_path / "env"
    monkeypatch.delenv(STATE_DIR_ENV)
    assert StateDir.from_option(None).path == Path("/var/lib/elysium-client")
