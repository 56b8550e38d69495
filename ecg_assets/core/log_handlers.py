"""Where `ecg_assets.*` log records go while a step runs, without Dagster: shared by the run log
forwarding (`run_logging`) and the torchrun training workers (`train_worker`)."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

PACKAGE_LOGGER = "ecg_assets"
_FILE_FORMAT = "%(asctime)s %(levelname)s [%(partition)s] %(name)s: %(message)s"


class _PartitionFilter(logging.Filter):
    def __init__(self, partition: str):
        super().__init__()
        self.partition = partition

    def filter(self, record: logging.LogRecord) -> bool:
        record.partition = self.partition
        return True


def pipeline_file_handler(log_file: Path, partition: str) -> logging.FileHandler:
    """Appends lines tagged with `partition` to `log_file` (`logs/pipeline.log`)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter(_FILE_FORMAT))
    handler.addFilter(_PartitionFilter(partition))
    return handler


@contextmanager
def package_logs_to(handlers: Sequence[logging.Handler], level: int = logging.INFO) -> Iterator[None]:
    """While the block runs, `ecg_assets.*` records at `level` and above go to `handlers` (closed after)."""
    package_logger = logging.getLogger(PACKAGE_LOGGER)
    previous_level = package_logger.level
    package_logger.setLevel(level)
    for handler in handlers:
        package_logger.addHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            package_logger.removeHandler(handler)
            handler.close()
        package_logger.setLevel(previous_level)
