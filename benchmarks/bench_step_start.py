"""Cost of starting one step process: a fresh interpreter (Dagster's default `spawn`) against a fork
of a server that preloaded the code location (`forkserver` + `preload_modules`, definitions.py).

    .venv/bin/python benchmarks/bench_step_start.py

Each started process imports `ecg_assets.definitions`, as a step process does before running its
op. Best of 3 per method, in the same run. Writes benchmarks/results/step_start.json.
"""

import importlib
import multiprocessing
import time

from benchmark_results import write_result

MODULE = "ecg_assets.definitions"
REPEATS = 3


def _step() -> None:
    importlib.import_module(MODULE)


def start_seconds(context: multiprocessing.context.BaseContext) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        process = context.Process(target=_step)
        process.start()
        process.join()
        assert process.exitcode == 0
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    spawn_s = start_seconds(multiprocessing.get_context("spawn"))
    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload([MODULE])
    started = time.perf_counter()
    process = forkserver.Process(target=_step)  # the first start also starts the server and preloads
    process.start()
    process.join()
    server_s = time.perf_counter() - started
    fork_s = start_seconds(forkserver)
    result = {
        "spawn_seconds": round(spawn_s, 3),
        "forkserver_first_start_seconds": round(server_s, 3),
        "forkserver_seconds": round(fork_s, 3),
        "speedup_per_step": round(spawn_s / fork_s, 1),
        "repeats": REPEATS,
    }
    write_result("step_start", result)


if __name__ == "__main__":
    main()
