"""`ecg-assets summary`: what each partition holds, from whatever is on disk (the end-to-end run with a real
chain is in test_progress.py: the summary `ecg-assets materialize` prints)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from ecg_assets.cli import main
from ecg_assets.cli.summary import metric_interval, summarize, summarize_partition
from ecg_assets.core.artifacts import PartitionArtifacts
from ecg_assets.core.settings import Settings


def _write_label_mapping(artifacts: PartitionArtifacts, labels: list[str]) -> None:
    artifacts.root.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame({"record_id": [f"r{i}" for i in range(len(labels))], "mapped_label": labels})
    table.to_csv(artifacts.label_mapping, index=False)


def _write_test_metrics(artifacts: PartitionArtifacts, **extra) -> None:
    payload = {"macro_f1": 0.81234, "n_samples": 290, **extra}
    artifacts.test_metrics.write_text(json.dumps(payload))


def test_a_partition_with_nothing_materialized_names_the_command_that_fills_it(tmp_path):
    text = "\n".join(summarize_partition(tmp_path, "cinc2017").lines())
    assert text == "cinc2017\n  nothing materialized yet: ecg-assets materialize -p cinc2017"


def test_a_partly_materialized_partition_says_what_is_missing(tmp_path):
    artifacts = PartitionArtifacts(tmp_path, "cinc2017")
    _write_label_mapping(artifacts, ["NORM", "", "AF", ""])
    lines = summarize_partition(tmp_path, "cinc2017").lines()
    assert lines[1] == "  records     4 discovered, ? processed, ? failed, 2 excluded"
    assert lines[2:5] == ["  splits      not materialized", "  model       not trained", "  test        not evaluated"]
    assert f"    label mapping   {artifacts.label_mapping}" in lines
    assert f"    test metrics    {artifacts.test_metrics}  (missing)" in lines


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"intervals": {"macro_f1": [0.7, 0.9], "confidence": 0.9}}, {"low": 0.7, "high": 0.9, "level": 0.9}),
        ({"macro_f1_ci": [0.7, 0.9]}, {"low": 0.7, "high": 0.9, "level": 0.95}),
        ({"macro_f1_ci": {"low": 0.7, "high": 0.9, "level": 0.9}}, {"low": 0.7, "high": 0.9, "level": 0.9}),
        ({"macro_f1_ci": {"lower": 0.7, "upper": 0.9, "level": 95}}, {"low": 0.7, "high": 0.9, "level": 0.95}),
        ({"macro_f1_ci_low": 0.7, "macro_f1_ci_high": 0.9}, {"low": 0.7, "high": 0.9, "level": 0.95}),
        ({}, None),
        ({"macro_f1_ci": [0.7, math.nan]}, None),
        ({"macro_f1_ci": "wide"}, None),
    ],
)
def test_the_test_interval_is_read_in_any_plain_form(fields, expected):
    assert metric_interval({"macro_f1": 0.8, **fields}, "macro_f1") == expected


def test_test_macro_f1_is_shown_with_its_interval_or_says_there_is_none(tmp_path):
    artifacts = PartitionArtifacts(tmp_path, "cinc2017")
    artifacts.root.mkdir(parents=True)
    _write_test_metrics(artifacts)
    assert (
        "  test        macro F1 0.8123 (no interval) on 290 records"
        in summarize_partition(tmp_path, "cinc2017").lines()
    )
    _write_test_metrics(artifacts, macro_f1_ci=[0.7766, 0.8431])
    line = "  test        macro F1 0.8123 (95% interval 0.7766-0.8431) on 290 records"
    assert line in summarize_partition(tmp_path, "cinc2017").lines()


def test_an_ensemble_shows_its_members_and_its_cross_validated_estimate(tmp_path):
    artifacts = PartitionArtifacts(tmp_path, "cinc2017")
    artifacts.root.mkdir(parents=True)
    members = [{"member": n, "best_val_macro_f1": f1, "epochs": []} for n, f1 in ((1, 0.7), (2, 0.8))]
    estimate = {"macro_f1": 0.77, "n_samples": 2611, "intervals": {"macro_f1": [0.75, 0.79], "confidence": 0.95}}
    log = {"config": {"epochs": 40}, "members": members, "cross_validation": estimate, "epochs": [{"epoch": 1}]}
    artifacts.training_log.write_text(json.dumps(log))
    lines = summarize_partition(tmp_path, "cinc2017").lines()
    assert "  model       ensemble of 2 members, parameters unknown each, up to 40 epochs, " in lines[3]
    assert lines[3].endswith("mean best validation macro F1 0.7500")
    assert lines[4] == "              cross-validated macro F1 0.7700 (95% interval 0.7500-0.7900)"


def test_an_unreadable_artifact_is_a_note_not_a_crash(tmp_path):
    artifacts = PartitionArtifacts(tmp_path, "cinc2017")
    artifacts.root.mkdir(parents=True)
    artifacts.training_log.write_text("{not json")
    _write_test_metrics(artifacts)
    lines = summarize_partition(tmp_path, "cinc2017").lines()
    assert "  model       not trained" in lines
    assert any(line.startswith("  note        model unreadable: ") for line in lines)


def test_partitions_materialized_under_other_settings_are_listed_too(tmp_path):
    _write_label_mapping(PartitionArtifacts(tmp_path, "ptbxl"), ["NORM"])
    (tmp_path / "logs").mkdir()
    text = summarize(Settings(artifacts_dir=tmp_path))
    assert [line for line in text.splitlines() if line and not line.startswith(" ")][:3] == [
        "demo_cinc2017",
        "demo_cinc2021",
        "ptbxl",
    ]
    assert "logs\n" not in text


def test_ecg_assets_summary_prints_the_chosen_partition(tmp_path, monkeypatch, capsys):
    _write_label_mapping(PartitionArtifacts(tmp_path / "artifacts", "demo_cinc2021"), ["NORM", "AF"])
    monkeypatch.setenv("ECG_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ECG_DATA_DIR", raising=False)
    assert main.main(["summary", "-p", "demo_cinc2021"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("demo_cinc2021\n  records     2 discovered, ? processed, ? failed, 0 excluded\n")
    assert "demo_cinc2017" not in out and f"pipeline log: {tmp_path / 'artifacts' / 'logs' / 'pipeline.log'}" in out


def _write_across_datasets(root) -> None:
    """What a pooled_and_matrix run leaves: the pooled model's log, plan and lead-set scores, and the matrix."""
    from ecg_assets.core.artifacts import GeneralisationArtifacts, PooledArtifacts

    pooled, matrix = PooledArtifacts(root), GeneralisationArtifacts(root)
    pooled.root.mkdir(parents=True)
    matrix.root.mkdir(parents=True)
    epochs = [{"epoch": 1, "val_macro_f1": 0.4}, {"epoch": 2, "val_macro_f1": 0.55}]
    log = {"config": {"epochs": 2}, "epochs": epochs, "best_val_macro_f1": 0.55, "best_epoch": 2, "parameters": 1234}
    pooled.training_log.write_text(json.dumps(log))
    pooled.plan.write_text(json.dumps({"datasets": ["demo_cinc2017", "demo_cinc2021"]}))
    lead_sets = [
        {"dataset": "demo_cinc2017", "lead_set": "as recorded", "records": 30, "macro_f1": 0.61},
        {"dataset": "demo_cinc2021", "lead_set": "as recorded", "records": 20, "macro_f1": 0.52},
        {"dataset": "demo_cinc2021", "lead_set": "lead I only", "records": 20, "macro_f1": 0.31},
    ]
    pooled.lead_sets.write_text(json.dumps(lead_sets))
    cells = [{"status": "scored", "leaked_records": 0}] * 5 + [{"status": "gap", "leaked_records": 0}]
    matrix.matrix_json.write_text(json.dumps({"cells": cells}))


@pytest.mark.parametrize("across_succeeds", [True, False])
def test_materialize_prints_the_summary_and_the_next_command_after_every_run_the_across_one_included(
    tmp_path, monkeypatch, capsys, across_succeeds
):
    """Without -p the pooled_and_matrix run comes last; the summary (which then covers the pooled model and the
    matrix, and says how that run went) and the next command come after it."""
    artifacts = tmp_path / "artifacts"

    def run(command, env, verbose=False):
        job = command[command.index("--job") + 1]
        print(f"RUN {job}")
        if job == "pooled_and_matrix" and across_succeeds:
            _write_across_datasets(artifacts)
        return 0 if across_succeeds or job != "pooled_and_matrix" else 1

    monkeypatch.setattr(main, "run_dagster", run)
    monkeypatch.setenv("ECG_ARTIFACTS_DIR", str(artifacts))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ECG_DATA_DIR", raising=False)  # the demo's two partitions
    assert main.main(["materialize"]) == (0 if across_succeeds else 1)
    lines = capsys.readouterr().out.rstrip().splitlines()

    runs = [number for number, line in enumerate(lines) if line.startswith("RUN ")]
    assert [lines[number] for number in runs] == ["RUN ecg_pipeline", "RUN ecg_pipeline", "RUN pooled_and_matrix"]
    after = lines[runs[-1] + 1 :]
    assert after[-1].startswith("next: ecg-assets ui")
    assert "demo_cinc2017" in after and "demo_cinc2021" in after  # the partitions' summaries come after it
    assert "across datasets" in after
    text = "\n".join(after)
    if across_succeeds:
        assert "==> pooled_and_matrix run succeeded" in after
        assert "  pooled      trained on demo_cinc2017, demo_cinc2021" in after
        assert "              1,234 parameters, 2/2 epochs, best validation macro F1 0.5500 (epoch 2)" in after
        scores = "demo_cinc2017 0.6100 (30 records), demo_cinc2021 0.5200 (20 records)"
        assert f"              test macro F1 {scores}" in after
        assert "  matrix      5 of 6 cells scored, 1 gaps, 0 with leaked test records" in after
    else:
        assert "==> pooled_and_matrix run FAILED" in text
        assert "  pooled      not trained" in after and "  matrix      not built" in after


def test_materialize_of_chosen_partitions_has_no_across_dataset_summary(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(main, "run_dagster", lambda command, env, verbose=False: 0)
    monkeypatch.setenv("ECG_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ECG_DATA_DIR", raising=False)
    assert main.main(["materialize", "-p", "demo_cinc2017"]) == 0
    out = capsys.readouterr().out
    assert "pooled_and_matrix" not in out and "across datasets" not in out
    assert out.rstrip().splitlines()[-1].startswith("next: ecg-assets ui")
