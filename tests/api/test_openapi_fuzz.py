"""The OpenAPI document holds: schemathesis sends thousands of generated requests (valid and
invalid) to a live server with an admin token; no answer is a 5xx or breaks the document."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

from elysium.settings import Settings
from tests.api.conftest import Pki, make_token, start_api

MIN_CASES = 2000
CHECKS = (
    "not_a_server_error,response_schema_conformance,status_code_conformance,"
    "content_type_conformance"
)


def test_generated_requests_get_no_server_error_and_match_the_schema(
    settings: Settings, api_pki: Pki, tmp_path: Path, db: psycopg.Connection[Any]
) -> None:
    token = make_token(db, "admin")
    # Its own server: job waits capped at 1 s keep the run short when a real job id is drawn.
    server, url = start_api(settings, api_pki, tmp_path / "api.log", ELYSIUM_JOB_WAIT_MAX_S="1")
    st = Path(sys.executable).with_name("st")
    try:
        proc = subprocess.run(
            [
                str(st),
                "run",
                f"{url}/openapi.json",
                "-H",
                f"Authorization: Bearer {token}",
                "--tls-verify",
                str(api_pki.ca),
                "--checks",
                CHECKS,
                # Revoking tokens by generated ids would revoke the fuzzer's own token.
                "--exclude-name",
                "DELETE /v1/tokens/{token_id}",
                "--max-examples",
                "110",
                "--workers",
                "1",
                "--seed",
                "7",
                "--no-shrink",
                "--request-timeout",
                "30",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tmp_path,
        )
    finally:
        server.stop()
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-2000:]
    generated = next(line for line in proc.stdout.splitlines() if " generated, " in line)
    assert int(generated.split()[0]) >= MIN_CASES, generated
    assert "failed" not in generated, generated
