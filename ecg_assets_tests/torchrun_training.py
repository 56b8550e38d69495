"""One rank of `train_model` under torchrun, without Dagster (run by `test_distributed.py`).

`python -m torch.distributed.run --standalone --nproc_per_node=N -m ecg_assets_tests.torchrun_training
STORE SPLITS_JSON CONFIG_JSON OUT_DIR [--crash-after-epoch K]` trains into `OUT_DIR/models` and
`OUT_DIR/training_log.json`; every rank saves its parameters and result to `OUT_DIR/rank<r>.pth`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ecg_assets.core import training
from ecg_assets.core.ddp import torchrun_process_group
from ecg_assets.core.store import RecordStore
from ecg_assets.core.training import DeviceSettings, TrainingConfig, train_model


def _crash_on_rank_zero_after(epoch: int) -> None:
    """Kill the run (rank 0 raises) once epoch `epoch` is written, as a SIGKILL between epochs would."""
    write_log = training._write_training_log

    def write_then_crash(path, config, settings, history, *args):
        write_log(path, config, settings, history, *args)
        if len(history) == epoch:
            raise SystemExit(f"killed after epoch {epoch}")

    training._write_training_log = write_then_crash


def _record_trainers() -> list:
    """Keep every `_Trainer` this process builds, to save its own final weights."""
    trainers = []

    class RecordedTrainer(training._Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            trainers.append(self)

    training._Trainer = RecordedTrainer
    return trainers


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store", type=Path)
    parser.add_argument("splits", type=Path)
    parser.add_argument("config")
    parser.add_argument("out", type=Path)
    parser.add_argument("--crash-after-epoch", type=int)
    args = parser.parse_args(argv)
    if args.crash_after_epoch:
        _crash_on_rank_zero_after(args.crash_after_epoch)
    trainers = _record_trainers()
    settings = DeviceSettings(device=torch.device("cpu"))
    splits = json.loads(args.splits.read_text())
    config = TrainingConfig.model_validate_json(args.config)
    with torchrun_process_group("cpu") as ranks:
        result = train_model(
            RecordStore(args.store),
            splits,
            config,
            settings,
            args.out / "models",
            args.out / "training_log.json",
            ranks,
        )
        torch.save(
            {"summary": result.summary(settings), "model_state": trainers[-1].model.state_dict()},
            args.out / f"rank{ranks.rank}.pth",
        )


if __name__ == "__main__":
    main()
