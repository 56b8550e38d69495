"""What each partition holds, read from the artifacts on disk (`ecg-assets summary [-p DATASET]`).

Per partition: records discovered / processed / failed / excluded, split sizes, the model
(parameters, epochs, best validation macro F1), the test macro F1 with its interval, and where
every artifact lives. Pure reading (no Dagster, nothing written): the notebook uses it too.
A partition with nothing materialized says so and names the command that fills it.
`summarize_across_datasets` does the same for the pooled model and the generalisation matrix
(what `ecg-assets materialize` prints after its `pooled_and_matrix` run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ecg_assets.core.artifacts import (
    GeneralisationArtifacts,
    PartitionArtifacts,
    PooledArtifacts,
    is_valid_dataset_name,
    pipeline_log,
)
from ecg_assets.core.atomic_io import read_json
from ecg_assets.core.checkpoints import CheckpointError, load_checkpoint
from ecg_assets.core.generalisation import AS_RECORDED
from ecg_assets.core.settings import Settings
from ecg_assets.core.model import build_model, count_parameters
from ecg_assets.core.preprocessing import FAILURES_FILE
from ecg_assets.core.splits import SPLIT_NAMES
from ecg_assets.core.store import MANIFEST
from ecg_assets.core.training import BEST_CHECKPOINT


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


def summarize_across_datasets(artifacts_root: Path) -> str:
    """What the across-dataset assets hold on disk: the pooled model (datasets, training, test macro F1 per
    dataset as recorded) and the generalisation matrix (cells scored, gaps, leaks), with their paths."""
    pooled, matrix = PooledArtifacts(Path(artifacts_root)), GeneralisationArtifacts(Path(artifacts_root))
    lines = ["across datasets"]
    readers = (("pooled model", _pooled_lines, pooled), ("matrix", _matrix_lines, matrix))
    for name, reader, artifacts in readers:
        try:
            lines.extend(reader(artifacts))
        except (OSError, ValueError, KeyError, TypeError, CheckpointError) as error:
            lines.append(f"  note        {name} unreadable: {error}")
    paths = [
        ("pooled model", pooled.models / BEST_CHECKPOINT),
        ("pooled plan", pooled.plan),
        ("matrix", matrix.matrix_csv),
        ("heatmap", matrix.heatmap),
    ]
    lines.append("  artifacts")
    lines.extend(f"    {name:<15} {path}{'' if path.exists() else '  (missing)'}" for name, path in paths)
    return "\n".join(lines)


def _pooled_lines(artifacts: PooledArtifacts) -> list[str]:
    if not artifacts.training_log.is_file():
        return ["  pooled      not trained"]
    datasets = read_json(artifacts.plan)["datasets"] if artifacts.plan.is_file() else []
    lines = [f"  pooled      trained on {', '.join(datasets) or 'unknown datasets'}"]
    lines += _model_lines(_model_summary(artifacts.training_log, artifacts.models / BEST_CHECKPOINT), label="")
    if artifacts.lead_sets.is_file():
        rows = [row for row in read_json(artifacts.lead_sets) if row.get("lead_set") == AS_RECORDED]
        scores = ", ".join(f"{row['dataset']} {_score(row.get('macro_f1'))} ({row['records']} records)" for row in rows)
        lines.append(f"              test macro F1 {scores or 'not measured'}")
    return lines


def _matrix_lines(artifacts: GeneralisationArtifacts) -> list[str]:
    if not artifacts.matrix_json.is_file():
        return ["  matrix      not built"]
    cells = read_json(artifacts.matrix_json)["cells"]
    scored = [cell for cell in cells if cell.get("status") == "scored"]
    leaked = sum(1 for cell in scored if cell.get("leaked_records"))
    return [
        f"  matrix      {len(scored)} of {len(cells)} cells scored, {len(cells) - len(scored)} gaps, "
        f"{leaked} with leaked test records"
    ]


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
    if artifacts.training_log.is_file():
        summary.model = _model_summary(artifacts.training_log, artifacts.models / BEST_CHECKPOINT)


def _model_summary(training_log: Path, checkpoint: Path) -> dict[str, Any]:
    """Parameters, epochs and validation F1 of a training run, from its `training_log.json`."""
    log = read_json(training_log)
    members = log.get("members") or []  # a cross-validated ensemble: one entry per member
    model = {
        "parameters": log.get("parameters") or _checkpoint_parameters(checkpoint),
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
    return model


def _model_lines(model: dict[str, Any], label: str = "model") -> list[str]:
    parameters = f"{model['parameters']:,} parameters" if model.get("parameters") else "parameters unknown"
    if not model["members"]:
        return [
            f"  {label:<12}{parameters}, {model['epochs_run']}/{model['epochs']} epochs, "
            f"best validation macro F1 {_score(model['best_val_macro_f1'])} (epoch {model['best_epoch']})"
        ]
    lines = [
        f"  {label:<12}ensemble of {model['members']} members, {parameters} each, up to {model['epochs']} epochs, "
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
    """Trainable parameters of a checkpoint's model (of one member, for an ensemble), counted on the
    network its stored architecture builds (so buffers never count)."""
    if not path.is_file():
        return None
    checkpoint = load_checkpoint(path)
    model_config = checkpoint["members"][0]["model_config"] if checkpoint.get("members") else checkpoint["model_config"]
    return count_parameters(build_model(model_config))


def _interval(interval: dict[str, float] | None) -> str:
    if not interval:
        return "no interval"
    return f"{interval['level']:.0%} interval {interval['low']:.4f}-{interval['high']:.4f}"


def _count(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _score(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(float(value)) else f"{float(value):.4f}"
