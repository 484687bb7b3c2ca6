"""Every benchmark still runs: each ``bench/*.py`` at its small size (``ELYSIUM_BENCH_SIZE=small``:
a few peers, one repetition) writes a result holding the same figures as its committed
full-size ``bench/results/<name>.json``, into a temporary directory, never over
``bench/results/``. The figures' values are not judged here (that is ``make bench``); a
benchmark that crashes, or a figure renamed or gone, fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.summary import flatten

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "bench" / "results"
# Every benchmark with a committed result (each needs root: namespaces, wireguard-go, nft).
BENCHMARKS = sorted(p.stem for p in COMMITTED.glob("*.json"))

pytestmark = pytest.mark.netns


def committed_files() -> dict[str, bytes]:
    """What ``make bench`` committed: every result and the summary table, by path."""
    paths = [*COMMITTED.iterdir(), ROOT / "bench" / "README.md"]
    return {str(p): p.read_bytes() for p in paths if p.is_file()}


@pytest.fixture
def untouched() -> Iterator[None]:
    """The committed results and table are the same after the test as before it."""
    before = committed_files()
    yield
    assert committed_files() == before, "a small run wrote over bench/results or bench/README.md"


def run_small(module: str, results: Path, *args: str, timeout: float = 240) -> None:
    env = {**os.environ, "ELYSIUM_BENCH_SIZE": "small", "ELYSIUM_BENCH_RESULTS": str(results)}
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{module} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def figures_and_goals(path: Path) -> tuple[set[str], set[str]]:
    data = json.loads(path.read_text())
    return set(flatten(data)), set(data.get("goals", {}))


def test_every_benchmark_has_a_committed_result() -> None:
    modules = {p.stem for p in (ROOT / "bench").glob("*.py")}
    not_benchmarks = {"__init__", "scaffold", "summary", "screenshots", "http_load"}
    assert set(BENCHMARKS) == modules - not_benchmarks


# The container deployment builds its images when a fresh machine has none (minutes).
SLOW = {"compose": 1200, "ha": 600}  # ha: five fault stacks, one after another


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.timeout(SLOW[n] + 60)) if n in SLOW else n
        for n in BENCHMARKS
    ],
)
def test_a_small_run_writes_every_figure_of_the_full_run(
    name: str, tmp_path: Path, untouched: None
) -> None:
    run_small(f"bench.{name}", tmp_path, timeout=SLOW.get(name, 240))

    assert [p.name for p in tmp_path.iterdir()] == [f"{name}.json"]
    figures, goals = figures_and_goals(tmp_path / f"{name}.json")
    committed, _ = figures_and_goals(COMMITTED / f"{name}.json")
    assert figures == committed, (
        f"missing: {sorted(committed - figures)}, new: {sorted(figures - committed)}"
    )
    assert goals <= figures, f"goals on no figure: {sorted(goals - figures)}"


def test_the_summary_tables_results_found_elsewhere(tmp_path: Path, untouched: None) -> None:
    for path in COMMITTED.glob("*.json"):
        (tmp_path / path.name).write_bytes(path.read_bytes())

    run_small("bench.summary", tmp_path)

    table = (tmp_path / "README.md").read_text()
    for name in BENCHMARKS:
        figures, _ = figures_and_goals(COMMITTED / f"{name}.json")
        for figure in figures:
            assert f"| {name} | `{figure}` |" in table


def test_the_screenshots_are_taken(tmp_path: Path, untouched: None) -> None:
    run_small("bench.screenshots", tmp_path, str(tmp_path / "shots"))

    shots = sorted(p.name for p in (tmp_path / "shots").iterdir())
    assert shots == ["hub.png", "interface.png", "overview.png"]
    assert all((tmp_path / "shots" / s).stat().st_size > 10_000 for s in shots)
