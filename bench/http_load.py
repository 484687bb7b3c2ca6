"""A load client that is not the bottleneck: several processes, each with a few threads, each
thread on one keep-alive HTTPS connection (a ``requests.Session``), opened before the clock
starts. One Python process tops out near one core (the GIL), so a single-process client bounds
a cheap endpoint like ``/healthz`` by itself; here every process reports its CPU time, and the
busiest one's share of a core says how far the client is from being the limit.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Barrier
from typing import Any

import requests

from bench.scaffold import percentile

CLIENT_PROCESSES = 4
THREADS_PER_PROCESS = 4
START_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 900.0

# One request: (session, base url, request number) -> response.
MakeRequest = Callable[[requests.Session, str, int], requests.Response]


def run_load(
    base: str,
    ca: str,
    count: int,
    make: MakeRequest,
    processes: int = CLIENT_PROCESSES,
    threads: int = THREADS_PER_PROCESS,
) -> dict[str, Any]:
    """``count`` requests (numbered 0..count-1, split across ``processes``), all processes
    starting together; requests/s over the whole run, latencies, and the client's CPU use."""
    # fork: the children inherit ``make`` (a closure) without pickling; the caller has no
    # threads of its own running when this is called.
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Barrier(processes + 1)
    # The next request's number, shared: every connection works until all are taken, so the
    # run ends when the last few requests do, not when the slowest process's share does (a
    # fixed share each left the others idle for up to a fifth of a short run).
    taken = ctx.Value("q", 0)
    results: Queue[dict[str, Any]] = ctx.Queue()
    procs = [
        ctx.Process(
            target=_client,
            args=(base, ca, taken, count, make, threads, ready, results),
            daemon=True,
        )
        for p in range(processes)
    ]
    for proc in procs:
        proc.start()
    try:
        ready.wait(START_TIMEOUT_S)  # every connection is open: start the clock
        parts = [results.get(timeout=RUN_TIMEOUT_S) for _ in procs]
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
    elapsed = max(p["ended"] for p in parts) - min(p["started"] for p in parts)
    latencies = [t for p in parts for t in p["latencies"]]
    return {
        "requests": count,
        "failures": sum(p["failures"] for p in parts),
        "requests_per_s": round(count / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "client_busiest_process_cpu": round(max(p["cpu_s"] for p in parts) / elapsed, 2),
    }


def _client(
    base: str,
    ca: str,
    taken: Synchronized[int],
    count: int,
    make: MakeRequest,
    threads: int,
    ready: Barrier,
    results: Queue[dict[str, Any]],
) -> None:
    """One client process: ``threads`` keep-alive sessions take request numbers from
    ``taken`` (shared by every process) until ``count`` are taken."""
    sessions = []
    try:
        for _ in range(threads):
            session = requests.Session()
            # Loopback only: no proxy or CA bundle from the environment (which would override
            # ``verify``), and no per-request look-up of them.
            session.trust_env = False
            session.verify = ca
            session.get(f"{base}/healthz", timeout=30).raise_for_status()  # connect now
            sessions.append(session)
    except BaseException:
        ready.abort()  # the run fails at once rather than at the barrier's timeout
        raise
    lock = threading.Lock()
    latencies: list[float] = []
    failures = 0

    def work(session: requests.Session) -> None:
        nonlocal failures
        while True:
            with taken.get_lock():
                i = taken.value
                if i >= count:
                    return
                taken.value = i + 1
            began = time.monotonic()
            try:
                ok = make(session, base, i).status_code < 300
            except requests.RequestException:
                ok = False
            took = time.monotonic() - began
            with lock:
                latencies.append(took)
                failures += not ok

    ready.wait(START_TIMEOUT_S)
    cpu, started = time.process_time(), time.monotonic()
    workers = [threading.Thread(target=work, args=(s,)) for s in sessions]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    ended = time.monotonic()
    results.put(
        {
            "started": started,
            "ended": ended,
            "cpu_s": time.process_time() - cpu,
            "latencies": latencies,
            "failures": failures,
        }
    )
