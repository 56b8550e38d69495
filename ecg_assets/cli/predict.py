"""`python -m ecg_assets.predict --model best.pth --input DIR --output CSV`: score recordings a model has never seen.

Thin: parses arguments and calls `ecg_assets.core.inference.predict_folder`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ecg_assets.core.checkpoints import CheckpointError
from ecg_assets.cli.progress import ProgressLogHandler, StageProgress
from ecg_assets.core.datasets import DATASET_ERRORS
from ecg_assets.core.inference import predict_folder

logger = logging.getLogger("ecg_assets.predict")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ecg_assets.predict", description=__doc__.split("\n")[0].split(": ", 1)[1]
    )
    parser.add_argument("--model", required=True, type=Path, help="a best.pth / latest.pth of this pipeline")
    parser.add_argument("--input", required=True, type=Path, help="a dataset folder in any supported format")
    parser.add_argument("--output", required=True, type=Path, help="the predictions CSV to write")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"), help="cpu (default), cuda or auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--sha256", help="refuse the checkpoint unless its SHA-256 is this (trained_model's checkpoint_sha256)"
    )
    args = parser.parse_args(argv)
    progress = StageProgress("records")  # a bar on a terminal, a line per tenth otherwise (stderr)
    handler = ProgressLogHandler(progress)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    try:
        report = predict_folder(
            args.model, args.input, args.output, args.device, args.batch_size, args.sha256, progress=progress
        )
    except (CheckpointError, *DATASET_ERRORS) as error:
        logger.error("%s", " ".join(str(error).split()))  # one line, whatever the message holds
        return 2
    finally:
        progress.close()
    return 0 if report.scored or not report.failures else 1


if __name__ == "__main__":
    sys.exit(main())
