"""Asset checks, evaluated per dataset partition in the same run as the asset they check.

Blocking checks (severity ERROR) stop the downstream assets of that run, so training never starts
on non-finite signals, unusable or leaking splits, or records whose labels drifted from the label
mapping. Non-blocking checks (severity WARN) flag weak results without stopping anything.
"""

import warnings
from pathlib import Path

import dagster as dg
import pandas as pd

from ecg_assets.assets import SMOKE_TEST_RECORDS, label_mapping, processed_records, splits, test_metrics
from ecg_assets.core import quality
from ecg_assets.core.label_mapping import read_label_mapping
from ecg_assets.core.layout import PartitionLayout
from ecg_assets.core.preprocessing import FAILURES_FILE
from ecg_assets.core.splits import read_splits
from ecg_assets.core.storage import read_json
from ecg_assets.core.store import RecordStore
from ecg_assets.metadata import markdown_table
from ecg_assets.partitions import dataset_partitions
from ecg_assets.resources import EcgPathsResource

EXAMPLES_SHOWN = 20


class FailedShareConfig(dg.Config, quality.FailedShareConfig):
    """Threshold of the failed-record share check."""


def partitioned_check(**kwargs) -> dg.AssetChecksDefinition:
    """`dg.asset_check` with one result per dataset partition.

    Partitioned checks are a Dagster preview feature; its PreviewWarning is silenced here only,
    so it is not repeated in every run log.
    """

    def decorate(function):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.PreviewWarning)
            return dg.asset_check(partitions_def=dataset_partitions, **kwargs)(function)

    return decorate


def _examples(values) -> str:
    values = list(values)
    shown = ", ".join(str(value) for value in values[:EXAMPLES_SHOWN])
    more = f" (+{len(values) - EXAMPLES_SHOWN} more)" if len(values) > EXAMPLES_SHOWN else ""
    return (shown + more) or "none"


def _failed_record_ids(store_dir: Path) -> list[str]:
    return pd.read_csv(store_dir / FAILURES_FILE, dtype=str, keep_default_na=False)["record_id"].tolist()


def _latest_materialization_metadata(context: dg.AssetCheckExecutionContext, asset_key: dg.AssetKey) -> dict:
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[context.partition_key]), limit=1
    ).records
    return dict(records[0].asset_materialization.metadata) if records else {}


# Check results from a partition's artifacts: plain functions, so tests can run them on broken artifacts.


def finite_signals_result(layout: PartitionLayout) -> dg.AssetCheckResult:
    store = RecordStore(layout.processed)
    bad = quality.non_finite_records(store)
    return dg.AssetCheckResult(
        passed=not bad,
        metadata={
            "records_checked": len(store),
            "non_finite_records": len(bad),
            "examples": _examples(store.index["record_id"].iloc[bad]),
        },
    )


def labels_match_result(layout: PartitionLayout, smoke_test: bool) -> dg.AssetCheckResult:
    table = read_label_mapping(layout.label_mapping)
    expected = table[table["mapped_label"] != ""]
    if smoke_test:
        expected = expected.head(SMOKE_TEST_RECORDS)
    store = RecordStore(layout.processed)
    comparison = quality.compare_label_distribution(expected, store.index, _failed_record_ids(layout.processed))
    return dg.AssetCheckResult(
        passed=comparison.matches,
        metadata={
            "label_counts": markdown_table(comparison.table),
            "relabelled": _examples(comparison.relabelled),
            "not_in_label_mapping": _examples(comparison.unexpected),
            "processed_twice": _examples(comparison.duplicated),
            "neither_processed_nor_failed": _examples(comparison.unaccounted),
            "smoke_test": smoke_test,
        },
    )


def failed_share_result(layout: PartitionLayout, max_failed_share: float) -> dg.AssetCheckResult:
    failed = len(_failed_record_ids(layout.processed))
    share = quality.failed_share(len(RecordStore(layout.processed)), failed)
    return dg.AssetCheckResult(
        passed=share <= max_failed_share,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"failed": failed, "failed_share": round(share, 4), "max_failed_share": max_failed_share},
    )


def split_usability_result(layout: PartitionLayout) -> dg.AssetCheckResult:
    coverage = quality.split_coverage(RecordStore(layout.processed).index["label"].tolist(), read_splits(layout.splits))
    missing = coverage.train_classes_missing_from_val
    return dg.AssetCheckResult(
        passed=not coverage.empty_splits and not missing,
        severity=dg.AssetCheckSeverity.ERROR if coverage.empty_splits else dg.AssetCheckSeverity.WARN,
        metadata={
            **{f"{name}_records": size for name, size in coverage.sizes.items()},
            "empty_splits": _examples(coverage.empty_splits),
            "train_classes_missing_from_val": _examples(missing),
        },
    )


def split_disjointness_result(layout: PartitionLayout) -> dg.AssetCheckResult:
    overlaps = quality.split_overlaps(RecordStore(layout.processed).index, read_splits(layout.splits))
    return dg.AssetCheckResult(
        passed=overlaps.disjoint,
        metadata={
            "records_in_several_splits": len(overlaps.records),
            "patients_in_several_splits": len(overlaps.patients),
            "patients_known": overlaps.patients_known,
            "record_examples": _examples(f"{key} in {'+'.join(names)}" for key, names in overlaps.records.items()),
            "patient_examples": _examples(f"{key} in {'+'.join(names)}" for key, names in overlaps.patients.items()),
        },
    )


def majority_baseline_result(layout: PartitionLayout) -> dg.AssetCheckResult:
    result = read_json(layout.test_metrics)
    return dg.AssetCheckResult(
        passed=result["macro_f1"] > result["majority_class_macro_f1"],
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "macro_f1": result["macro_f1"],
            "majority_class_macro_f1": result["majority_class_macro_f1"],
            "margin": round(result["macro_f1"] - result["majority_class_macro_f1"], 4),
        },
    )


# The checks as the UI lists them: blocking ones stop the rest of the run when they fail.


@partitioned_check(asset=processed_records, blocking=True)
def processed_records_are_finite(context: dg.AssetCheckExecutionContext, paths: EcgPathsResource):
    """Every processed signal is finite: no NaN or infinity reaches training."""
    return finite_signals_result(paths.layout(context.partition_key))


@partitioned_check(asset=processed_records, additional_deps=[label_mapping], blocking=True)
def processed_labels_match_label_mapping(context: dg.AssetCheckExecutionContext, paths: EcgPathsResource):
    """Every labelled record of label_mapping was processed once with its mapped label, or is listed as failed."""
    smoke_test = _latest_materialization_metadata(context, processed_records.key).get("smoke_test")
    return labels_match_result(paths.layout(context.partition_key), bool(smoke_test and smoke_test.value))


@partitioned_check(asset=processed_records)
def failed_record_share_is_low(
    context: dg.AssetCheckExecutionContext, config: FailedShareConfig, paths: EcgPathsResource
):
    """The share of unreadable records stays at most `max_failed_share` (a warning; training still runs)."""
    return failed_share_result(paths.layout(context.partition_key), config.max_failed_share)


@partitioned_check(asset=splits, blocking=True)
def splits_are_usable(context: dg.AssetCheckExecutionContext, paths: EcgPathsResource):
    """No split is empty (ERROR, blocks training); a training class absent from validation is flagged (WARN)."""
    return split_usability_result(paths.layout(context.partition_key))


@partitioned_check(asset=splits, blocking=True)
def splits_are_disjoint(context: dg.AssetCheckExecutionContext, paths: EcgPathsResource):
    """No record id and no (known) patient id appears in two splits."""
    return split_disjointness_result(paths.layout(context.partition_key))


@partitioned_check(asset=test_metrics)
def macro_f1_beats_majority_baseline(context: dg.AssetCheckExecutionContext, paths: EcgPathsResource):
    """Test macro F1 is above that of always predicting the most frequent training class (a warning)."""
    return majority_baseline_result(paths.layout(context.partition_key))


ecg_checks = [
    processed_records_are_finite,
    processed_labels_match_label_mapping,
    failed_record_share_is_low,
    splits_are_usable,
    splits_are_disjoint,
    macro_f1_beats_majority_baseline,
]
