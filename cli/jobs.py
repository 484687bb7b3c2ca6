"""``elysium job show|wait`` and ``elysium audit list`` over the API."""

from __future__ import annotations

from typing import Any

import click

from cli import output
from cli.http import job_error
from cli.operator import DEFAULT_TIMEOUT_S, Operator, operator_options
from cli.peers import more_hint, page_options

JOB_FIELDS = [
    "id",
    "kind",
    "status",
    "interface_id",
    "peer_id",
    "created_at",
    "started_at",
    "finished_at",
    "error",
    "result",
]
AUDIT_COLUMNS: list[output.Column] = [
    ("ID", "id"),
    ("AT", "at"),
    ("ACTOR", "actor"),
    ("ACTION", "action"),
    ("TARGET", "target"),
    ("OUTCOME", "outcome"),
]


@click.group()
def job() -> None:
    """Jobs: what the API queued for workers."""


@job.command("show")
@click.argument("job_id", metavar="ID")
@operator_options()
def job_show(op: Operator, job_id: str) -> None:
    """A job as it is now."""
    op.show(op.api.job(job_id), lambda j: output.record(j, JOB_FIELDS))


@job.command("wait")
@click.argument("job_id", metavar="ID")
@click.option(
    "--timeout", type=click.FloatRange(min=1), default=DEFAULT_TIMEOUT_S, show_default=True
)
@operator_options()
def job_wait(op: Operator, job_id: str, timeout: float) -> None:
    """Wait for a job to end; exit 6 if it failed (or did not end in time)."""
    ended = op.api.wait_job(job_id, timeout)
    op.show(ended, lambda j: output.record(j, JOB_FIELDS))
    if ended["status"] == "failed":
        raise job_error(ended)


@click.group()
def audit() -> None:
    """The audit trail: who changed what, when, and how it ended."""


@audit.command("list")
@click.option("--since", metavar="TIME", help="RFC 3339 time, inclusive.")
@page_options
@operator_options()
def audit_list(op: Operator, since: str | None, limit: int, cursor: str | None) -> None:
    """Audit records in order (oldest first), a page at a time."""
    answer = op.api.get("/v1/audit", since=since, limit=limit, cursor=cursor)

    def render(a: dict[str, Any]) -> None:
        output.table(a["items"], AUDIT_COLUMNS, "no audit records")
        more_hint(a, "elysium audit list")

    op.show(answer, render)
