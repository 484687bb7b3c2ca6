"""A policy as a file: read it (JSON, # comment lines) and ``elysium policy edit``: the policy
in $EDITOR, reopened with the API's reason until it is accepted, left as it was, or emptied
(which changes nothing)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import click

from cli import output
from cli.operator import Operator
from cli.profiles import OperatorError

HEADER = (
    "# The policy of interface {id} as JSON: rules are tried in order, the first match decides,"
    " else the default.\n# Save to apply; save it unchanged or empty to change nothing."
    " Lines starting with # are ignored.\n"
)


def parse_policy_text(text: str, where: str) -> Any:
    """The policy in ``text`` (JSON; lines starting with # are comments), or a one-line error."""
    try:
        return json.loads(strip_comments(text))
    except json.JSONDecodeError as exc:
        raise OperatorError(
            f"{where}: not a JSON policy (line {exc.lineno}, column {exc.colno}: {exc.msg})",
            code="bad_policy_file",
        ) from None


def strip_comments(text: str) -> str:
    # JSON strings cannot span lines, so a line starting with # is never inside one.
    return "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))


def edit_policy(op: Operator, interface_id: int) -> None:
    """Open the policy, PUT what comes back, reopen on a refusal; follow the job at the end."""
    current = op.api.get(f"/v1/interfaces/{interface_id}/policy")
    original = json.dumps(current, indent=2) + "\n"
    workdir = Path(tempfile.mkdtemp(prefix="elysium-policy-"))  # 0700, ours only
    path = workdir / f"interface-{interface_id}-policy.json"
    text, last_refused = original, None
    error = ""
    try:
        while True:
            head = HEADER.format(id=interface_id) + "".join(
                f"# ERROR: {ln}\n" for ln in error.splitlines()
            )
            path.write_text(head + text)
            click.edit(filename=str(path))
            edited = strip_comments(path.read_text())
            if not edited.strip():
                raise OperatorError("edit aborted: the file is empty; nothing changed")
            if _same(edited, original):
                output.note("policy unchanged; nothing to do")
                return
            if last_refused is not None and _same(edited, last_refused):
                kept = Path(tempfile.mkstemp(prefix="elysium-policy-", suffix=".json")[1])
                kept.write_text(edited)
                raise OperatorError(
                    f"edit aborted: not changed since it was refused; your edit is in {kept}"
                )
            text = edited if edited.endswith("\n") else edited + "\n"
            try:
                body = parse_policy_text(edited, str(path.name))
                accepted = op.api.put(f"/v1/interfaces/{interface_id}/policy", body)
            except OperatorError as exc:
                if exc.code not in ("bad_policy_file", "invalid"):
                    raise  # the server, the token or TLS: reopening will not help
                error, last_refused = exc.message, edited
                continue
            op.follow(accepted, "policy")
            return
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _same(a: str, b: str) -> bool:
    """Equal as JSON when both parse (whitespace does not count), else as text."""
    try:
        return bool(json.loads(a) == json.loads(b))
    except ValueError:
        return a.strip() == b.strip()
