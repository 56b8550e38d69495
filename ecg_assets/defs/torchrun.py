"""`trained_model` on several processes: torchrun launched through Dagster Pipes.

The step process runs `torchrun --standalone --nproc_per_node=N -m ecg_assets.cli.train_worker` with
the `PipesSubprocessClient` resource: the job travels in the Pipes extras, rank 0's log lines
arrive in the run log while it trains, and its reported materialization comes back here.
"""

import os
import sys
import warnings
from pathlib import Path

import dagster as dg

from ecg_assets.cli.train_worker import TorchrunJob
from ecg_assets.core.artifacts import PartitionArtifacts, PooledArtifacts
from ecg_assets.core.ddp import Ranks
from ecg_assets.core.pooled import PooledStoreSpec
from ecg_assets.core.training import DeviceSettings, TrainingConfig

WORKER_MODULE = "ecg_assets.cli.train_worker"


def torchrun_command(processes: int, module: str = WORKER_MODULE) -> list[str]:
    """torchrun (this interpreter's `python -m torch.distributed.run`) running `module` on `processes` local workers."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        module,
    ]


def worker_threads(processes: int) -> dict[str, str]:
    """OMP_NUM_THREADS for each worker: this machine's cores shared out (unless already set)."""
    if "OMP_NUM_THREADS" in os.environ:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // processes))}


def torchrun_job(
    partition: str,
    artifacts: PartitionArtifacts | PooledArtifacts,
    pipeline_log: Path,
    config: TrainingConfig,
    device: DeviceSettings,
    pooled: PooledStoreSpec | None = None,
) -> TorchrunJob:
    """The torchrun job of one partition's `trained_model`, or of `pooled_model` (`pooled`: the stores
    it reads as one)."""
    return TorchrunJob(
        partition=partition,
        store=artifacts.processed if pooled is None else None,
        pooled=pooled,
        splits=artifacts.splits,
        models_dir=artifacts.models,
        training_log=artifacts.training_log,
        pipeline_log=pipeline_log,
        config=config.model_dump(),
        device=device.to_json(),
    )


def train_with_torchrun(
    context: dg.AssetExecutionContext, client: dg.PipesSubprocessClient, processes: int, job: TorchrunJob
) -> dg.MaterializeResult:
    """Run `job` on `processes` torchrun workers; returns rank 0's reported materialization."""
    Ranks(world_size=processes).per_rank_batch(job.config.batch_size)  # a bad batch size fails before launching
    context.log.info(f"training on {processes} processes: {' '.join(torchrun_command(processes))}")
    with warnings.catch_warnings():  # Dagster's own Pipes session uses a preview API and says so on every run
        warnings.simplefilter("ignore", dg.PreviewWarning)
        invocation = client.run(
            context=context,
            command=torchrun_command(processes),
            extras=job.model_dump(mode="json"),
            env=worker_threads(processes),
        )
    return invocation.get_materialize_result()
