"""Release what a run killed outright (SIGKILL, OOM killer, power loss) still holds in the Dagster instance.

Such a run never records its end: it stays STARTED, and the `gpu` pool slot its training step
claimed stays claimed, so every later training step waits for it forever ("Step blocked by
limit for pool gpu"). The local run launcher cannot check whether a run's process lives, so
Dagster's run monitoring does not notice. `python -m ecg_assets.recovery` does:

1. every unfinished run that ran on this machine (the `ecg_assets/host` tag its steps set) and
   none of whose processes (every pid in its event log) is alive any more is marked FAILURE;
2. the concurrency slots of every finished run are freed.

With a shared instance (team profile), runs of other machines are left alone: name them with
`--run-id` on any machine once you know they are dead. The artifacts need no repair (see the
README, "Faults and recovery"): the next materialization resumes.
"""

import argparse
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Iterable, Optional

import dagster as dg

from ecg_assets.defs.steps import HOST_TAG

logger = logging.getLogger(__name__)

UNFINISHED = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def _alive(pid: int) -> bool:
    """True while process `pid` runs on this machine (a zombie, killed but not yet reaped, is dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):  # no /proc: trust kill()
        return True
    return state not in ("Z", "X")


def run_processes(instance: dg.DagsterInstance, run_id: str) -> set[int]:
    """Every process that recorded a Dagster event of the run (the run worker and its step processes)."""
    events = (entry.dagster_event for entry in instance.all_logs(run_id))
    return {event.pid for event in events if event is not None and event.pid}


def find_killed_runs(instance: dg.DagsterInstance, host: Optional[str] = None) -> list[dg.DagsterRun]:
    """Unfinished runs executed on `host` (default: this machine) none of whose processes is alive."""
    host = host or socket.gethostname()
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=UNFINISHED))
    return [
        run
        for run in runs
        if run.tags.get(HOST_TAG) == host and not any(_alive(pid) for pid in run_processes(instance, run.run_id))
    ]


def release_run(instance: dg.DagsterInstance, run: dg.DagsterRun, reason: str) -> None:
    """Mark `run` failed with `reason` and free the concurrency slots it holds."""
    if run.status in UNFINISHED:
        instance.report_run_failed(run, message=reason)
    instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)


def recover(instance: dg.DagsterInstance, run_ids: Iterable[str] = ()) -> list[str]:
    """Release killed runs (the named ones, or those `find_killed_runs` finds) and the slots of finished runs.

    Returns one line per action, for the log.
    """
    actions = []
    named = list(run_ids)
    if named:
        runs = [run for run in (instance.get_run_by_id(run_id) for run_id in named) if run is not None]
        missing = set(named) - {run.run_id for run in runs}
        actions += [f"no run {run_id} in this instance" for run_id in sorted(missing)]
        reason = "marked failed by `python -m ecg_assets.recovery --run-id`: its process is gone"
    else:
        runs = find_killed_runs(instance)
        host = socket.gethostname()
        reason = f"marked failed by `python -m ecg_assets.recovery`: none of its processes is alive on {host}"
    for run in runs:
        release_run(instance, run, reason)
        actions.append(f"run {run.run_id} ({run.job_name}, was {run.status.value}): {reason}; its slots are free")
    storage = instance.event_log_storage
    holders = storage.get_concurrency_run_ids() if storage.supports_global_concurrency_limits else set()
    for record in instance.get_run_records(filters=dg.RunsFilter(run_ids=list(holders))) if holders else []:
        if record.dagster_run.is_finished:
            storage.free_concurrency_slots_for_run(record.dagster_run.run_id)
            actions.append(f"run {record.dagster_run.run_id} had finished but still held concurrency slots: freed")
    return actions


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ecg_assets.recovery", description=__doc__.split("\n")[0])
    parser.add_argument("--run-id", action="append", default=[], help="a run known to be dead (repeatable)")
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    with dg.DagsterInstance.get() as instance:
        actions = recover(instance, args.run_id)
    for action in actions or ["nothing to release: no killed run, no slot held by a finished run"]:
        logger.info("%s", action)
    return 0


if __name__ == "__main__":
    sys.exit(main())
