"""What each partition holds, read from the artifacts on disk (`ecg-assets summary [-p DATASET]`).

Per partition: records discovered / processed / failed / excluded, split sizes, the model
(parameters, epochs, best validation macro F1), the test macro F1 with its interval, and where
every artifact lives. Pure reading (no Dagster, nothing written): the notebook uses it too.
A partition with nothing materialized says so and names the command that fills it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ecg_assets.core.artifacts import PartitionArtifacts, is_valid_dataset_name, pipeline_log
from ecg_assets.core.atomic_io import read_json
from ecg_assets.core.checkpoints import CheckpointError, load_checkpoint
from ecg_assets.core.settings import Settings
from ecg_assets.core.preprocessing import FAILURES_FILE
from ecg_assets.core.splits import SPLIT_NAMES
from ecg_assets.core.store import MANIFEST
from ecg_assets.core.training import BEST_CHECKPOINT

# Buffers of a state dict that are not trainable parameters (BatchNorm statistics).
_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


@dataclass
class PartitionSummary:
    """What is on disk for one dataset partition (None: that artifact does not exist yet)."""

    dataset: str
    artifacts: PartitionArtifacts
    discovered: int | None = None
    excluded: int | None = None
    processed: int | None = None
    failed: int | None = None
    splits: dict[str, int] | None = None
    model: dict[str, Any] | None = None
    test: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def materialized(self) -> bool:
        return any(value is not None for value in (self.discovered, self.processed, self.model, self.test))

    def lines(self) -> list[str]:
        """The summary as indented text lines (what `ecg-assets summary` prints)."""
        lines = [f"{self.dataset}"]
        if not self.materialized:
            lines.append(f"  nothing materialized yet: ecg-assets materialize -p {self.dataset}")
            return lines
        lines.append(
            f"  records     {_count(self.discovered)} discovered, {_count(self.processed)} processed, "
            f"{_count(self.failed)} failed, {_count(self.excluded)} excluded"
        )
        if self.splits is not None:
            sizes = ", ".join(f"{self.splits[name]} {name}" for name in SPLIT_NAMES)
            lines.append(f"  splits      {sizes}")
        else:
            lines.append("  splits      not materialized")
        if self.model is not None:
            lines.extend(_model_lines(self.model))
        else:
            lines.append("  model       not trained")
        if self.test is not None:
            spread = _interval(self.test.get("interval"))
            score, records = _score(self.test["macro_f1"]), self.test["records"]
            lines.append(f"  test        macro F1 {score} ({spread}) on {records} records")
        else:
            lines.append("  test        not evaluated")
        lines.extend(f"  note        {note}" for note in self.notes)
        lines.append("  artifacts")
        lines.extend(f"    {name:<15} {path}{'' if path.exists() else '  (missing)'}" for name, path in self.paths())
        return lines

    def paths(self) -> list[tuple[str, Path]]:
        """Every artifact of the partition, named."""
        artifacts = self.artifacts
        return [
            ("label mapping", artifacts.label_mapping),
            ("store", artifacts.processed / MANIFEST),
            ("failures", artifacts.processed / FAILURES_FILE),
            ("splits", artifacts.splits),
            ("best model", artifacts.models / BEST_CHECKPOINT),
            ("training log", artifacts.training_log),
            ("test metrics", artifacts.test_metrics),
            ("figures", artifacts.figures),
        ]


def summarize_partition(artifacts_root: Path, dataset: str) -> PartitionSummary:
    """Read one partition's artifacts under `artifacts_root` (missing ones stay None, unreadable ones are noted)."""
    artifacts = PartitionArtifacts(Path(artifacts_root), dataset)
    summary = PartitionSummary(dataset=dataset, artifacts=artifacts)
    readers = (_read_label_mapping, _read_store, _read_splits, _read_model, _read_test_metrics)
    for reader in readers:
        try:
            reader(artifacts, summary)
        except (OSError, ValueError, KeyError, TypeError, CheckpointError) as error:
            summary.notes.append(f"{reader.__name__.removeprefix('_read_').replace('_', ' ')} unreadable: {error}")
    return summary


def summary_datasets(settings: Settings) -> list[str]:
    """The configured partitions, then any other dataset folder under the artifacts root that holds artifacts."""
    names = list(settings.dataset_names())
    root = settings.artifacts_dir
    if root.is_dir():
        for folder in sorted(root.iterdir()):
            if folder.name not in names and folder.is_dir() and is_valid_dataset_name(folder.name):
                if (folder / "label_mapping.csv").is_file() or (folder / "processed").is_dir():
                    names.append(folder.name)
    return names


def format_summary(summaries: Sequence[PartitionSummary], artifacts_root: Path | None = None) -> str:
    """All partitions' summaries as one text block."""
    blocks = ["\n".join(summary.lines()) for summary in summaries]
    if artifacts_root is not None:
        blocks.append(f"pipeline log: {pipeline_log(Path(artifacts_root))}")
    return "\n\n".join(blocks)


def summarize(settings: Settings, datasets: Sequence[str] | None = None) -> str:
    """The summary of `datasets` (default: every known partition) under the settings' artifacts root."""
    names = list(datasets) if datasets else summary_datasets(settings)
    summaries = [summarize_partition(settings.artifacts_dir, name) for name in names]
    return format_summary(summaries, settings.artifacts_dir)


def _read_label_mapping(artifacts: PartitionArtifacts, summary: PartitionSummary) -> None:
    if artifacts.label_mapping.is_file():
        table = pd.read_csv(artifacts.label_mapping, dtype=str, keep_default_na=False)
        summary.discovered = len(table)
        summary.excluded = int((table["mapped_label"] == "").sum())


def _read_store(artifacts: PartitionArtifacts, summary: PartitionSummary) -> None:
    manifest = artifacts.processed / MANIFEST
    if manifest.is_file():
        summary.processed = int(read_json(manifest)["count"])
        failures = artifacts.processed / FAILURES_FILE
        if failures.is_file():
            summary.failed = len(pd.read_csv(failures, dtype=str, keep_default_na=False))


def _read_splits(artifacts: PartitionArtifacts, summary: PartitionSummary) -> None:
    if artifacts.splits.is_file():
        payload = read_json(artifacts.splits)
        summary.splits = {name: len(payload[name]) for name in SPLIT_NAMES}


def _read_model(artifacts: PartitionArtifacts, summary: PartitionSummary) -> None:
    if not artifacts.training_log.is_file():
        return
    log = read_json(artifacts.training_log)
    members = log.get("members") or []  # a cross-validated ensemble: one entry per member
    model = {
        "parameters": log.get("parameters") or _checkpoint_parameters(artifacts.models / BEST_CHECKPOINT),
        "epochs_run": len(log["epochs"]),
        "epochs": log["config"]["epochs"],
        "members": len(members),
    }
    if members:
        model["best_val_macro_f1"] = sum(member["best_val_macro_f1"] for member in members) / len(members)
        estimate = log.get("cross_validation") or {}
        model["cv_macro_f1"] = estimate.get("macro_f1")
        model["cv_interval"] = metric_interval(estimate, "macro_f1")
    else:
        model["best_val_macro_f1"], model["best_epoch"] = log["best_val_macro_f1"], log["best_epoch"]
    summary.model = model


def _model_lines(model: dict[str, Any]) -> list[str]:
    parameters = f"{model['parameters']:,} parameters" if model.get("parameters") else "parameters unknown"
    if not model["members"]:
        return [
            f"  model       {parameters}, {model['epochs_run']}/{model['epochs']} epochs, "
            f"best validation macro F1 {_score(model['best_val_macro_f1'])} (epoch {model['best_epoch']})"
        ]
    lines = [
        f"  model       ensemble of {model['members']} members, {parameters} each, up to {model['epochs']} epochs, "
        f"mean best validation macro F1 {_score(model['best_val_macro_f1'])}"
    ]
    if model.get("cv_macro_f1") is not None:
        lines.append(
            f"              cross-validated macro F1 {_score(model['cv_macro_f1'])} ({_interval(model['cv_interval'])})"
        )
    return lines


def _read_test_metrics(artifacts: PartitionArtifacts, summary: PartitionSummary) -> None:
    if artifacts.test_metrics.is_file():
        metrics = read_json(artifacts.test_metrics)
        summary.test = {
            "macro_f1": metrics["macro_f1"],
            "records": metrics["n_samples"],
            "interval": metric_interval(metrics, "macro_f1"),
        }


def metric_interval(metrics: dict[str, Any], name: str) -> dict[str, float] | None:
    """`{low, high, level}` of metric `name`'s interval in a metrics file, or None when it has none.

    Reads `intervals: {name: [low, high], confidence}` (what `test_metrics.json` holds), and also
    `<name>_ci` as `[low, high]` or `{"low"/"lower", "high"/"upper", "level"?}` and `<name>_ci_low`/`_high`;
    the level defaults to 95 %.
    """
    intervals = metrics.get("intervals") if isinstance(metrics.get("intervals"), dict) else {}
    value = intervals.get(name, metrics.get(f"{name}_ci"))
    level = intervals.get("confidence", metrics.get(f"{name}_ci_level", 0.95))
    if isinstance(value, dict):
        level = value.get("level", value.get("confidence", level))
        low, high = value.get("low", value.get("lower")), value.get("high", value.get("upper"))
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        low, high = value
    else:
        low, high = metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high")
    try:
        low, high, level = float(low), float(high), float(level)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(number) for number in (low, high, level)):
        return None
    return {"low": low, "high": high, "level": level / 100 if level > 1 else level}


def _checkpoint_parameters(path: Path) -> int | None:
    """Trainable parameters of a checkpoint's model (of one member, for an ensemble): its state dict without
    BatchNorm statistics."""
    if not path.is_file():
        return None
    checkpoint = load_checkpoint(path)
    state = checkpoint["members"][0]["model_state"] if checkpoint.get("members") else checkpoint["model_state"]
    return sum(int(tensor.numel()) for key, tensor in state.items() if not key.endswith(_BUFFER_SUFFIXES))


def _interval(interval: dict[str, float] | None) -> str:
    if not interval:
        return "no interval"
    return f"{interval['level']:.0%} interval {interval['low']:.4f}-{interval['high']:.4f}"


def _count(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _score(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(float(value)) else f"{float(value):.4f}"
