"""The five dataset-partitioned assets. Each one loads its inputs, calls the core, and
describes the result in metadata; all logic lives in `ecg_assets.core`."""

import logging
from typing import Iterable, Optional

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from ecg_assets.core import evaluation, versioning
from ecg_assets.core.checkpoints import CheckpointError
from ecg_assets.core.datasets import detect_format
from ecg_assets.core.demo import MARKER_FILE
from ecg_assets.core.ensemble import fit_model, training_histories
from ecg_assets.core.label_mapping import build_label_mapping, read_label_mapping, write_label_mapping
from ecg_assets.core.metrics import format_interval
from ecg_assets.core.preprocessing import (
    FAILURES_FILE,
    RecordProcessingConfig,
    empty_store_explanation,
    nothing_processed_reason,
    process_records,
)
from ecg_assets.core.splits import SPLIT_NAMES, SplitConfig, assign_splits, read_splits, strat_folds_for, write_splits
from ecg_assets.core.store import RecordStore
from ecg_assets.core.training import BEST_CHECKPOINT, TrainingConfig, read_training_log
from ecg_assets.defs.metadata import (
    counts_table,
    example_waveforms,
    human_size,
    markdown_table,
    png_markdown,
    reasons_table,
    recording_distributions,
    training_history,
)
from ecg_assets.defs.partitions import dataset_partitions
from ecg_assets.defs.resources import EcgPathsResource, TorchDeviceResource
from ecg_assets.defs.steps import partition_step
from ecg_assets.defs.torchrun import torchrun_job, train_with_torchrun
from ecg_assets.defs.tracking import ExperimentTrackingResource

logger = logging.getLogger(__name__)

GROUP = "ecg_pipeline"
SMOKE_TEST_RECORDS = 10
MEMBER_COLUMNS = ("member", "train_records", "val_records", "best_epoch", "best_val_macro_f1")
# What a Kubernetes run launcher / k8s_job_executor turns into a GPU request for the training step.
GPU_OP_TAGS = {
    "dagster-k8s/config": {
        "container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "1"}}}
    }
}


def is_synthetic(paths: EcgPathsResource, dataset: str) -> bool:
    """Whether the partition reads the generated demo (or a copy of it, which keeps its marker file)."""
    settings = paths.settings()
    return settings.is_demo_dataset(dataset) or (settings.dataset_dir(dataset) / MARKER_FILE).is_file()


def _dataset_note(paths: EcgPathsResource, dataset: str) -> str:
    """Where the partition's recordings come from; SYNTHETIC for the generated demo, so every number says so."""
    folder = paths.settings().dataset_dir(dataset)
    if is_synthetic(paths, dataset):
        return f"SYNTHETIC demo data (generated, not patient recordings) at {folder}"
    return str(folder)


def datasets_note(paths: EcgPathsResource, datasets: Iterable[str]) -> str:
    """For an asset built from several partitions: SYNTHETIC first when any of them is the generated demo."""
    datasets = sorted(set(datasets))
    synthetic = [dataset for dataset in datasets if is_synthetic(paths, dataset)]
    real = [dataset for dataset in datasets if dataset not in synthetic]
    if not synthetic:
        return f"recordings of {', '.join(real)}" if real else "no dataset"
    note = f"SYNTHETIC demo data (generated, not patient recordings): {', '.join(synthetic)}"
    return note + (f"; recordings of {', '.join(real)}" if real else "")


class ProcessedRecordsConfig(dg.Config, RecordProcessingConfig):
    """Preprocessing settings, plus a smoke-test switch."""

    smoke_test: bool = Field(False, description=f"Process only the first {SMOKE_TEST_RECORDS} labelled records.")


class SplitsConfig(dg.Config, SplitConfig):
    """Split fractions and seed."""


class TrainedModelConfig(dg.Config, TrainingConfig):
    """Training hyper-parameters (epochs, batch size, lr, seed, base_channels, accumulation, ...)."""


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    kinds={"python", "csv"},
    code_version=versioning.code_version(versioning.LABEL_MAPPING_CODE),
    description="Every record of the dataset with its native labels and its unified label "
    "(MI, AF, BBB, NORM, OTHER); unified_label_mapping.csv overrides.",
)
def label_mapping(context: dg.AssetExecutionContext, paths: EcgPathsResource) -> dg.MaterializeResult:
    dataset = context.partition_key
    artifacts = paths.artifacts(dataset)
    with partition_step(context, artifacts, paths.pipeline_log):
        mapping = build_label_mapping(
            paths.dataset_dir(dataset), dataset, paths.settings().label_override_files(dataset)
        )
        write_label_mapping(mapping.table, artifacts.label_mapping)
    table = mapping.table
    native_counts = (
        table.assign(native=table["native_labels"].str.split(";"))
        .explode("native")
        .groupby(["native", "mapped_label"])
        .size()
        .reset_index(name="records")
        .sort_values("records", ascending=False)
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(table),
            "dagster/column_schema": dg.TableSchema(columns=[dg.TableColumn(name, "string") for name in table.columns]),
            "dataset": _dataset_note(paths, dataset),
            "format": mapping.dataset_format,
            "records": len(table),
            "labelled": len(mapping.included),
            "excluded": len(table) - len(mapping.included),
            "unmatched": len(mapping.problems),
            "unlabelled": len(mapping.unlabelled),
            "label_counts": counts_table(mapping.counts(), "mapped_label"),
            "native_label_counts": markdown_table(native_counts),
            "excluded_reasons": counts_table(mapping.excluded_reasons(), "reason"),
            "unmatched_entries": reasons_table(mapping.problems, ("entry", "reason")),
            "ignored_files": reasons_table(mapping.ignored_files, ("file", "reason")),
            "unlabelled_records": markdown_table(mapping.unlabelled[["record_id", "source_file", "mapped_label"]]),
            "override_files": ", ".join(str(path) for path in mapping.override_files) or "none",
            "warnings": "\n".join(mapping.warnings) or "none",
            "path": dg.MetadataValue.path(str(artifacts.label_mapping)),
        }
    )


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    deps=[label_mapping],
    kinds={"python", "numpy"},
    code_version=versioning.code_version(versioning.PROCESSING_CODE),
    description="Labelled records read, resampled to 500 Hz, z-scored per lead and fitted to 5000 "
    "samples in the canonical 12-lead order, streamed into memory-mappable float16 shards.",
)
def processed_records(
    context: dg.AssetExecutionContext, config: ProcessedRecordsConfig, paths: EcgPathsResource
) -> dg.MaterializeResult:
    dataset = context.partition_key
    artifacts = paths.artifacts(dataset)
    dataset_dir = paths.dataset_dir(dataset)
    table = read_label_mapping(artifacts.label_mapping)
    records = table[table["mapped_label"] != ""]
    if config.smoke_test:
        records = records.head(SMOKE_TEST_RECORDS)
        context.log.info(f"smoke test: processing only the first {len(records)} records")
    preprocess_config = RecordProcessingConfig.model_validate(
        config.model_dump(include=set(RecordProcessingConfig.model_fields))
    )
    with partition_step(context, artifacts, paths.pipeline_log):
        record_store, report = process_records(
            dataset_dir, detect_format(dataset_dir), records, artifacts.processed, preprocess_config
        )
        logger.info(
            f"Preprocessing with unified labels completed successfully: {report.processed} of {report.discovered} "
            f"records stored in {artifacts.processed} ({report.failed} failed, listed in failures.csv)"
        )
    fs_counts = pd.Series(report.original_fs, dtype=float).value_counts().sort_index()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": report.processed,
            "dataset": _dataset_note(paths, dataset),
            "discovered": report.discovered,
            "processed": report.processed,
            "reprocessed": report.reprocessed,
            "reused_unchanged": report.reused,
            "reuse": report.full_reprocess_reason or "records with unchanged files copied from the previous generation",
            "reprocess_reasons": counts_table(dict(report.reprocess_reasons), "why read again"),
            "workers": report.workers,
            "failed": report.failed,
            "failure_reasons": reasons_table(report.failures),
            "warnings": counts_table(dict(report.warnings), "warning"),
            "original_sampling_rates": counts_table({f"{fs:g} Hz": int(n) for fs, n in fs_counts.items()}, "rate"),
            "original_seconds": dg.MetadataValue.json(_summary(report.original_seconds)),
            "label_counts": counts_table(record_store.index["label"].value_counts().to_dict(), "label"),
            "example_waveforms": example_waveforms(
                record_store, config.target_fs, artifacts.figures / "example_waveforms.png", dataset=dataset
            ),
            "recording_distributions": recording_distributions(
                record_store, artifacts.figures / "recording_distributions.png", dataset=dataset
            ),
            "store_bytes": record_store.nbytes(),
            "store_size": human_size(record_store.nbytes()),
            "store_disk_bytes": record_store.disk_bytes(),
            "records_with_long_window": int((record_store.window_samples > 0).sum()),
            "store_generation": record_store.generation,
            "smoke_test": config.smoke_test,
            "seconds": round(report.seconds, 2),
            "path": dg.MetadataValue.path(str(artifacts.processed)),
            **({"note": nothing_processed_reason(report)} if not report.processed else {}),
        }
    )


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    deps=[processed_records, label_mapping],  # label_mapping.csv: PTB-XL strat_fold
    kinds={"python", "json"},
    code_version=versioning.code_version(versioning.SPLITS_CODE),
    description="Train/validation/test split of the processed records: PTB-XL strat_fold when present, else "
    "80/10/10 stratified by label with each patient in one split; reproducible from a seed.",
)
def splits(context: dg.AssetExecutionContext, config: SplitsConfig, paths: EcgPathsResource) -> dg.MaterializeResult:
    dataset = context.partition_key
    artifacts = paths.artifacts(dataset)
    with partition_step(context, artifacts, paths.pipeline_log):
        index = RecordStore(artifacts.processed).index
        if index.empty:
            explanation = empty_store_explanation(
                read_label_mapping(artifacts.label_mapping), artifacts.processed / FAILURES_FILE
            )
            raise dg.Failure(description=f"nothing to split: {explanation}")
        folds = strat_folds_for(index["record_id"].tolist(), read_label_mapping(artifacts.label_mapping))
        result = assign_splits(index["label"].tolist(), config, index["patient_id"].tolist(), folds)
        write_splits(artifacts.splits, result.positions, index["record_id"].tolist(), config, result.method)
    split = result.positions
    counts = (
        pd.DataFrame({name: index["label"].iloc[split[name]].value_counts() for name in SPLIT_NAMES})
        .fillna(0)
        .astype(int)
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(len(split[name]) for name in SPLIT_NAMES),
            "dataset": _dataset_note(paths, dataset),
            **{f"{name}_records": len(split[name]) for name in SPLIT_NAMES},
            "method": result.method,
            "notes": "\n".join(result.notes) or "none",
            "class_counts": markdown_table(counts.rename_axis("label").reset_index()),
            "seed": config.seed,
            "path": dg.MetadataValue.path(str(artifacts.splits)),
        }
    )


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    deps=[splits],
    kinds={"pytorch"},
    pool="gpu",
    op_tags=GPU_OP_TAGS,
    tags={"compute": "gpu"},
    code_version=versioning.code_version(versioning.TRAINING_CODE),
    description="1D ResNet (residual blocks, BatchNorm, GELU, adaptive pooling) trained on the train split; "
    "best (by validation macro F1) and latest checkpoints, resumable.",
)
def trained_model(
    context: dg.AssetExecutionContext,
    config: TrainedModelConfig,
    paths: EcgPathsResource,
    gpu: TorchDeviceResource,
    pipes_subprocess_client: dg.PipesSubprocessClient,
    tracking: ExperimentTrackingResource,
) -> dg.MaterializeResult:
    dataset = context.partition_key
    artifacts = paths.artifacts(dataset)
    with partition_step(context, artifacts, paths.pipeline_log):
        device, processes = gpu.device_settings(), gpu.process_count()
        if processes > 1:
            job = torchrun_job(context.partition_key, artifacts, paths.pipeline_log, config, device)
            reported = train_with_torchrun(context, pipes_subprocess_client, processes, job)
            metadata = dict(reported.metadata or {})
        else:
            result = fit_model(
                RecordStore(artifacts.processed),
                read_splits(artifacts.splits),
                config,
                device,
                artifacts.models,
                artifacts.training_log,
            )
            metadata = {**result.summary(device), "checkpoint": dg.MetadataValue.path(str(result.best_checkpoint))}
        best_f1 = _best_validation_f1(read_training_log(artifacts.training_log))
        logger.info(f"Training complete! Best validation F1: {best_f1:.4f}, checkpoints saved to: {artifacts.models}")
    log = read_training_log(artifacts.training_log)
    if log.get("members"):
        members = pd.DataFrame([{key: member[key] for key in MEMBER_COLUMNS} for member in log["members"]]).round(4)
        metadata["ensemble_members"] = markdown_table(members)
        estimate = log["cross_validation"]
        metadata["cv_estimate"] = dg.MetadataValue.md(
            f"cross-validated macro F1 {format_interval(estimate['macro_f1'], estimate['intervals']['macro_f1'])} "
            f"over {estimate['n_samples']} out-of-fold records (each scored by the member that did not train on "
            "it; the test split is untouched)"
        )
    return dg.MaterializeResult(
        metadata={
            "dataset": _dataset_note(paths, dataset),
            **metadata,
            "training_history": training_history(
                training_histories(log), artifacts.figures / "training_history.png", dataset=dataset
            ),
            "training_log": dg.MetadataValue.path(str(artifacts.training_log)),
            **tracking.log_training(context, artifacts),
        }
    )


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    deps=[trained_model],
    kinds={"pytorch", "scikitlearn"},
    code_version=versioning.code_version(versioning.EVALUATION_CODE),
    description="Best checkpoint scored on the test split: confusion matrix, per-class precision/recall/F1, "
    "macro/micro/weighted F1, classification report and figures.",
)
def test_metrics(
    context: dg.AssetExecutionContext,
    paths: EcgPathsResource,
    gpu: TorchDeviceResource,
    tracking: ExperimentTrackingResource,
) -> dg.MaterializeResult:
    dataset = context.partition_key
    artifacts = paths.artifacts(dataset)
    with partition_step(context, artifacts, paths.pipeline_log):
        outputs = evaluation.evaluate_checkpoint(
            RecordStore(artifacts.processed),
            read_splits(artifacts.splits),
            artifacts.models / BEST_CHECKPOINT,
            gpu.device_settings(),
            artifacts.test_metrics,
            artifacts.figures,
            expected_sha256=_recorded_checkpoint_sha256(context),
            training_log=artifacts.training_log,  # every epoch, not the checkpoint's history up to the best one
            dataset=dataset,
        )
        logger.info(
            f"Evaluation complete! Metrics saved to: {outputs.metrics_file}, F1 plot saved to: {outputs.f1_plot}"
        )
    result = outputs.metrics
    intervals = result["intervals"]
    per_class = pd.DataFrame(result["per_class"]).T.rename_axis("class").reset_index().round(3)
    per_class["support"] = per_class["support"].astype(int)  # a count of records, not a float
    per_class["f1_95ci"] = [
        format_interval(f1, intervals["per_class"][name]) for name, f1 in zip(per_class["class"], per_class["f1"])
    ]
    averages = ("macro_f1", "micro_f1", "weighted_f1", "accuracy")
    return dg.MaterializeResult(
        metadata={
            "dataset": _dataset_note(paths, dataset),
            **{key: round(result[key], 4) for key in averages},
            "estimate": dg.MetadataValue.md(
                "\n".join(f"- {key}: {format_interval(result[key], intervals[key])}" for key in averages)
                + f"\n\n95% intervals: {intervals['method']} ({intervals['n_samples']} records, "
                f"{intervals['resamples']} resamples)"
            ),
            **{f"{key}_95ci": dg.MetadataValue.json(intervals[key]) for key in averages},
            "majority_class_macro_f1": round(result["majority_class_macro_f1"], 4),
            "test_records": result["n_samples"],
            "per_class": markdown_table(per_class),
            "classification_report": dg.MetadataValue.md(f"```\n{result['classification_report']}\n```"),
            "confusion_matrix": png_markdown(outputs.pngs["confusion"], "confusion matrix"),
            "f1_scores": png_markdown(outputs.pngs["f1"], "test F1 per class"),
            "training_history": png_markdown(outputs.pngs["history"], "training history"),
            "checkpoint_sha256": result["checkpoint_sha256"],
            "path": dg.MetadataValue.path(str(outputs.metrics_file)),
            **tracking.log_evaluation(context, artifacts),
        }
    )


def _recorded_checkpoint_sha256(context: dg.AssetExecutionContext) -> str:
    """`checkpoint_sha256` of this partition's latest `trained_model` materialization in this Dagster instance.

    Without one (artifacts copied in from elsewhere) the checkpoint cannot be verified and is refused.
    """
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=trained_model.key, asset_partitions=[context.partition_key]), limit=1
    ).records
    recorded: Optional[dg.MetadataValue] = None
    if records and records[0].asset_materialization is not None:
        recorded = records[0].asset_materialization.metadata.get("checkpoint_sha256")
    if recorded is None:
        raise CheckpointError(
            f"no trained_model materialization of partition {context.partition_key!r} in this Dagster instance "
            f"records the SHA-256 of {BEST_CHECKPOINT}, so it cannot be verified; materialize trained_model first "
            "(with the config it was trained with and unchanged data it does not retrain: it records the hash of "
            "the existing checkpoint)"
        )
    context.log.info(
        f"verifying {BEST_CHECKPOINT} against checkpoint_sha256 {recorded.value} "
        f"recorded by trained_model in run {records[0].run_id}"
    )
    return str(recorded.value)


def _best_validation_f1(log: dict) -> float:
    """Best validation macro F1 of a `training_log.json`: the run's, or the mean of an ensemble's members'."""
    if "best_val_macro_f1" in log:
        return float(log["best_val_macro_f1"])
    return float(np.mean([member["best_val_macro_f1"] for member in log["members"]]))


def _summary(values: list[float]) -> dict[str, float]:
    series = pd.Series(values, dtype=float)
    if series.empty:
        return {}
    return {key: round(float(value), 2) for key, value in series.describe(percentiles=[0.5]).items() if key != "count"}


ecg_assets = [label_mapping, processed_records, splits, trained_model, test_metrics]
