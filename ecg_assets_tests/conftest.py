"""Shared fixtures. Every dataset used here is generated; real recordings come from ../shared/data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import wfdb

from ecg_assets.core.atomic_io import atomic_write_text
from ecg_assets.core.demo import ensure_demo_dataset
from ecg_assets.core.locks import exclusive_lock
from ecg_assets.defs.partitions import DATASETS
from ecg_assets.defs.resources import EcgPathsResource, TorchDeviceResource
from ecg_assets.defs.tracking import ExperimentTrackingResource

PROJECT_ROOT = Path(__file__).resolve().parent.parent
XDIST_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)  # pytest-xdist sets it in each worker
SHARED_DATA = (PROJECT_ROOT.parent / "shared" / "data").resolve()
DAGSTER = str(Path(sys.executable).with_name("dagster"))
ECG_ASSETS = str(Path(sys.executable).with_name("ecg-assets"))

# The smallest training the pipeline tests need. Every knob a test relies on is spelt out, so the
# tests keep their cost and meaning when `TrainingConfig`'s defaults grow into a heavier recipe.
TINY_TRAINING = {"epochs": 1, "batch_size": 16, "base_channels": 8, "stem_stride": 4, "ensemble_members": 1}


def tiny_training(**overrides) -> dict:
    """`TINY_TRAINING` with `overrides` (e.g. `epochs=2`): a `trained_model` / `pooled_model` op config."""
    return {**TINY_TRAINING, **overrides}


def tiny_run_config(**overrides) -> dict:
    """Run config training `trained_model` with `tiny_training(**overrides)`."""
    return {"ops": {"trained_model": {"config": tiny_training(**overrides)}}}


if XDIST_WORKERS > 1:
    # Parallel workers share the cores: one torch thread each, in the worker and in every process it starts
    # (bitwise comparisons between a test process and its subprocesses then run with the same thread count).
    THREADS_PER_WORKER = str(max(1, (os.cpu_count() or 1) // XDIST_WORKERS))
    os.environ["OMP_NUM_THREADS"] = THREADS_PER_WORKER
    import torch

    torch.set_num_threads(int(THREADS_PER_WORKER))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`--dist loadfile --no-loadscope-reorder`, setup.cfg) each module runs on one worker,
    in the order of this list: modules with the most `slow` tests first, so the long ones start at once and the
    quick ones fill the gaps at the end. Module order never matters to a test; the order inside one is kept."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    ordered = sorted(modules.values(), key=lambda tests: -sum(bool(test.get_closest_marker("slow")) for test in tests))
    items[:] = [item for tests in ordered for item in tests]


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both synthetic demo datasets, generated once per test session."""
    root = tmp_path_factory.mktemp("demo_data")
    for name in ("demo_cinc2017", "demo_cinc2021"):
        ensure_demo_dataset(root, name)
    return root


@pytest.fixture
def shared_data() -> Path:
    """The real recordings folder; tests using it skip with the reason when it is absent."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"real ECG data not found at {SHARED_DATA} (a fresh clone does not have it; CI does)")
    return SHARED_DATA


def cpu_resources(artifacts_dir: Path, processes_per_node: int = 1) -> dict:
    """Every resource the assets need, on the CPU, writing under `artifacts_dir` (the demo datasets)."""
    return {
        "paths": EcgPathsResource(artifacts_dir=str(artifacts_dir)),
        "gpu": TorchDeviceResource(device="cpu", processes_per_node=processes_per_node),
        "pipes_subprocess_client": dg.PipesSubprocessClient(),
        "tracking": ExperimentTrackingResource(),  # off: nothing imports mlflow
    }


def register_partitions(instance: dg.DagsterInstance, *keys: str) -> dg.DagsterInstance:
    """Register dataset partition keys in `instance` (the partitions are dynamic: unknown keys are refused)."""
    missing = [key for key in keys if not instance.has_dynamic_partition(DATASETS, key)]
    if missing:
        instance.add_dynamic_partitions(DATASETS, missing)
    return instance


def materialize_partition(
    assets, partition_key: str, instance: dg.DagsterInstance | None = None, **kwargs
) -> dg.ExecuteInProcessResult:
    """`dg.materialize` of one dataset partition, its key registered first in `instance` (ephemeral unless given)."""
    instance = register_partitions(instance or dg.DagsterInstance.ephemeral(), partition_key)
    return dg.materialize(assets, partition_key=partition_key, instance=instance, **kwargs)


def write_wfdb_record(
    folder: Path,
    name: str,
    signal_mv: np.ndarray,
    fs: float,
    lead_names: list[str],
    fmt: str = "16",
    comments: list[str] | None = None,
) -> Path:
    """Write `signal_mv` (`[n_leads, n]`) as a WFDB record (.hea + .dat); returns the header path."""
    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        name,
        fs=fs,
        units=["mV"] * len(lead_names),
        sig_name=lead_names,
        p_signal=np.ascontiguousarray(signal_mv.T, dtype=np.float64),
        fmt=[fmt] * len(lead_names),
        adc_gain=[200.0] * len(lead_names),
        baseline=[0] * len(lead_names),
        comments=comments or [],
        write_dir=str(folder),
    )
    return folder / f"{name}.hea"


def sine_leads(n_leads: int, n_samples: int, fs: float, seed: int = 0) -> np.ndarray:
    """A smooth multi-lead test signal in mV."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / fs
    return np.stack([np.sin(2 * np.pi * (1 + lead) * t) + 0.05 * rng.normal(size=n_samples) for lead in range(n_leads)])


# --- pipelines materialized once per session through the real CLIs, then only read ----------------

QUICK_START_PARTITION = "demo_cinc2021"
QUICK_START_RUN_CONFIG = tiny_run_config(epochs=2)  # two epochs: the progress lines count 1/2 before 2/2
CLI_CHAIN_PARTITION = "demo_cinc2017"
# Four epochs: test_faults kills a twin of this run after epoch 1 and needs the kill to land while it trains.
CLI_CHAIN_RUN_CONFIG = tiny_run_config(epochs=4)


def cli_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment of a fresh shell: a new DAGSTER_HOME (holding dagster.yaml) and artifacts under `root`."""
    home = root / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    unset = ("ECG_DATA_DIR", "ECG_ARTIFACTS_DIR", "DAGSTER_HOME", "ECG_TRACKING", "ECG_MLFLOW_TRACKING_URI")
    env = {key: value for key, value in os.environ.items() if key not in unset}
    return {**env, "DAGSTER_HOME": str(home), "ECG_ARTIFACTS_DIR": str(root / "artifacts"), **extra}


def run_cli(args: list[str], env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a CLI command from the project root; fail the test with its output unless it exits 0."""
    result = subprocess.run(args, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build) -> dict:
    """`build(root)`'s JSON result, built once per test run even across pytest-xdist workers: the first worker
    to ask builds it under a lock in the run's shared temporary folder, the others wait for it and read it."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # <basetemp>/popen-gwN -> <basetemp>, shared by this run's workers only
    root, result = base / name, base / name / "fixture.json"
    with exclusive_lock(base / f"{name}.lock", f"the {name} fixture", timeout_s=3600):
        if not result.is_file():  # a worker whose build failed left no result: build again, from scratch
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            atomic_write_text(result, json.dumps(build(root)))
    return json.loads(result.read_text())


@pytest.fixture(scope="session")
def quick_start(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The README's quick start, run once: `ecg-assets materialize -p demo_cinc2021` (tiny training) in a fresh
    DAGSTER_HOME. Its output is checked by test_progress; test_ui_browser serves the instance (and is the one
    module that adds to it: runs, sensor state, a partition; never what test_progress reads)."""

    def build(root: Path) -> dict:
        env = cli_env(root)
        command = [ECG_ASSETS, "materialize", "-p", QUICK_START_PARTITION]
        result = run_cli([*command, "--config-json", json.dumps(QUICK_START_RUN_CONFIG)], env)
        return {"root": str(root), "env": env, "stdout": result.stdout, "stderr": result.stderr}

    built = built_once(tmp_path_factory, "quick_start", build)
    return {**built, "root": Path(built["root"])}


@pytest.fixture(scope="session")
def cli_chain(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The README's `dagster asset materialize --select '*test_metrics' --partition demo_cinc2017`, run once in a
    fresh DAGSTER_HOME: test_cli checks what it persisted, test_faults compares a killed-and-resumed twin to it.
    Read-only for both."""

    def build(root: Path) -> dict:
        env = cli_env(root)
        command = [DAGSTER, "asset", "materialize", "--select", "*test_metrics", "--partition", CLI_CHAIN_PARTITION]
        run_cli([*command, "-m", "ecg_assets.definitions", "--config-json", json.dumps(CLI_CHAIN_RUN_CONFIG)], env)
        return {"root": str(root), "env": env}

    built = built_once(tmp_path_factory, "cli_chain", build)
    return {**built, "root": Path(built["root"])}
