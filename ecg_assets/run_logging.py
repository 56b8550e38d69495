"""Route the core's `logging` records into the Dagster run log and `logs/pipeline.log`."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import dagster as dg

from ecg_assets.log_handlers import package_logs_to, pipeline_file_handler


class _DagsterLogHandler(logging.Handler):
    def __init__(self, context: dg.AssetExecutionContext):
        super().__init__()
        self.context = context

    def emit(self, record: logging.LogRecord) -> None:
        self.context.log.log(record.levelno, record.getMessage())


@contextmanager
def forward_core_logs(context: dg.AssetExecutionContext, log_file: Path) -> Iterator[None]:
    """While the block runs, INFO and above from `ecg_assets.*` go to the run log and `log_file`."""
    partition = context.partition_key if context.has_partition_key else "-"
    with package_logs_to([_DagsterLogHandler(context), pipeline_file_handler(log_file, partition)]):
        yield
