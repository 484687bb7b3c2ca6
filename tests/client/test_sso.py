"""``elysium-client enroll --sso``: no enrollment token; the person signs in at the provider
(the code approved in Chromium on its device page), and the peer joins the interface, with
the tags, that the server's ELYSIUM_OIDC_ENROLL rules give them, then brings its tunnel up."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from elysium.settings import Settings
from tests.api.conftest import Pki, Sso
from tests.cli.test_sso import approve
from tests.client.conftest import HUB_TUNNEL_IP, HubStack, run_client
from tests.netns import ping
from tests.oidc import loopback_chromium
from tests.stack import settings_env

pytestmark = pytest.mark.netns
PROMPT = re.compile(r"open (\S+) and enter the code (\S+)")


@pytest.fixture(scope="module")
def chromium(api_pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    driver = loopback_chromium(api_pki.server_cert, tmp_path_factory.mktemp("chromium-client"))
    try:
        yield driver
    finally:
        driver.quit()


def test_enroll_with_sso_joins_where_the_rules_say_and_the_tunnel_works(
    hub_stack: HubStack, sso: Sso, chromium: WebDriver, database_url: str, tmp_path: Path
) -> None:
    state = tmp_path / "client"
    env = settings_env(Settings.from_env({}, wg_driver="userspace"))
    env["ELYSIUM_CLIENT_STATE_DIR"] = str(state)
    args = ["enroll", "--server", sso.url, "--ca", str(hub_stack.api.ca), "--sso"]
    args += ["--name", "bobs-laptop", "--netns", hub_stack.topology.peers[1]]
    client = subprocess.Popen(
        [sys.executable, "-m", "client", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert client.stderr is not None
        line = client.stderr.readline()
        found = PROMPT.search(line)
        assert found, line
        approve(chromium, found.group(1), found.group(2), "bob")
        out, err = client.communicate(timeout=90)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(10)
    assert client.returncode == 0, (out, err)
    assert "enrolled bobs-laptop as peer" in out
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT p.interface_id, p.tags, t.created_by FROM peers p"
            " JOIN enrollment_tokens t ON t.id = p.enrollment_token_id"
            " WHERE p.name = 'bobs-laptop'"
        ).fetchone()
    assert row == (hub_stack.interface_id, ["dev", "laptop"], "sso:bob@ops.example.com")
    up = run_client("up", state_dir=state)
    assert up.returncode == 0, up.stderr
    try:
        assert ping(hub_stack.topology.peers[1], HUB_TUNNEL_IP)
    finally:
        run_client("down", state_dir=state)


def test_enroll_needs_a_token_or_sso(tmp_path: Path) -> None:
    run = run_client("enroll", "--server", "https://127.0.0.1:1", "--name", "x", state_dir=tmp_path)
    assert run.returncode == 2
    assert "give one of --token TOKEN or --sso" in run.stderr
