"""Optional experiment tracking: training and evaluation runs logged to MLflow.

Off by default, and then nothing imports mlflow. On (`pip install -e '.[tracking]'`, then
`ECG_TRACKING=mlflow` or the resource's `enabled: true`), each `trained_model` and `pooled_model`
materialization becomes one MLflow run: the full training config as params, every epoch's metrics
at its step, the best checkpoint and the figures as artifacts, and tags linking the Dagster run id,
asset, partition, code version and checkpoint SHA-256. `test_metrics` logs its metrics and figures
into the run of the checkpoint it scored (found by that SHA-256), so a training run and its test
score sit side by side; without one (tracking turned on after training) it opens a run of its own.
`pooled_model` scores its own test sets, so its run also holds the pooled datasets and mixing
settings (`pooled.*` params), its test macro F1 per dataset and lead set, and its plan.

The tracking URI is `tracking_uri`, else `ECG_MLFLOW_TRACKING_URI` / `MLFLOW_TRACKING_URI`, else a
local SQLite store with its artifacts under `<artifacts>/mlruns/` (`mlflow ui --backend-store-uri
sqlite:///<artifacts>/mlruns/mlflow.db` shows it). A team points it at a tracking server.

Why not `dagster-mlflow` (0.29.27, the release pinned to dagster 1.13.27): its beta, function-style
`mlflow_tracking` resource opens ONE MLflow run per Dagster run (named after the job, found again by a
`dagster_run_id` tag) through mlflow's process-global fluent API, and needs the
`end_mlflow_on_run_finished` hook on every job to end it. Here a run is one training, keyed by its
checkpoint: tagged with asset, partition and code version, reused when a later Dagster run ends with
the same checkpoint, and joined by the `test_metrics` of a later Dagster run that scores it; one run
per Dagster run cannot do that (and would mix five assets in an `ecg_pipeline` run). Its module also
imports mlflow on import, while tracking off must import nothing. So this resource calls
`MlflowClient` directly.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import dagster as dg
from pydantic import Field

from ecg_assets.core.artifacts import PartitionArtifacts, PooledArtifacts
from ecg_assets.core.atomic_io import read_json
from ecg_assets.core.checkpoints import file_sha256
from ecg_assets.core.training import BEST_CHECKPOINT

logger = logging.getLogger(__name__)

TRACKING_ENV = "ECG_TRACKING"  # "mlflow" turns tracking on
TRACKING_URI_ENVS = ("ECG_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI")
LOCAL_STORE = "mlruns"
SHA_TAG = "checkpoint_sha256"
PARAM_VALUE_LIMIT = 6000  # MLflow's limit on a param value
BATCH_LIMIT = 100  # params per log_batch call (metrics allow more; one size keeps it simple)


class ExperimentTrackingResource(dg.ConfigurableResource):
    """MLflow tracking for training and evaluation assets; does nothing (and imports nothing) when disabled."""

    enabled: bool = Field(False, description="Log training and evaluation runs to MLflow (needs the [tracking] extra).")
    tracking_uri: Optional[str] = Field(
        None,
        description="MLflow tracking URI (a server such as http://127.0.0.1:5000, or sqlite:///...); default: "
        "ECG_MLFLOW_TRACKING_URI or MLFLOW_TRACKING_URI, else a SQLite store under <artifacts>/mlruns/.",
    )
    experiment_name: str = Field("ecg_assets", description="MLflow experiment the runs go to.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "ExperimentTrackingResource":
        """`ECG_TRACKING=mlflow` turns it on; the URI comes from the environment when set."""
        enabled = environ.get(TRACKING_ENV, "").strip().lower() in ("mlflow", "1", "true", "on", "yes")
        uri = next((environ[name] for name in TRACKING_URI_ENVS if environ.get(name)), None)
        return cls(enabled=enabled, tracking_uri=uri)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.enabled and importlib.util.find_spec("mlflow") is None:
            raise dg.Failure(
                "experiment tracking is enabled but mlflow is not installed: pip install -e '.[tracking]' "
                f"(or turn it off: unset {TRACKING_ENV}, or enabled: false on the tracking resource)"
            )

    def resolved_uri(self, artifacts_root: Path) -> str:
        """Where runs go: the configured URI, else a local SQLite store under `<artifacts_root>/mlruns/`."""
        return self.tracking_uri or f"sqlite:///{(Path(artifacts_root) / LOCAL_STORE / 'mlflow.db').resolve()}"

    def log_training(self, context: dg.AssetExecutionContext, artifacts: PartitionArtifacts) -> dict[str, Any]:
        """Log a partition's training run (its `training_log.json`, `best.pth`, training history figure).

        Returns materialization metadata naming the MLflow run (empty when tracking is off)."""
        if not self.enabled:
            return {}
        return self.log_training_run(
            context,
            artifacts.artifacts_root,
            training_log=artifacts.training_log,
            checkpoint=artifacts.models / BEST_CHECKPOINT,
            files=[artifacts.training_log, artifacts.figures / "training_history.png"],
        )

    def log_pooled_training(self, context: dg.AssetExecutionContext, artifacts: PooledArtifacts) -> dict[str, Any]:
        """Log the pooled model's training run like a partition's, plus what only it has: the pooled datasets
        and mixing settings as `pooled.*` params, its test macro F1 per dataset and lead set (with interval and
        record count) as `test_*` metrics, and its plan and lead-set scores as artifacts."""
        if not self.enabled:
            return {}
        plan = read_json(artifacts.plan)
        params = {"pooled.datasets": ",".join(plan["datasets"])}
        params.update({f"pooled.{key}": value for key, value in (plan.get("settings") or {}).items()})
        scores = read_json(artifacts.lead_sets) if artifacts.lead_sets.is_file() else []
        files = [artifacts.training_log, artifacts.figures / "training_history.png", artifacts.plan]
        return self.log_training_run(
            context,
            artifacts.artifacts_root,
            training_log=artifacts.training_log,
            checkpoint=artifacts.models / BEST_CHECKPOINT,
            files=[*files, artifacts.lead_sets, artifacts.excluded],
            params=params,
            metrics=_lead_set_metrics(scores),
        )

    def log_evaluation(self, context: dg.AssetExecutionContext, artifacts: PartitionArtifacts) -> dict[str, Any]:
        """Log a partition's test metrics and figures into the run of the checkpoint they scored."""
        if not self.enabled:
            return {}
        metrics = read_json(artifacts.test_metrics)
        figures = [artifacts.figures / name for name in ("test_f1_scores.png", "test_confusion_matrix.png")]
        return self.log_evaluation_run(
            context, artifacts.artifacts_root, metrics=metrics, files=[artifacts.test_metrics, *figures]
        )

    def log_training_run(
        self,
        context: dg.AssetExecutionContext,
        artifacts_root: Path,
        training_log: Path,
        checkpoint: Path,
        files: Sequence[Path] = (),
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One MLflow run for a training asset: config params (and `params`), per-epoch metrics, the final
        metrics (best epoch, `metrics`), the checkpoint and `files`.

        A finished run for the same checkpoint (same SHA-256) is reused, not logged twice.
        """
        if not self.enabled:
            return {}
        client, experiment_id, uri = self._client(artifacts_root)
        sha = file_sha256(checkpoint)
        existing = _find_run(client, experiment_id, sha, context, finished_only=True)
        if existing is not None:
            context.log.info(f"MLflow run {existing} already holds checkpoint {sha[:12]}: not logged again ({uri})")
            return _metadata(existing, uri)
        log = read_json(training_log)
        run = client.create_run(experiment_id, run_name=_run_name(context), tags=_tags(context, sha))
        run_id = run.info.run_id
        config = {**_flatten(log.get("config", {})), "device": log.get("device"), "amp_dtype": log.get("amp_dtype")}
        _log_params(client, run_id, {**config, **(params or {})})
        _log_metrics(client, run_id, _epoch_metrics(log.get("epochs", [])))
        summary = {"best_val_macro_f1": log.get("best_val_macro_f1"), "best_epoch": log.get("best_epoch")}
        estimate = log.get("cross_validation") or {}  # an ensemble's out-of-fold estimate
        summary.update({f"cv_{key}": value for key, value in estimate.items() if key in ("macro_f1", "n_samples")})
        summary.update({f"cv_{key}": value for key, value in _interval_metrics(estimate).items()})
        summary.update(metrics or {})
        _log_metrics(client, run_id, [(key, value, 0) for key, value in summary.items()])
        client.log_artifact(run_id, str(checkpoint), "checkpoint")
        for path in files:
            if Path(path).is_file():
                client.log_artifact(run_id, str(path), "training")
        client.set_terminated(run_id, "FINISHED")
        context.log.info(f"logged training run {run_id} to MLflow at {uri} (experiment {self.experiment_name!r})")
        return _metadata(run_id, uri)

    def log_evaluation_run(
        self, context: dg.AssetExecutionContext, artifacts_root: Path, metrics: dict, files: Sequence[Path] = ()
    ) -> dict[str, Any]:
        """Test metrics (`test_*`) and `files` into the run of `metrics["checkpoint_sha256"]`, or a new run."""
        if not self.enabled:
            return {}
        client, experiment_id, uri = self._client(artifacts_root)
        sha = str(metrics.get("checkpoint_sha256", ""))
        run_id = _find_run(client, experiment_id, sha, context, finished_only=False) if sha else None
        if run_id is None:
            run_id = client.create_run(experiment_id, run_name=_run_name(context), tags=_tags(context, sha)).info.run_id
        client.set_tag(run_id, "dagster_evaluation_run_id", context.run.run_id)
        client.set_tag(run_id, "dagster_evaluation_code_version", _code_version(context))
        _log_metrics(client, run_id, [(f"test_{key}", value, 0) for key, value in _test_metrics(metrics).items()])
        for path in files:
            if Path(path).is_file():
                client.log_artifact(run_id, str(path), "evaluation")
        context.log.info(f"logged test metrics to MLflow run {run_id} at {uri}")
        return _metadata(run_id, uri)

    def _client(self, artifacts_root: Path):
        """The MLflow client, the experiment id (created when missing) and the URI; mlflow is imported here only."""
        from mlflow.tracking import MlflowClient

        uri = self.resolved_uri(artifacts_root)
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return client, experiment.experiment_id, uri
        location = None
        if self.tracking_uri is None:  # the local store keeps its artifacts beside it, not in the working directory
            artifacts = (Path(artifacts_root) / LOCAL_STORE / "artifacts").resolve()
            artifacts.mkdir(parents=True, exist_ok=True)
            location = artifacts.as_uri()
        return client, client.create_experiment(self.experiment_name, artifact_location=location), uri


def _run_name(context: dg.AssetExecutionContext) -> str:
    asset = context.asset_key.to_user_string()
    return f"{asset}/{context.partition_key}" if context.has_partition_key else asset


def _code_version(context: dg.AssetExecutionContext) -> str:
    return str(context.assets_def.code_versions_by_key.get(context.asset_key) or "")


def _tags(context: dg.AssetExecutionContext, sha: str) -> dict[str, str]:
    return {
        "dagster_run_id": context.run.run_id,
        "dagster_job": context.job_name,
        "dagster_asset": context.asset_key.to_user_string(),
        "dagster_partition": context.partition_key if context.has_partition_key else "",
        "dagster_code_version": _code_version(context),
        SHA_TAG: sha,
    }


def _find_run(client, experiment_id: str, sha: str, context: dg.AssetExecutionContext, finished_only: bool):
    """The newest run holding checkpoint `sha` (of this partition), or None."""
    query = f"tags.{SHA_TAG} = '{sha}'"
    if context.has_partition_key:
        query += f" and tags.dagster_partition = '{context.partition_key}'"
    if finished_only:
        query += " and attributes.status = 'FINISHED'"
    runs = client.search_runs([experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


def _metadata(run_id: str, uri: str) -> dict[str, Any]:
    return {"mlflow_run_id": run_id, "mlflow_tracking_uri": uri}


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _epoch_metrics(epochs: Sequence[Mapping[str, Any]]) -> list[tuple[str, float, int]]:
    """Every numeric field of every epoch record, at the epoch's step (`seconds` becomes `epoch_seconds`)."""
    rows = []
    for record in epochs:
        step = int(record["epoch"])
        for key, value in record.items():
            if key != "epoch":
                rows.append(("epoch_seconds" if key == "seconds" else key, value, step))
    return rows


def _test_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar test metrics, per-class F1 and the intervals of the averages."""
    scalars = ("macro_f1", "micro_f1", "weighted_f1", "accuracy", "test_loss", "majority_class_macro_f1")
    values = {("loss" if key == "test_loss" else key): metrics.get(key) for key in scalars}
    values["records"] = metrics.get("n_samples")
    for label, scores in (metrics.get("per_class") or {}).items():
        values[f"f1_{label}"] = scores.get("f1") if isinstance(scores, Mapping) else None
    return {**values, **_interval_metrics(metrics)}


def _lead_set_metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """`test_macro_f1.<dataset>.<lead set>` (with `_ci_low`, `_ci_high` and `test_records.`) per lead-set score
    row of the pooled model; lead sets as slugs (`as_recorded`, `lead_i_only`)."""
    values = {}
    for row in rows:
        name = f"{row['dataset']}.{re.sub(r'[^0-9a-z]+', '_', str(row['lead_set']).lower()).strip('_')}"
        values[f"test_macro_f1.{name}"] = row.get("macro_f1")
        values[f"test_macro_f1_ci_low.{name}"] = row.get("ci_low")
        values[f"test_macro_f1_ci_high.{name}"] = row.get("ci_high")
        values[f"test_records.{name}"] = row.get("records")
    return values


def _interval_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """`<name>_ci_low` / `_ci_high` of every `[low, high]` in a metrics dict's `intervals` (bootstrap 95 %)."""
    values = {}
    for key, interval in (metrics.get("intervals") or {}).items():
        if isinstance(interval, (list, tuple)) and len(interval) == 2:
            values[f"{key}_ci_low"], values[f"{key}_ci_high"] = interval
    return values


def _log_params(client, run_id: str, params: Mapping[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(key, str(value)[:PARAM_VALUE_LIMIT]) for key, value in params.items()]
    for start in range(0, len(items), BATCH_LIMIT):
        client.log_batch(run_id, params=items[start : start + BATCH_LIMIT])


def _log_metrics(client, run_id: str, rows: Sequence[tuple[str, Any, int]]) -> None:
    """Log `(key, value, step)` rows, skipping values that are not finite numbers."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [
        Metric(key, float(value), now, int(step))
        for key, value, step in rows
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ]
    for start in range(0, len(metrics), BATCH_LIMIT):
        client.log_batch(run_id, metrics=metrics[start : start + BATCH_LIMIT])
