"""``elysium policy get|set|check|edit`` against the real API and a hub that loads the policy
(nftables in its namespace): a file that does not parse or a policy the API refuses changes
nothing; ``edit`` reopens a refused policy with the API's reason at the top."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import HUB, Operator
from tests.netns import Topology

GOOD = {
    "default": "drop",
    "rules": [
        {"from": "tag:ops", "to": "routes", "proto": "tcp", "ports": ["22"], "action": "accept"}
    ],
}
OTHER = {"default": "accept", "rules": []}

KEY = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="  # peer ops1 (10.94.0.2), tag ops
# An editor that writes the next prepared text into the file, keeping what it was shown.
EDITOR = """\
import sys
from pathlib import Path

work = Path(sys.argv[1])
target = Path(sys.argv[2])
n = len(list(work.glob("seen-*")))
(work / f"seen-{n}").write_text(target.read_text())
target.write_text((work / f"next-{n}").read_text())
"""


@pytest.fixture(scope="module")
def iface(operator: Operator, hub_worker: Topology) -> int:
    """``wg0`` with a route, and an enrollment token that makes the tag ``ops`` known."""
    argv = ("--network", "10.94.0.0/24", "--listen-port", "51820", "--json")
    made = json.loads(operator.ok("interface", "add", HUB, "wg0", *argv))
    interface_id = int(made["interface_id"])
    operator.ok("interface", "set", str(interface_id), "--route", "192.168.94.0/24")
    operator.ok("enroll-token", "create", str(interface_id), "--tag", "ops", "--no-qr")
    operator.ok("peer", "add", str(interface_id), "ops1", "--public-key", KEY, "--tag", "ops")
    return interface_id


def current(operator: Operator, interface_id: int) -> dict[str, object]:
    return dict(json.loads(operator.ok("policy", "get", str(interface_id), "--json")))


def test_set_waits_for_the_hub_and_get_and_check_read_it(
    operator: Operator, iface: int, tmp_path: Path
) -> None:
    (tmp_path / "p.json").write_text(json.dumps(GOOD))

    done = operator("policy", "set", str(iface), str(tmp_path / "p.json"))
    table = operator.ok("policy", "get", str(iface))
    allowed = operator.ok(
        "policy", "check", str(iface), "--from", "10.94.0.2", "--to", "192.168.94.5",
        "--proto", "tcp", "--port", "22",
    )  # fmt: skip
    to_ssh = ("--to", "192.168.94.5", "--proto", "tcp", "--port", "22", "--json")
    denied = json.loads(operator.ok("policy", "check", str(iface), "--from", "10.94.0.9", *to_ssh))

    assert done.code == 0 and "policy: done" in done.out
    assert current(operator, iface) == GOOD
    assert "tag:ops" in table and "default: drop" in table
    assert allowed.startswith("allow 10.94.0.2 -> 192.168.94.5 by rule 0")
    assert denied["action"] == "deny" and denied["rule"] is None


def test_a_file_that_does_not_parse_is_one_line_and_changes_nothing(
    operator: Operator, iface: int, tmp_path: Path
) -> None:
    before = current(operator, iface)
    (tmp_path / "bad.json").write_text('{"default": "drop",\n "rules": [,]}')

    done = operator("policy", "set", str(iface), str(tmp_path / "bad.json"))

    assert done.code == 1
    assert done.err.strip() == (
        f"elysium: {tmp_path / 'bad.json'}: not a JSON policy (line 2, column 12: Expecting value)"
    )
    assert current(operator, iface) == before


def test_a_refused_policy_shows_the_field_and_changes_nothing(
    operator: Operator, iface: int, tmp_path: Path
) -> None:
    before = current(operator, iface)
    bad = {"default": "drop", "rules": [{"from": "tag:nobody", "to": "hub", "action": "accept"}]}
    (tmp_path / "refused.json").write_text(json.dumps(bad))

    done = operator("policy", "set", str(iface), str(tmp_path / "refused.json"))

    assert done.code == 1 and done.out == ""
    assert done.err.strip().splitlines() == [
        "elysium: rules.0.from: no peer or token of this interface or a linked hub has the tag"
        " 'nobody' (400 invalid)"
    ]
    assert current(operator, iface) == before


def editor(tmp_path: Path, *texts: str) -> dict[str, str]:
    """The environment of an editor that saves ``texts`` in turn."""
    (tmp_path / "editor.py").write_text(EDITOR)
    for n, text in enumerate(texts):
        (tmp_path / f"next-{n}").write_text(text)
    command = f"{sys.executable} {tmp_path / 'editor.py'} {tmp_path}"
    return {"EDITOR": command, "VISUAL": command}


def test_edit_reopens_a_refused_policy_with_the_reason_then_applies_the_fix(
    operator: Operator, iface: int, tmp_path: Path
) -> None:
    operator.ok("policy", "set", str(iface), "-", stdin=json.dumps(GOOD))
    refused = {"default": "drop", "rules": [{"from": "tag:ghost", "to": "hub", "action": "x"}]}
    env = editor(tmp_path, json.dumps(refused), json.dumps(OTHER))

    done = operator("policy", "edit", str(iface), **env)

    first, second = (tmp_path / "seen-0").read_text(), (tmp_path / "seen-1").read_text()
    assert done.code == 0 and "policy: done" in done.out, done
    assert json.loads(_strip(first)) == GOOD and "# ERROR:" not in first
    error_lines = [ln for ln in second.splitlines() if ln.startswith("# ERROR:")]
    assert error_lines == [
        "# ERROR: rules.0.from: no peer or token of this interface or a linked hub has the tag"
        " 'ghost' (400 invalid)"
    ]
    assert json.loads(_strip(second)) == refused  # the refused text comes back to fix
    assert current(operator, iface) == OTHER


def _strip(text: str) -> str:
    return "\n".join(ln for ln in text.splitlines() if not ln.startswith("#"))


def test_edit_saved_unchanged_or_empty_changes_nothing(
    operator: Operator, iface: int, tmp_path: Path
) -> None:
    before = current(operator, iface)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()

    unchanged = operator(
        "policy", "edit", str(iface), **editor(tmp_path / "a", json.dumps(before, indent=4))
    )
    emptied = operator("policy", "edit", str(iface), **editor(tmp_path / "b", "# nothing\n\n"))

    assert unchanged.code == 0 and "unchanged" in unchanged.err
    assert emptied.code == 1
    assert emptied.err.strip() == "elysium: edit aborted: the file is empty; nothing changed"
    assert current(operator, iface) == before
