"""`python -m ecg_assets.cli.train_worker`: one process of a `trained_model` run launched by torchrun.

`trained_model` starts `torchrun --standalone --nproc_per_node=N -m ecg_assets.cli.train_worker`
through Dagster Pipes (see `ecg_assets.defs.torchrun`). Every rank reads its job from the Pipes
context's extras and joins the process group; rank 0 alone opens the Pipes connection: it streams
the `ecg_assets` log lines into the Dagster run (and `logs/pipeline.log`) as they happen and
reports the materialization. The other ranks only print warnings and errors, to stderr. This
module needs `dagster_pipes`, not Dagster.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from dagster_pipes import PipesContext, PipesDefaultContextLoader, PipesEnvVarParamsLoader, open_dagster_pipes
from pydantic import BaseModel

from ecg_assets.core.ddp import Ranks, torchrun_process_group
from ecg_assets.core.ensemble import FitResult, fit_model
from ecg_assets.core.log_handlers import package_logs_to, pipeline_file_handler
from ecg_assets.core.pooled import PooledStore, PooledStoreSpec
from ecg_assets.core.splits import read_splits
from ecg_assets.core.store import RecordStore
from ecg_assets.core.training import DeviceSettings, TrainingConfig


class TorchrunJob(BaseModel):
    """What every worker trains on, and where results and logs go (the Pipes extras).

    The records are one partition's `store`, or several stores read as one (`pooled`, for `pooled_model`).
    """

    partition: str
    store: Path | None = None
    pooled: PooledStoreSpec | None = None
    splits: Path
    models_dir: Path
    training_log: Path
    pipeline_log: Path
    config: TrainingConfig
    device: dict  # DeviceSettings.to_json()


class _PipesLogHandler(logging.Handler):
    """Sends each record to the Dagster run through the Pipes connection."""

    def __init__(self, pipes: PipesContext):
        super().__init__()
        self.pipes = pipes

    def emit(self, record: logging.LogRecord) -> None:
        self.pipes.log.log(record.levelno, record.getMessage())


def read_job() -> TorchrunJob:
    """The job in the Pipes context's extras (read-only: every rank may read it)."""
    params = PipesEnvVarParamsLoader()
    if not params.is_dagster_pipes_process():
        raise SystemExit(
            "ecg_assets.cli.train_worker is started by the trained_model asset (Dagster Pipes), not directly"
        )
    with PipesDefaultContextLoader().load_context(params.load_context_params()) as context:
        return TorchrunJob.model_validate(context["extras"])


def open_store(job: TorchrunJob) -> RecordStore | PooledStore:
    """The records the job trains on."""
    if job.pooled is not None:
        return PooledStore.from_spec(job.pooled)
    if job.store is None:
        raise ValueError("a torchrun job needs a store or a pooled store")
    return RecordStore(job.store)


def _train(job: TorchrunJob, settings: DeviceSettings, ranks: Ranks) -> FitResult:
    store = open_store(job)
    return fit_model(
        store, read_splits(job.splits), job.config, settings, job.models_dir, job.training_log, ranks=ranks
    )


def main() -> None:
    job = read_job()
    requested = DeviceSettings.from_json(job.device)
    with torchrun_process_group(requested.device.type) as ranks:
        settings = requested.on_rank(ranks)
        if not ranks.is_main:
            stderr = logging.StreamHandler(sys.stderr)
            stderr.setFormatter(logging.Formatter(f"[rank {ranks.rank}] %(levelname)s %(name)s: %(message)s"))
            with package_logs_to([stderr], level=logging.WARNING):
                _train(job, settings, ranks)
            return
        with open_dagster_pipes() as pipes:
            with package_logs_to([_PipesLogHandler(pipes), pipeline_file_handler(job.pipeline_log, job.partition)]):
                result = _train(job, settings, ranks)
            summary = result.summary(settings)
            summary["checkpoint"] = {"raw_value": summary["checkpoint"], "type": "path"}
            pipes.report_asset_materialization(metadata=summary)


if __name__ == "__main__":
    main()
