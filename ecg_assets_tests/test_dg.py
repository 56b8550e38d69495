"""`dg` (dagster-dg-cli), as pyproject.toml's `[tool.dg]` promises: list, check and launch the project's definitions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from .conftest import PROJECT_ROOT

DG = str(Path(sys.executable).with_name("dg"))


def _env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if k not in ("ECG_DATA_DIR", "ECG_TRACKING")}
    return {**env, "DAGSTER_HOME": str(home), "ECG_ARTIFACTS_DIR": str(tmp_path / "artifacts")}


def _start(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [DG, *args], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(process: subprocess.Popen) -> str:
    """`process`'s standard output, once it exited 0 (else the test fails with its output)."""
    try:
        stdout, stderr = process.communicate(timeout=1800)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return stdout


def _dg(*args: str, env: dict[str, str]) -> str:
    return _finish(_start(*args, env=env))


@pytest.mark.slow
def test_dg_lists_checks_and_launches_the_project_definitions(tmp_path):
    env = _env(tmp_path)
    # `list` and `check` only read the definitions: they load them side by side (each registers the demo
    # partitions in its DAGSTER_HOME at load, so `check` gets an instance of its own)
    (tmp_path / "check").mkdir()
    listing, checking = _start("list", "defs", "--json", env=env), _start("check", "defs", env=_env(tmp_path / "check"))
    listed = json.loads(_finish(listing))
    assert [asset["asset_key"] for asset in listed["assets"]] == [
        "generalisation_matrix",
        "label_mapping",
        "pooled_model",
        "processed_records",
        "splits",
        "test_metrics",
        "trained_model",
    ]
    assert {job["name"] for job in listed["jobs"]} >= {"ecg_pipeline", "retrain_and_evaluate"}
    assert {check["name"] for check in listed["asset_checks"]} >= {"processed_records_are_finite", "splits_are_usable"}
    assert {resource["name"] for resource in listed["resources"]} >= {"paths", "gpu", "tracking"}

    assert "All definitions loaded successfully" in _finish(checking)

    _dg("launch", "--assets", "label_mapping", "--partition", "demo_cinc2017", env=env)
    assert (tmp_path / "artifacts" / "demo_cinc2017" / "label_mapping.csv").is_file()
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("label_mapping"))
        assert event is not None and event.dagster_event.partition == "demo_cinc2017"
