"""Expected failures are one line on stderr with their own exit code, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from client.errors import EXIT_STATE, EXIT_TLS, EXIT_TOKEN, EXIT_UNREACHABLE
from client.state import Enrollment, StateDir, write_secret
from elysium import pki
from elysium.keys import generate_private_key
from tests.api.conftest import free_port
from tests.client.conftest import ApiServer, Run, run_client


def assert_one_line_error(run: Run, exit_code: int, words: str) -> None:
    assert run.returncode == exit_code, (run.stdout, run.stderr)
    assert run.stderr.startswith("error: "), run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert words in run.stderr
    assert "Traceback" not in run.stderr


def enroll(server: str, ca: Path | None, token: str, state_dir: Path) -> Run:
    args = ["enroll", "--server", server, "--token", token, "--name", "laptop"]
    if ca is not None:
        args += ["--ca", str(ca)]
    return run_client(*args, state_dir=state_dir)


def test_an_unknown_token_is_refused(api_server: ApiServer, tmp_path: Path) -> None:
    run = enroll(api_server.url, api_server.ca, "elyenr_not-a-real-token", tmp_path)

    assert_one_line_error(run, EXIT_TOKEN, "the enrollment token is not valid")
    assert not (tmp_path / "client.json").exists()


def test_a_server_certificate_from_another_ca_is_not_trusted(
    api_server: ApiServer, tmp_path: Path
) -> None:
    other_ca, _ = pki.create_ca("Someone else")
    pki.write_certificate(tmp_path / "other-ca.pem", other_ca)

    run = enroll(api_server.url, tmp_path / "other-ca.pem", "elyenr_x", tmp_path / "state")

    assert_one_line_error(run, EXIT_TLS, "not trusted by the CA in")
    assert "wrong CA?" in run.stderr


def test_an_unreachable_server_says_so(tmp_path: Path) -> None:
    server = f"https://127.0.0.1:{free_port()}"

    run = enroll(server, None, "elyenr_x", tmp_path)

    assert_one_line_error(run, EXIT_UNREACHABLE, f"cannot reach the API at {server}")


def test_commands_before_enrollment_say_to_enroll_first(tmp_path: Path) -> None:
    for command in (["up"], ["down"], ["status"], ["config"], ["rotate"]):
        run = run_client(*command, state_dir=tmp_path)

        assert_one_line_error(run, EXIT_STATE, "run `elysium-client enroll` first")


def test_every_command_has_help_with_an_example(tmp_path: Path) -> None:
    for command in ("enroll", "up", "down", "status", "config", "rotate"):
        run = run_client(command, "--help", state_dir=tmp_path)

        assert run.returncode == 0
        assert "Example" in run.stdout and f"elysium-client {command}" in run.stdout


def enrolled_state(state_dir: Path, server: str, ca: Path, issuer: tuple[Any, Any]) -> StateDir:
    """A state dir as enrollment leaves it, with a peer certificate from ``issuer``."""
    state = StateDir(state_dir)
    state.create()
    write_secret(state.wg_key, generate_private_key() + "\n")
    tls_key = pki.new_private_key()
    pki.write_private_key(state.tls_key, tls_key)
    cert = pki.sign_csr(issuer[0], issuer[1], pki.make_csr(tls_key), 1, 1)
    write_secret(state.tls_cert, pki.certificate_pem(cert))
    state.save(
        Enrollment(
            server=server,
            name="laptop",
            peer_id=1,
            ca=str(ca),
            config={"addresses": ["10.77.0.2/24"]},
        )
    )
    return state


def test_a_certificate_from_another_ca_is_rejected(api_server: ApiServer, tmp_path: Path) -> None:
    state = enrolled_state(tmp_path, api_server.url, api_server.ca, pki.create_ca("Other"))

    run = run_client("rotate", state_dir=state.path)

    assert_one_line_error(run, EXIT_TLS, "the server rejected this client's certificate")


def test_a_failed_rotation_keeps_the_current_key(api_server: ApiServer, tmp_path: Path) -> None:
    state = enrolled_state(
        tmp_path, f"https://127.0.0.1:{free_port()}", api_server.ca, pki.create_ca("Any")
    )
    before = state.wg_key.read_text()

    run = run_client("rotate", state_dir=state.path)

    assert_one_line_error(run, EXIT_UNREACHABLE, "cannot reach the API")
    assert state.wg_key.read_text() == before


def test_an_expired_token_says_so(api_server: ApiServer, database_url: str, tmp_path: Path) -> None:
    api_server.call("POST", "/v1/hubs", json={"name": "hub-x", "endpoint": "192.0.2.1"})
    iface = api_server.call(
        "POST",
        "/v1/hubs/hub-x/interfaces",
        json={"name": "wg9", "network": "10.99.0.0/24", "listen_port": 51999},
    )
    token = api_server.enrollment_token(int(iface["interface_id"]))
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE enrollment_tokens SET expires_at = now() - interval '1 second'")

    run = enroll(api_server.url, api_server.ca, token, tmp_path)

    assert_one_line_error(run, EXIT_TOKEN, "the enrollment token has expired")
