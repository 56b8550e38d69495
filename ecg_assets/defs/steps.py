"""What every asset step does around its work: core logs into the run, the run's host tag, the partition lock."""

from __future__ import annotations

import logging
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import dagster as dg

from ecg_assets.core.artifacts import PartitionArtifacts
from ecg_assets.core.locks import partition_lock
from ecg_assets.core.log_handlers import package_logs_to, pipeline_file_handler

HOST_TAG = "ecg_assets/host"


class _DagsterLogHandler(logging.Handler):
    def __init__(self, context: dg.OpExecutionContext):
        super().__init__()
        self.context = context

    def emit(self, record: logging.LogRecord) -> None:
        self.context.log.log(record.levelno, record.getMessage())


@contextmanager
def forward_core_logs(context: dg.OpExecutionContext, log_file: Path) -> Iterator[None]:
    """While the block runs, INFO and above from `ecg_assets.*` go to the run log and `log_file`."""
    partition = context.partition_key if context.has_partition_key else "-"
    with package_logs_to([_DagsterLogHandler(context), pipeline_file_handler(log_file, partition)]):
        yield


def tag_run_host(context: dg.OpExecutionContext) -> None:
    """Record on the run which machine executes it, so `python -m ecg_assets.recovery` only judges
    runs of its own machine."""
    if HOST_TAG not in context.run.tags:
        context.instance.add_run_tags(context.run.run_id, {HOST_TAG: socket.gethostname()})


@contextmanager
def partition_step(context: dg.OpExecutionContext, artifacts: PartitionArtifacts, log_file: Path) -> Iterator[None]:
    """Core logs forwarded to the run, and the partition's lock held: one writer per partition at a time."""
    owner = f"run {context.run.run_id} ({context.asset_key.to_user_string()})"
    tag_run_host(context)
    with forward_core_logs(context, log_file), partition_lock(artifacts, owner):
        yield
