"""Route the core's `logging` records into the Dagster run log and `logs/pipeline.log`."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import dagster as dg

PACKAGE_LOGGER = "ecg_assets"
_FILE_FORMAT = "%(asctime)s %(levelname)s [%(partition)s] %(name)s: %(message)s"


class _DagsterLogHandler(logging.Handler):
    def __init__(self, context: dg.AssetExecutionContext):
        super().__init__()
        self.context = context

    def emit(self, record: logging.LogRecord) -> None:
        self.context.log.log(record.levelno, record.getMessage())


class _PartitionFilter(logging.Filter):
    def __init__(self, partition: str):
        super().__init__()
        self.partition = partition

    def filter(self, record: logging.LogRecord) -> bool:
        record.partition = self.partition
        return True


@contextmanager
def forward_core_logs(context: dg.AssetExecutionContext, log_file: Path) -> Iterator[None]:
    """While the block runs, INFO and above from `ecg_assets.*` go to the run log and `log_file`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    package_logger = logging.getLogger(PACKAGE_LOGGER)
    file_handler = logging.FileHandler(log_file, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(_FILE_FORMAT))
    file_handler.addFilter(_PartitionFilter(context.partition_key if context.has_partition_key else "-"))
    handlers = [_DagsterLogHandler(context), file_handler]
    previous_level = package_logger.level
    package_logger.setLevel(logging.INFO)
    for handler in handlers:
        package_logger.addHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            package_logger.removeHandler(handler)
        file_handler.close()
        package_logger.setLevel(previous_level)
