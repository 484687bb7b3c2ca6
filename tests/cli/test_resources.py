"""The operator's verbs over the API, with a real hub worker: changes wait for their job to
end (``--no-wait`` does not), tables for people, the API's JSON with ``--json``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from elysium.keys import generate_private_key, public_key
from tests.cli.conftest import HUB, Operator
from tests.netns import Topology, in_ns


def new_key() -> str:
    return public_key(generate_private_key())


@pytest.fixture(scope="module")
def iface(operator: Operator, hub_worker: Topology) -> int:
    """``wg0`` (10.91.0.0/24) on hub-a, made with ``elysium interface add`` (waited for)."""
    out = operator.ok(
        "interface", "add", HUB, "wg0", "--network", "10.91.0.0/24", "--listen-port", "51820",
        "--dns", "10.91.0.1", "--json",
    )  # fmt: skip
    job = json.loads(out)
    assert job["status"] == "succeeded" and job["kind"] == "create_interface", job
    return int(job["interface_id"])


def test_hub_add_list_and_show(operator: Operator, iface: int, hub_worker: Topology) -> None:
    added = operator("hub", "add", "hub-b", "--endpoint", "203.0.113.7")
    listed = operator.ok("hub", "list")
    shown = json.loads(operator.ok("hub", "show", HUB, "--json"))
    text = operator.ok("hub", "show", HUB)

    assert added.code == 0 and "hub hub-b declared" in added.out
    assert [ln.split()[0] for ln in listed.splitlines()[1:]] == ["hub-a", "hub-b"]
    assert "NAME" in listed.splitlines()[0] and hub_worker.hub_ip in listed
    assert shown["name"] == HUB and [i["id"] for i in shown["interfaces"]] == [iface]
    assert "wg0" in text and "10.91.0.0/24" in text


def test_a_refused_hub_shows_the_field_and_exits_1(operator: Operator) -> None:
    done = operator("hub", "add", "Not_A_Name", "--endpoint", "x")

    assert done.code == 1
    assert done.err.startswith("elysium: name: must be 1-63 of a-z 0-9 -")
    assert len(done.err.strip().splitlines()) == 1


def test_interface_add_waits_until_the_hub_made_it(
    operator: Operator, iface: int, hub_worker: Topology
) -> None:
    shown = json.loads(operator.ok("interface", "show", str(iface), "--json"))
    listed = operator.ok("interface", "list", "--hub", HUB)

    assert shown["status"] == "ready" and shown["public_key"] and shown["dns"] == ["10.91.0.1"]
    assert "wg0" in in_ns(hub_worker.hub, "ip", "link", "show").stdout
    assert f"{iface}" in listed and "10.91.0.0/24" in listed


def test_interface_set_and_rotate_key(operator: Operator, iface: int) -> None:
    before = json.loads(operator.ok("interface", "show", str(iface), "--json"))["public_key"]

    routed = operator("interface", "set", str(iface), "--route", "192.168.91.0/24")
    rotated = operator("interface", "rotate-key", str(iface))
    after = json.loads(operator.ok("interface", "show", str(iface), "--json"))

    assert routed.code == 0 and "done" in routed.out and "192.168.91.0/24" in routed.out
    assert rotated.code == 0 and "done" in rotated.out
    assert after["routes"] == ["192.168.91.0/24"]
    assert after["public_key"] and after["public_key"] != before
    assert after["public_key"] in rotated.out
    nothing = operator("interface", "set", str(iface))
    assert nothing.code == 2 and "nothing to change" in nothing.err


def test_interface_set_direct_switches_direct_paths_on_and_off(
    operator: Operator, iface: int
) -> None:
    on = operator("interface", "set", str(iface), "--direct")
    assert on.code == 0 and "done" in on.out, on.err
    assert json.loads(operator.ok("interface", "show", str(iface), "--json"))["direct"] is True
    assert "DIRECT" in operator.ok("interface", "list")
    off = operator("interface", "set", str(iface), "--no-direct")
    assert off.code == 0, off.err
    assert json.loads(operator.ok("interface", "show", str(iface), "--json"))["direct"] is False


def test_peer_add_show_list_set_disable_enable_rm(
    operator: Operator, iface: int, hub_worker: Topology
) -> None:
    key = new_key()

    added = operator("peer", "add", str(iface), "nas", "--public-key", key, "--tag", "servers")
    peer_id = json.loads(operator.ok("peer", "list", "--interface", str(iface), "--json"))["items"][
        0
    ]["id"]
    on_hub = in_ns(hub_worker.hub, "wg", "show", "wg0", "peers", check=False).stdout
    shown = json.loads(operator.ok("peer", "show", str(peer_id), "--json"))
    listed = operator.ok("peer", "list")

    assert added.code == 0 and "done" in added.out and "10.91.0.2" in added.out
    assert shown["name"] == "nas" and shown["address"] == "10.91.0.2"
    assert shown["tags"] == ["servers"]
    assert "nas" in listed and "10.91.0.2" in listed
    assert key in on_hub or on_hub == ""  # `wg` may be absent; the job's success is the proof

    subnet = operator("peer", "set", str(peer_id), "--subnet", "192.168.50.0/24")
    off = operator("peer", "disable", str(peer_id))
    disabled = json.loads(operator.ok("peer", "show", str(peer_id), "--json"))
    on = operator("peer", "enable", str(peer_id))
    enabled = json.loads(operator.ok("peer", "show", str(peer_id), "--json"))
    removed = operator("peer", "rm", str(peer_id), "--json")

    assert subnet.code == 0 and "192.168.50.0/24" in subnet.out
    assert off.code == 0 and disabled["enabled"] is False
    assert on.code == 0 and enabled["enabled"] is True
    assert removed.code == 0 and json.loads(removed.out)["status"] == "succeeded"
    gone = json.loads(operator.ok("peer", "show", str(peer_id), "--json"))
    assert gone["status"] == "removed"
    assert peer_id not in [
        p["id"] for p in json.loads(operator.ok("peer", "list", "--json"))["items"]
    ]


def test_an_unknown_peer_is_one_line_and_exit_1(operator: Operator) -> None:
    for argv in (("peer", "show", "999999"), ("peer", "rm", "999999"), ("peer", "disable", "9999")):
        done = operator(*argv)
        assert done.code == 1, done
        assert done.err.startswith("elysium: peer 99") and "(404 " in done.err
        assert len(done.err.strip().splitlines()) == 1 and done.out == ""


def test_no_wait_prints_the_job_and_job_wait_follows_it(operator: Operator, iface: int) -> None:
    queued = operator(
        "peer", "add", str(iface), "later", "--public-key", new_key(), "--no-wait", "--json"
    )
    accepted = json.loads(queued.out)

    waited = json.loads(operator.ok("job", "wait", accepted["job_id"], "--json"))
    shown = operator.ok("job", "show", accepted["job_id"])

    assert queued.code == 0 and set(accepted) >= {"job_id", "peer_id", "status"}
    assert waited["status"] == "succeeded" and waited["peer_id"] == accepted["peer_id"]
    assert "succeeded" in shown and "add_peer" in shown
    missing = operator("job", "show", "00000000-0000-0000-0000-000000000000")
    assert missing.code == 1 and "does not exist" in missing.err


def test_a_failed_job_is_exit_6(operator: Operator, iface: int, hub_worker: Topology) -> None:
    # Something else of ours holds the UDP port in the hub's namespace: the hub cannot bind it.
    holder = subprocess.Popen(
        ["ip", "netns", "exec", hub_worker.hub, sys.executable, "-c",
         "import socket, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM);"
         " s.bind(('0.0.0.0', 51830)); print('bound', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "bound"
        done = operator(
            "interface", "add", HUB, "wg8", "--network", "10.98.0.0/24",
            "--listen-port", "51830", "--timeout", "60",
        )  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
    assert done.code == 6, done
    assert done.err.startswith("elysium: job ") and "failed" in done.err
    assert len(done.err.strip().splitlines()) == 1


def test_enroll_token_create_prints_the_enroll_command_and_a_qr(
    operator: Operator, iface: int
) -> None:
    made = operator(
        "enroll-token", "create", str(iface), "--name", "laptop", "--uses", "2", "--tag", "ops"
    )
    listed = json.loads(operator.ok("enroll-token", "list", str(iface), "--json"))["items"]
    token_id = listed[-1]["id"]
    revoked = operator("enroll-token", "revoke", str(token_id))
    after = json.loads(operator.ok("enroll-token", "list", str(iface), "--json"))["items"]
    table = operator.ok("enroll-token", "list", str(iface))

    command = made.out.splitlines()[0]
    assert made.code == 0
    assert command.startswith(f"elysium-client enroll --server {operator.url} --ca ca.pem")
    assert " --token elyenr_" in command and command.endswith("--name laptop")
    assert "█" in made.out or "▀" in made.out  # the QR code, drawn with blocks
    assert listed[-1]["tags"] == ["ops"] and listed[-1]["uses_total"] == 2
    assert revoked.code == 0 and after[-1]["state"] == "revoked" and "revoked" in table
    assert command.split("--token ")[1].split()[0] not in table


def test_token_create_through_the_api_gives_a_working_token_and_revoke_ends_it(
    operator: Operator,
) -> None:
    made = operator("token", "create", "--scope", "reader", "--name", "grafana")
    text = made.out.strip()
    assert made.code == 0 and text.startswith("ely_") and made.out == text + "\n"
    assert "created API token" in made.err

    assert operator.login(text, profile="grafana").code == 0
    forbidden = operator("hub", "add", "nope", "--endpoint", "x", "--profile", "grafana")
    token_id = made.err.split("created API token ")[1].split()[0]
    operator.ok("token", "revoke", token_id)
    refused = operator("hub", "list", "--profile", "grafana")

    assert forbidden.code == 5 and "may not do this" in forbidden.err
    assert refused.code == 5


def test_audit_list_shows_who_did_what(operator: Operator, iface: int) -> None:
    rows = json.loads(operator.ok("audit", "list", "--json", "--limit", "1000"))["items"]
    table = operator.ok("audit", "list", "--limit", "5")
    page = operator("audit", "list", "--limit", "1")

    assert any("interface" in r["action"] and r["actor"].startswith("token:") for r in rows)
    assert "ACTION" in table.splitlines()[0]
    assert page.code == 0 and "more: elysium audit list --cursor" in page.err


def test_mesh_set_show_rm(operator: Operator, iface: int) -> None:
    joined = operator("mesh", "set", HUB, "--listen-port", "51999", "--json")
    shown = json.loads(operator.ok("mesh", "show", HUB, "--json"))
    text = operator.ok("mesh", "show", HUB)
    left = operator("mesh", "rm", HUB)
    after = json.loads(operator.ok("mesh", "show", HUB, "--json"))

    assert joined.code == 0, joined
    assert shown["meshed"] is True and shown["listen_port"] == 51999 and "51999" in text
    assert left.code == 0 and after["meshed"] is False
    clash = operator("mesh", "set", HUB, "--listen-port", "51820")
    assert clash.code == 1 and "listen_port: used by interface wg0" in clash.err


def test_interface_rm_removes_it_from_the_hub(
    operator: Operator, hub_worker: Topology, iface: int
) -> None:
    argv = ("--network", "10.93.0.0/24", "--listen-port", "51823", "--json")
    made = json.loads(operator.ok("interface", "add", HUB, "wg3", *argv))
    removed = operator("interface", "rm", str(made["interface_id"]))

    assert removed.code == 0 and "done" in removed.out
    assert "wg3" not in in_ns(hub_worker.hub, "ip", "link", "show").stdout
    assert operator("interface", "show", str(made["interface_id"])).code == 1


def test_token_db_writes_the_database_on_the_servers_host_without_a_profile(
    operator: Operator,
) -> None:
    env = {"ELYSIUM_DATABASE_URL": operator.database_url, "ELYSIUM_PROFILE": "nobody-here"}

    made = json.loads(
        operator.ok(
            "token", "create", "--db", "--scope", "reader", "--name", "boot", "--json", **env
        )
    )
    revoked = json.loads(operator.ok("token", "revoke", "--db", str(made["id"]), "--json", **env))
    refused = operator.login(made["token"], profile="boot")

    assert made["token"].startswith("ely_") and made["scope"] == "reader"
    assert revoked["id"] == made["id"] and revoked["revoked_at"]
    assert refused.code == 5
