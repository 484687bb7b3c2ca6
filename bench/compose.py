"""The container deployment: ``make compose-up`` cold (no image: the Debian base made here with
mmdebstrap, three images built) and warm (images kept, after ``make compose-down``), each
ending with the demo peer's ping through the tunnel; and the images' sizes.

Goals: ``compose_up_cold_s`` ≤ 300, ``compose_up_warm_s`` ≤ 30. The small run (``make test``)
keeps images it finds, so its "cold" start is cold only on a fresh machine
(``cold_from_scratch`` says which).
Run: ``.venv/bin/python -m bench.compose`` (writes bench/results/compose.json).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.scaffold import SMALL, write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy" / "containers"))
import stack  # noqa: E402

IMAGES = [stack.BASE_IMAGE, *stack.IMAGES]


def make(target: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(["make", "-s", target], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"make {target} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return time.perf_counter() - start


def image_mb(name: str) -> float:
    size = stack.run("podman", "image", "inspect", "--format", "{{.Size}}", name).stdout
    return round(int(size) / 1e6, 1)


def main() -> None:
    stack.preflight()  # a fresh machine has no podman yet: image_exists below needs it
    make("compose-down")
    if not SMALL:
        for name in IMAGES:
            stack.run("podman", "rmi", "-f", name, check=False)
    from_scratch = not any(stack.image_exists(name) for name in IMAGES)
    try:
        cold = make("compose-up")
        make("compose-down")
        warm = make("compose-up")
    finally:
        make("compose-down")
    figures: dict[str, Any] = {
        "compose_up_cold_s": round(cold, 1),
        "compose_up_warm_s": round(warm, 1),
        "cold_from_scratch": from_scratch,
        "image_mb": {name.split("/")[-1]: image_mb(name) for name in IMAGES},
        "goals": {"compose_up_cold_s": 300, "compose_up_warm_s": 30},
    }
    write_result("compose", figures)


if __name__ == "__main__":
    main()
