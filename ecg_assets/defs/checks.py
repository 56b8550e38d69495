"""Asset checks, evaluated per dataset partition in the same run as the asset they check.

Blocking checks (severity ERROR) stop the downstream assets of that run, so training never starts
on non-finite signals, unusable or leaking splits, or records whose labels drifted from the label
mapping. Non-blocking checks (severity WARN) flag weak results without stopping anything.

The checks of one asset share one op (`dg.multi_asset_check`): one step, one process start, per
asset instead of per check.
"""

import warnings
from typing import Iterator

import dagster as dg

from ecg_assets.core import quality
from ecg_assets.core.artifacts import PartitionArtifacts
from ecg_assets.core.evaluation import read_test_metrics
from ecg_assets.core.label_mapping import read_label_mapping
from ecg_assets.core.preprocessing import read_failures
from ecg_assets.core.splits import read_splits
from ecg_assets.core.store import RecordStore
from ecg_assets.defs.assets import SMOKE_TEST_RECORDS, label_mapping, processed_records, splits, test_metrics
from ecg_assets.defs.metadata import markdown_table
from ecg_assets.defs.partitions import dataset_partitions
from ecg_assets.defs.resources import EcgPathsResource

EXAMPLES_SHOWN = 20


class FailedShareConfig(dg.Config, quality.FailedShareConfig):
    """Threshold of the failed-record share check."""


def _spec(name: str, asset: dg.AssetsDefinition, description: str, **kwargs) -> dg.AssetCheckSpec:
    """A check with one result per dataset partition.

    Partitioned checks are a Dagster preview feature; its PreviewWarning is silenced here only,
    so it is not repeated in every run log.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(
            name, asset=asset, description=description, partitions_def=dataset_partitions, **kwargs
        )


FINITE_SIGNALS = _spec(
    "processed_records_are_finite",
    processed_records,
    "Every processed signal is finite: no NaN or infinity reaches training.",
    blocking=True,
)
LABELS_MATCH = _spec(
    "processed_labels_match_label_mapping",
    processed_records,
    "Every labelled record of label_mapping was processed once with its mapped label, or is listed as failed.",
    blocking=True,
    additional_deps=[label_mapping],
)
FAILED_SHARE = _spec(
    "failed_record_share_is_low",
    processed_records,
    "The share of unreadable records stays at most `max_failed_share` (a warning; training still runs).",
)
SPLITS_USABLE = _spec(
    "splits_are_usable",
    splits,
    "No split is empty (ERROR, blocks training); a training class absent from validation is flagged (WARN).",
    blocking=True,
)
SPLITS_DISJOINT = _spec(
    "splits_are_disjoint", splits, "No record id and no (known) patient id appears in two splits.", blocking=True
)
BEATS_MAJORITY = _spec(
    "macro_f1_beats_majority_baseline",
    test_metrics,
    "Test macro F1 is above that of always predicting the most frequent training class (a warning).",
)


def _result(spec: dg.AssetCheckSpec, **kwargs) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(asset_key=spec.asset_key, check_name=spec.name, **kwargs)


def _examples(values) -> str:
    values = list(values)
    shown = ", ".join(str(value) for value in values[:EXAMPLES_SHOWN])
    more = f" (+{len(values) - EXAMPLES_SHOWN} more)" if len(values) > EXAMPLES_SHOWN else ""
    return (shown + more) or "none"


def _latest_materialization_metadata(context: dg.AssetCheckExecutionContext, asset_key: dg.AssetKey) -> dict:
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[context.partition_key]), limit=1
    ).records
    return dict(records[0].asset_materialization.metadata) if records else {}


# Check results from a partition's artifacts: plain functions, so tests can run them on broken artifacts.
# Each reads an artifact through the reader next to its writer; `store` lets one op open the store once.


def _store(artifacts: PartitionArtifacts, store: RecordStore | None) -> RecordStore:
    return store if store is not None else RecordStore(artifacts.processed)


def finite_signals_result(artifacts: PartitionArtifacts, store: RecordStore | None = None) -> dg.AssetCheckResult:
    store = _store(artifacts, store)
    bad = quality.non_finite_records(store)
    return _result(
        FINITE_SIGNALS,
        passed=not bad,
        metadata={
            "records_checked": len(store),
            "non_finite_records": len(bad),
            "examples": _examples(store.index["record_id"].iloc[bad]),
        },
    )


def labels_match_result(
    artifacts: PartitionArtifacts, smoke_test: bool, store: RecordStore | None = None
) -> dg.AssetCheckResult:
    table = read_label_mapping(artifacts.label_mapping)
    expected = table[table["mapped_label"] != ""]
    if smoke_test:
        expected = expected.head(SMOKE_TEST_RECORDS)
    failed_ids = read_failures(artifacts.processed)["record_id"].tolist()
    comparison = quality.compare_label_distribution(expected, _store(artifacts, store).index, failed_ids)
    return _result(
        LABELS_MATCH,
        passed=comparison.matches,
        metadata={
            "label_counts": markdown_table(comparison.table),
            "relabelled": _examples(comparison.relabelled),
            "not_in_label_mapping": _examples(comparison.unexpected),
            "processed_twice": _examples(comparison.duplicated),
            "neither_processed_nor_failed": _examples(comparison.unaccounted),
            "repeated_rows_skipped": _examples(comparison.repeated_rows),
            "smoke_test": smoke_test,
        },
    )


def failed_share_result(
    artifacts: PartitionArtifacts, max_failed_share: float, store: RecordStore | None = None
) -> dg.AssetCheckResult:
    failed = len(read_failures(artifacts.processed))
    share = quality.failed_share(len(_store(artifacts, store)), failed)
    return _result(
        FAILED_SHARE,
        passed=share <= max_failed_share,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"failed": failed, "failed_share": round(share, 4), "max_failed_share": max_failed_share},
    )


def split_usability_result(artifacts: PartitionArtifacts, store: RecordStore | None = None) -> dg.AssetCheckResult:
    coverage = quality.split_coverage(_store(artifacts, store).index["label"].tolist(), read_splits(artifacts.splits))
    missing = coverage.train_classes_missing_from_val
    return _result(
        SPLITS_USABLE,
        passed=not coverage.empty_splits and not missing,
        severity=dg.AssetCheckSeverity.ERROR if coverage.empty_splits else dg.AssetCheckSeverity.WARN,
        metadata={
            **{f"{name}_records": size for name, size in coverage.sizes.items()},
            "empty_splits": _examples(coverage.empty_splits),
            "train_classes_missing_from_val": _examples(missing),
        },
    )


def split_disjointness_result(
    artifacts: PartitionArtifacts, store: RecordStore | None = None
) -> dg.AssetCheckResult:
    overlaps = quality.split_overlaps(_store(artifacts, store).index, read_splits(artifacts.splits))
    return _result(
        SPLITS_DISJOINT,
        passed=overlaps.disjoint,
        metadata={
            "records_in_several_splits": len(overlaps.records),
            "patients_in_several_splits": len(overlaps.patients),
            "patients_known": overlaps.patients_known,
            "record_examples": _examples(f"{key} in {'+'.join(names)}" for key, names in overlaps.records.items()),
            "patient_examples": _examples(f"{key} in {'+'.join(names)}" for key, names in overlaps.patients.items()),
        },
    )


def majority_baseline_result(artifacts: PartitionArtifacts) -> dg.AssetCheckResult:
    result = read_test_metrics(artifacts.test_metrics)
    return _result(
        BEATS_MAJORITY,
        passed=result["macro_f1"] > result["majority_class_macro_f1"],
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "macro_f1": result["macro_f1"],
            "majority_class_macro_f1": result["majority_class_macro_f1"],
            "margin": round(result["macro_f1"] - result["majority_class_macro_f1"], 4),
        },
    )


# One op per checked asset; blocking checks that fail stop the rest of the run.


@dg.multi_asset_check(specs=[FINITE_SIGNALS, LABELS_MATCH, FAILED_SHARE], name="processed_records_checks")
def processed_records_checks(
    context: dg.AssetCheckExecutionContext, config: FailedShareConfig, paths: EcgPathsResource
) -> Iterator[dg.AssetCheckResult]:
    artifacts = paths.artifacts(context.partition_key)
    smoke_test = _latest_materialization_metadata(context, processed_records.key).get("smoke_test")
    store = RecordStore(artifacts.processed)  # once for the three checks
    yield finite_signals_result(artifacts, store)
    yield labels_match_result(artifacts, bool(smoke_test and smoke_test.value), store)
    yield failed_share_result(artifacts, config.max_failed_share, store)


@dg.multi_asset_check(specs=[SPLITS_USABLE, SPLITS_DISJOINT], name="splits_checks")
def splits_checks(context: dg.AssetCheckExecutionContext, paths: EcgPathsResource) -> Iterator[dg.AssetCheckResult]:
    artifacts = paths.artifacts(context.partition_key)
    store = RecordStore(artifacts.processed)  # once for both checks
    yield split_usability_result(artifacts, store)
    yield split_disjointness_result(artifacts, store)


@dg.multi_asset_check(specs=[BEATS_MAJORITY], name="test_metrics_checks")
def evaluation_checks(context: dg.AssetCheckExecutionContext, paths: EcgPathsResource) -> Iterator[dg.AssetCheckResult]:
    yield majority_baseline_result(paths.artifacts(context.partition_key))


ecg_checks = [processed_records_checks, splits_checks, evaluation_checks]
