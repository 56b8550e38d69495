"""Assets across datasets: one model trained on every dataset, and every model scored on every dataset.

Both are unpartitioned and downstream of every dataset partition (a partitioned upstream given in
`deps` maps all its partitions to an unpartitioned asset). They read the partitions' artifacts
from disk; the Dagster instance says which partitions' splits and models are materialized, and
which checkpoint hashes to trust.
"""

import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Literal, Optional

import dagster as dg
import pandas as pd
from pydantic import Field

from ecg_assets.core import versioning
from ecg_assets.core.artifacts import GeneralisationArtifacts, PartitionArtifacts, PooledArtifacts
from ecg_assets.core.atomic_io import atomic_write_json, read_json, remove_temp_files
from ecg_assets.core.duplicates import DuplicateReport, find_duplicates, refs_of
from ecg_assets.core.ensemble import fit_model, training_histories
from ecg_assets.core.generalisation import (
    POOLED,
    Cell,
    GeneralisationMatrix,
    HeldOutSplit,
    ModelSource,
    build_matrix,
    lead_set_scores,
    plot_matrix,
    write_matrix,
)
from ecg_assets.core.locks import exclusive_lock
from ecg_assets.core.pooled import (
    TRAINING_SPLITS,
    open_split_partitions,
    prepare_pooled_training,
    read_plan_records,
    refs_by_id,
    training_records_with_test_twins,
)
from ecg_assets.core.scoring import load_scoring_model
from ecg_assets.core.training import BEST_CHECKPOINT, TrainingConfig
from ecg_assets.defs.assets import GPU_OP_TAGS, GROUP, datasets_note, splits, test_metrics, trained_model
from ecg_assets.defs.metadata import markdown_table, png_markdown, training_history
from ecg_assets.defs.partitions import dataset_partitions
from ecg_assets.defs.resources import EcgPathsResource, TorchDeviceResource
from ecg_assets.defs.steps import forward_core_logs, tag_run_host
from ecg_assets.defs.torchrun import torchrun_job, train_with_torchrun
from ecg_assets.defs.tracking import ExperimentTrackingResource

ROWS_SHOWN = 50
# The diagonal and test_metrics are the same computation on the same checkpoint: they agree to the last bit.
DIAGONAL_TOLERANCE = 1e-9
STALE_TEST_METRICS = "test_metrics scored another checkpoint (re-materialize test_metrics)"


class PooledModelConfig(dg.Config, TrainingConfig):
    """Which datasets to pool and how, plus every training hyper-parameter of `trained_model`."""

    datasets: Optional[list[str]] = Field(
        None,
        description="Dataset partitions to train on (default: every partition whose splits are materialized in "
        "this Dagster instance and present on disk).",
    )
    mixing: Literal["proportional", "equal", "capped"] = Field(
        "proportional",
        description="Each dataset's share of an epoch's draws: proportional (every training record once per "
        "epoch), equal (the same share per dataset) or capped (proportional to min(records, cap)).",
    )
    cap: int = Field(1000, ge=1, description="capped mixing: records per dataset above which its share stops growing.")
    class_masking: bool = Field(
        True,
        description="Mask the logits of the classes a record's dataset never labels, so they never count as its "
        "error (e.g. MI and BBB for CinC 2017, which only says N, A or O).",
    )
    lead_dropout: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Probability that a training record keeps only a random subset of its leads (at least one), "
        "so one network scores any lead subset.",
    )


def _dataset_keys(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> list[str]:
    """Every dataset partition key (static or dynamic partitions)."""
    return list(dataset_partitions.get_partition_keys(dynamic_partitions_store=context.instance))


def _recorded_sha256(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition: Optional[str] = None
) -> Optional[str]:
    """`checkpoint_sha256` of the asset's (partition's) latest materialization in this instance, or None."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition] if partition else None), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    value = records[0].asset_materialization.metadata.get("checkpoint_sha256")
    return None if value is None else str(value.value)


@contextmanager
def _step(context: dg.OpExecutionContext, lock_file: Path, log_file: Path) -> Iterator[None]:
    """Core logs forwarded to the run, the run's host tag, and `lock_file` held (one writer at a time)."""
    tag_run_host(context)
    owner = f"run {context.run.run_id} ({context.asset_key.to_user_string()}) on {socket.gethostname()}"
    with forward_core_logs(context, log_file), exclusive_lock(lock_file, owner):
        remove_temp_files(lock_file.parent)
        yield


def _pairs_table(duplicates: DuplicateReport) -> dg.MetadataValue:
    return markdown_table(duplicates.table(), ROWS_SHOWN)


def _every_partition_of(asset: dg.AssetsDefinition) -> dg.AssetDep:
    """A dependency on every dataset partition of `asset` (what Dagster infers anyway; said explicitly)."""
    return dg.AssetDep(asset, partition_mapping=dg.AllPartitionMapping())


@dg.asset(
    deps=[_every_partition_of(splits)],
    group_name=GROUP,
    kinds={"pytorch"},
    pool="gpu",
    op_tags=GPU_OP_TAGS,
    tags={"compute": "gpu"},
    code_version=versioning.code_version(
        versioning.POOLED_CODE, versioning.TRAINING_CODE, versioning.GENERALISATION_CODE
    ),
    description="One 1D ResNet trained on the train splits of every dataset at once (their stores read in "
    "place): per-dataset class masking, dataset mixing, lead dropout; recordings that also sit in a test "
    "split are left out. Test macro F1 per dataset and lead set.",
)
def pooled_model(
    context: dg.AssetExecutionContext,
    config: PooledModelConfig,
    paths: EcgPathsResource,
    gpu: TorchDeviceResource,
    pipes_subprocess_client: dg.PipesSubprocessClient,
    tracking: ExperimentTrackingResource,
) -> dg.MaterializeResult:
    root = Path(paths.artifacts_dir)
    artifacts = PooledArtifacts(root)
    with _step(context, artifacts.lock_file, paths.pipeline_log):
        keys = _dataset_keys(context)
        unknown = sorted(set(config.datasets or []) - set(keys))
        if unknown:
            raise dg.Failure(f"unknown dataset partition(s) {', '.join(unknown)}; the partitions are {', '.join(keys)}")
        if config.datasets:
            candidates = list(config.datasets)
            left_out = {key: "not in the configured datasets" for key in keys if key not in candidates}
        else:
            materialized = context.instance.get_materialized_partitions(splits.key)
            candidates = [key for key in keys if key in materialized]
            not_materialized = "splits not materialized in this Dagster instance"
            left_out = {key: not_materialized for key in keys if key not in candidates}
        try:
            prepared = prepare_pooled_training(
                artifacts, keys, candidates, left_out, config.mixing, config.cap, config.class_masking
            )
        except ValueError as error:
            raise dg.Failure(str(error)) from error
        store, union, plan, duplicates = prepared.store, prepared.splits, prepared.plan, prepared.duplicates
        training = TrainingConfig.model_validate(config.model_dump(include=set(TrainingConfig.model_fields)))
        device, processes = gpu.device_settings(), gpu.process_count()
        if processes > 1:
            job = torchrun_job(POOLED, artifacts, paths.pipeline_log, training, device, pooled=store.spec())
            summary = dict(train_with_torchrun(context, pipes_subprocess_client, processes, job).metadata or {})
        else:
            result = fit_model(store, union, training, device, artifacts.models, artifacts.training_log)
            summary = {**result.summary(device), "checkpoint": dg.MetadataValue.path(str(result.best_checkpoint))}
        scoring = load_scoring_model(artifacts.models / BEST_CHECKPOINT, device.device)
        test_sets = [
            HeldOutSplit(dataset, prepared.partition_stores[dataset], prepared.partition_splits[dataset]["test"])
            for dataset in plan.datasets
        ]
        lead_sets = lead_set_scores(scoring, test_sets, device)
        atomic_write_json(artifacts.lead_sets, lead_sets.to_dict("records"))
    contributions = plan.contributions()
    return dg.MaterializeResult(
        metadata={
            "data": datasets_note(paths, plan.datasets),
            **summary,
            "datasets": markdown_table(contributions),
            "datasets_left_out": markdown_table(
                pd.DataFrame(list(prepared.left_out.items()), columns=["dataset", "reason"]), ROWS_SHOWN
            ),
            "train_records": int(contributions["train"].sum()),
            "val_records": int(contributions["val"].sum()),
            "mixing": config.mixing if config.mixing != "capped" else f"capped at {config.cap} records per dataset",
            "class_masking": config.class_masking,
            "lead_dropout": config.lead_dropout,
            "excluded_as_leakage": len(plan.excluded),
            "excluded_records": markdown_table(plan.excluded, ROWS_SHOWN),
            "duplicate_pairs": len(duplicates.pairs),
            "duplicate_pairs_across_datasets": sum(pair.across_datasets for pair in duplicates.pairs),
            "duplicate_search_seconds": round(duplicates.seconds, 3),
            "duplicates": _pairs_table(duplicates),
            "test_f1_by_lead_set": markdown_table(lead_sets, ROWS_SHOWN),
            "training_history": training_history(
                training_histories(read_json(artifacts.training_log)), artifacts.figures / "training_history.png"
            ),
            "training_log": dg.MetadataValue.path(str(artifacts.training_log)),
            "plan": dg.MetadataValue.path(str(artifacts.plan)),
            **tracking.log_pooled_training(context, artifacts),  # after the history figure above is written
        }
    )


@dg.asset_check(
    asset=pooled_model,
    name="pooled_training_has_no_test_twins",
    blocking=True,
    description="No recording that trained or validated the pooled model is in any dataset's test split "
    "(the same record, or a twin found by its signal fingerprint).",
)
def pooled_training_has_no_test_twins(
    context: dg.AssetCheckExecutionContext, paths: EcgPathsResource
) -> dg.AssetCheckResult:
    return leakage_check_result(Path(paths.artifacts_dir), _dataset_keys(context))


def leakage_check_result(root: Path, datasets: list[str]) -> dg.AssetCheckResult:
    """The check's result from the artifacts on disk: the pooled plan against every dataset's current splits."""
    stores, split_positions, _ = open_split_partitions(root, datasets)
    records = read_plan_records(PooledArtifacts(root).plan)
    training = refs_by_id(records, stores, TRAINING_SPLITS)
    duplicates = find_duplicates(stores)
    leaked = training_records_with_test_twins(training, split_positions, duplicates)
    return dg.AssetCheckResult(
        passed=leaked.empty,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "training_records_checked": len(training),
            "datasets_searched": ", ".join(stores),
            "duplicate_pairs": len(duplicates.pairs),
            "training_records_with_a_test_twin": len(leaked),
            "leaked": markdown_table(leaked, ROWS_SHOWN),
        },
    )


@dg.asset(
    deps=[_every_partition_of(splits), _every_partition_of(trained_model), pooled_model],
    group_name=GROUP,
    kinds={"pytorch", "csv"},
    code_version=versioning.code_version(versioning.GENERALISATION_CODE),
    description="Every dataset's model and the pooled model scored on every dataset's test split: macro F1 "
    "(classes the model knows that occur in the test split) with 95% bootstrap interval and record count, "
    "per-class F1, leaked recordings flagged; missing models or test splits are labelled gaps.",
)
def generalisation_matrix(
    context: dg.AssetExecutionContext, paths: EcgPathsResource, gpu: TorchDeviceResource
) -> dg.MaterializeResult:
    root = Path(paths.artifacts_dir)
    output = GeneralisationArtifacts(root)
    with _step(context, output.lock_file, paths.pipeline_log):
        keys = _dataset_keys(context)
        stores, split_positions, missing = open_split_partitions(root, keys)
        duplicates = find_duplicates(stores)
        models = [_dataset_model(context.instance, root, key, stores, split_positions) for key in keys]
        models.append(_pooled_model_source(context.instance, root, stores))
        test_sets = [_test_set(key, stores, split_positions, missing) for key in keys]
        matrix = build_matrix(models, test_sets, duplicates, gpu.device_settings())
        write_matrix(matrix, output.matrix_json, output.matrix_csv)
        png = plot_matrix(matrix, output.heatmap)
    scored = [cell for cell in matrix.cells if cell.status == "scored"]
    return dg.MaterializeResult(
        metadata={
            "data": datasets_note(paths, _datasets_behind(scored, root)),
            "heatmap": png_markdown(png, "generalisation matrix"),
            "matrix": markdown_table(_summary_table(matrix), ROWS_SHOWN),
            "models": ", ".join(matrix.models),
            "test_sets": ", ".join(matrix.test_sets),
            "cells_scored": len(scored),
            "gaps": len(matrix.cells) - len(scored),
            "cells_with_leaked_records": sum(1 for cell in scored if cell.leaked_records),
            "duplicate_pairs_across_datasets": matrix.duplicate_pairs_across_datasets,
            "matrix_json": dg.MetadataValue.path(str(output.matrix_json)),
            "matrix_csv": dg.MetadataValue.path(str(output.matrix_csv)),
        }
    )


def _datasets_behind(scored: list[Cell], root: Path) -> set[str]:
    """The partitions whose recordings a scored cell rests on: its test set, its model's dataset, and for the
    pooled model every dataset it was trained on."""
    datasets = {cell.test_set for cell in scored} | {cell.model for cell in scored if cell.model != POOLED}
    if any(cell.model == POOLED for cell in scored):
        datasets |= set(read_json(PooledArtifacts(root).plan)["datasets"])
    return datasets


def _dataset_model(
    instance: dg.DagsterInstance, root: Path, dataset: str, stores: dict, split_positions: dict
) -> ModelSource:
    """A partition's `trained_model` best checkpoint, verified against the hash its materialization recorded."""
    checkpoint = PartitionArtifacts(root, dataset).models / BEST_CHECKPOINT
    sha256 = _recorded_sha256(instance, trained_model.key, dataset)
    if sha256 is None:
        return ModelSource(dataset, None, gap="trained_model not materialized in this Dagster instance")
    trained_on = frozenset()
    if dataset in stores:
        positions = [position for name in TRAINING_SPLITS for position in split_positions[dataset][name]]
        trained_on = frozenset(refs_of(dataset, stores[dataset], positions))
    return ModelSource(dataset, checkpoint, sha256, trained_on=trained_on)


def _pooled_model_source(instance: dg.DagsterInstance, root: Path, stores: dict) -> ModelSource:
    artifacts = PooledArtifacts(root)
    sha256 = _recorded_sha256(instance, pooled_model.key)
    if sha256 is None or not artifacts.plan.is_file():
        return ModelSource(POOLED, None, gap="pooled_model not materialized in this Dagster instance")
    training = refs_by_id(read_plan_records(artifacts.plan), stores, TRAINING_SPLITS)
    return ModelSource(POOLED, artifacts.models / BEST_CHECKPOINT, sha256, trained_on=training)


def _test_set(dataset: str, stores: dict, split_positions: dict, missing: dict) -> HeldOutSplit:
    if dataset not in stores:
        return HeldOutSplit(dataset, None, gap=missing.get(dataset, "no test split"))
    positions = split_positions[dataset]["test"]
    return HeldOutSplit(dataset, stores[dataset], positions, gap="" if positions else "empty test split")


def _summary_table(matrix: GeneralisationMatrix) -> pd.DataFrame:
    rows = []
    for cell in matrix.cells:
        if cell.status == "scored":
            score = f"{cell.macro_f1:.3f} [{cell.ci_low:.3f}, {cell.ci_high:.3f}]"
        else:
            score = f"gap: {cell.gap}"
        rows.append(
            {
                "model": cell.model,
                "test split": cell.test_set,
                "macro F1 [95% CI]": score,
                "records": cell.records,
                "classes": " ".join(cell.classes),
                "leaked": cell.leaked_records,
            }
        )
    return pd.DataFrame(rows)


@dg.asset_check(
    asset=generalisation_matrix,
    name="matrix_diagonal_matches_test_metrics",
    additional_deps=[_every_partition_of(test_metrics)],
    description="Each dataset's own model on its own test split scores exactly its test_metrics macro F1 "
    "(same checkpoint, same definition).",
)
def matrix_diagonal_matches_test_metrics(paths: EcgPathsResource) -> dg.AssetCheckResult:
    return diagonal_check_result(Path(paths.artifacts_dir))


def diagonal_check_result(root: Path) -> dg.AssetCheckResult:
    """Compare the matrix's diagonal with each partition's `test_metrics.json`."""
    matrix = read_json(GeneralisationArtifacts(root).matrix_json)
    rows = []
    for cell in matrix["cells"]:
        if cell["model"] != cell["test_set"] or cell["status"] != "scored":
            continue
        metrics_file = PartitionArtifacts(root, cell["model"]).test_metrics
        row = {"dataset": cell["model"], "matrix": cell["macro_f1"], "test_metrics": None, "verdict": "no test_metrics"}
        if metrics_file.is_file():
            metrics = read_json(metrics_file)
            same_checkpoint = metrics.get("checkpoint_sha256") == cell["checkpoint_sha256"]
            agrees = same_checkpoint and abs(metrics["macro_f1"] - cell["macro_f1"]) <= DIAGONAL_TOLERANCE
            row["test_metrics"] = metrics["macro_f1"]
            row["verdict"] = "equal" if agrees else "differs" if same_checkpoint else STALE_TEST_METRICS
        rows.append(row)
    table = pd.DataFrame(rows, columns=["dataset", "matrix", "test_metrics", "verdict"])
    compared = table[table["verdict"] != "no test_metrics"]
    mismatched = compared[compared["verdict"] != "equal"]
    return dg.AssetCheckResult(
        passed=not compared.empty and mismatched.empty,
        severity=dg.AssetCheckSeverity.ERROR if len(mismatched) else dg.AssetCheckSeverity.WARN,
        metadata={
            "compared": len(compared),
            "mismatched": len(mismatched),
            "diagonal": markdown_table(table),
        },
    )


pooled_assets = [pooled_model, generalisation_matrix]
pooled_checks = [pooled_training_has_no_test_twins, matrix_diagonal_matches_test_metrics]

# Unpartitioned, so not part of the partitioned ecg_pipeline job: one run over every dataset, after their chains.
pooled_and_matrix_job = dg.define_asset_job(
    name="pooled_and_matrix",
    selection=dg.AssetSelection.assets(*pooled_assets),
    description="Train the pooled model on every dataset with materialized splits, then score every model on "
    "every dataset's test split (the generalisation matrix), with their checks.",
)
pooled_jobs = [pooled_and_matrix_job]
