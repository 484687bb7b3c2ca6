"""What every operator verb shares: the profile it speaks as, ``--json``, and ``--wait``.

A verb is a click command decorated with ``@operator_options()`` (``changes=True`` for one
that answers with jobs); it receives an ``Operator`` as its first argument.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import click

from cli import output
from cli.http import Api, job_error
from cli.profiles import Profile, load

DEFAULT_TIMEOUT_S = 120.0


@dataclass
class Operator:
    profile_name: str | None
    as_json: bool
    wait: bool = True
    timeout: float = DEFAULT_TIMEOUT_S
    _api: Api | None = field(default=None, repr=False)
    _profile: Profile | None = field(default=None, repr=False)

    @property
    def profile(self) -> Profile:
        if self._profile is None:
            self._profile = load(self.profile_name)
        return self._profile

    @property
    def api(self) -> Api:
        if self._api is None:
            self._api = Api.for_profile(self.profile)
        return self._api

    def show(self, data: Any, render: Callable[[Any], None]) -> None:
        """``data`` as JSON for scripts, else through ``render`` for people."""
        if self.as_json:
            output.print_json(data)
        else:
            render(data)

    def follow(self, accepted: Mapping[str, Any], what: str) -> list[dict[str, Any]]:
        """Follow the jobs of a ``202`` answer to their end (unless ``--no-wait``).

        Prints the answer (``--no-wait``) or the ended jobs (``--json``), or one line per job
        for people; a failed job ends the command with exit 6 after that.
        """
        ids = job_ids(accepted)
        if not self.wait:
            self.show(dict(accepted), lambda a: _queued(a, ids, what))
            return []
        ended = []
        for job_id in ids:
            if not self.as_json and len(ids) > 1:
                output.note(f"waiting for job {job_id} ...")
            ended.append(self.api.wait_job(job_id, self.timeout))
        if self.as_json:
            output.print_json(ended[0] if len(ended) == 1 and "job_id" in accepted else ended)
        else:
            for job in ended:
                if job["status"] == "succeeded":
                    output.line(f"{what}: done (job {job['id']}, {job['kind']})")
        for job in ended:
            if job["status"] == "failed":
                raise job_error(job)
        return ended


def job_ids(accepted: Mapping[str, Any]) -> list[str]:
    """The job of a ``202`` (``job_id``), or each of a mesh change's (``jobs``)."""
    if "job_id" in accepted:
        return [str(accepted["job_id"])]
    return [str(j["job_id"]) for j in accepted.get("jobs") or []]


def _queued(accepted: Mapping[str, Any], ids: list[str], what: str) -> None:
    if not ids:
        output.line(f"{what}: nothing to do")
    for job_id in ids:
        output.line(f"{what}: queued as job {job_id} (follow it: elysium job wait {job_id})")


def operator_options(changes: bool = False) -> Callable[[Callable[..., Any]], Any]:
    """``--profile`` and ``--json`` (and with ``changes``, ``--wait/--no-wait`` and
    ``--timeout``); the command gets an ``Operator`` first."""

    def decorate(f: Callable[..., Any]) -> Any:
        @functools.wraps(f)
        def run(**kwargs: Any) -> Any:
            op = Operator(kwargs.pop("profile"), kwargs.pop("as_json"))
            if changes:
                op.wait, op.timeout = kwargs.pop("wait"), kwargs.pop("timeout")
            return f(op, **kwargs)

        if changes:
            run = click.option(
                "--timeout",
                type=click.FloatRange(min=1),
                default=DEFAULT_TIMEOUT_S,
                show_default=True,
                help="Seconds to wait for the job(s).",
            )(run)
            run = click.option(
                "--wait/--no-wait",
                default=True,
                show_default=True,
                help="Follow the job(s) to their end.",
            )(run)
        run = click.option(
            "--json", "as_json", is_flag=True, help="Print the API's JSON (for scripts)."
        )(run)
        run = click.option(
            "--profile",
            metavar="NAME",
            default=None,
            help="Profile to use (default: $ELYSIUM_PROFILE, else 'default').",
        )(run)
        return run

    return decorate
