"""Shared fixtures. Every dataset used here is generated; real recordings come from ../shared/data."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import wfdb

from ecg_assets.core.demo import ensure_demo_dataset
from ecg_assets.defs.partitions import DATASETS
from ecg_assets.defs.resources import EcgPathsResource, TorchDeviceResource
from ecg_assets.defs.tracking import ExperimentTrackingResource

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = (PROJECT_ROOT.parent / "shared" / "data").resolve()


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
