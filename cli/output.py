"""What the operator command prints: tables for people (rich), the API's JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

# A column: its header and the field it shows (or a function of the row).
Column = tuple[str, str | Callable[[Mapping[str, Any]], Any]]


def console() -> Console:
    # Made per call: tests run the command in-process with their own stdout.
    return Console(file=sys.stdout, highlight=False, soft_wrap=False)


def err_console() -> Console:
    return Console(file=sys.stderr, highlight=False)


def print_json(data: Any) -> None:
    """The API's answer as it came (indented), for ``--json``."""
    sys.stdout.write(json.dumps(data, indent=2, default=_jsonable) + "\n")


def _jsonable(value: Any) -> str:
    """Times of the database path (``token --db``) as the API writes them (RFC 3339)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)


def cell(value: Any) -> str:
    """One value as a person reads it in a table."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value) if value else "-"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, str) and len(value) >= 19 and value[10:11] == "T" and value[4] == "-":
        return value[:19].replace("T", " ") + "Z"  # RFC 3339 UTC, to the second
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], empty: str) -> None:
    """Rows as a table, or ``empty`` (on stderr) when there are none."""
    if not rows:
        err_console().print(empty)
        return
    t = Table(show_edge=False, box=None, pad_edge=False, header_style="bold")
    for header, _ in columns:
        t.add_column(header, overflow="fold")
    for row in rows:
        t.add_row(*(cell(get(row) if callable(get) else row.get(get)) for _, get in columns))
    console().print(t)


def record(row: Mapping[str, Any], keys: Sequence[str] | None = None) -> None:
    """One object as ``field  value`` lines (every field, in the API's order, unless ``keys``)."""
    t = Table(show_header=False, show_edge=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for key in keys or list(row):
        if key in row:
            t.add_row(key, cell(row[key]))
    console().print(t)


def line(text: str) -> None:
    console().print(text, markup=False)


def note(text: str) -> None:
    """A remark for people (stderr), never mixed into what a script reads."""
    err_console().print(text, markup=False)
