import json

import dagster as dg
import numpy as np
import pytest

from ecg_assets.core.demo import MARKER_FILE
from ecg_assets.definitions import defs
from ecg_assets.defs.assets import ecg_assets, trained_model
from ecg_assets.defs.partitions import dataset_partitions
from ecg_assets.defs.resources import EcgPathsResource, TorchDeviceResource

from .conftest import cpu_resources, materialize_partition, tiny_training

FAST_TRAINING = tiny_training()


def test_definitions_load_with_the_assets_and_the_pipeline_job():
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    chain = {"label_mapping", "processed_records", "splits", "trained_model", "test_metrics"}
    assert keys == chain | {"pooled_model", "generalisation_matrix"}
    assert defs.resolve_job_def("ecg_pipeline") is not None and defs.resolve_job_def("pooled_and_matrix") is not None


def test_all_assets_share_one_partitions_definition_and_form_a_chain():
    assert all(asset.partitions_def is dataset_partitions for asset in ecg_assets)
    assert isinstance(dataset_partitions, dg.DynamicPartitionsDefinition) and dataset_partitions.name == "datasets"
    graph = defs.resolve_asset_graph()
    chain = ["label_mapping", "processed_records", "splits", "trained_model", "test_metrics"]
    for upstream, downstream in zip(chain, chain[1:]):
        parents = {key.to_user_string() for key in graph.get(dg.AssetKey(downstream)).parent_keys}
        # splits reads label_mapping.csv too (PTB-XL strat_fold), and says so
        assert parents == ({upstream, "label_mapping"} if downstream == "splits" else {upstream})


def test_training_asset_uses_gpu_resource_pool_and_k8s_tags():
    assert "gpu" in trained_model.required_resource_keys
    assert trained_model.op.pool == "gpu"
    assert "pytorch" in trained_model.specs_by_key[dg.AssetKey("trained_model")].kinds
    k8s_config = json.loads(trained_model.op.tags["dagster-k8s/config"])  # op tags are stored as JSON
    limits = k8s_config["container_config"]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"


def test_device_resolution_falls_back_to_cpu_once_and_is_shared_with_predict(monkeypatch, caplog):
    import torch

    from ecg_assets.core import devices, inference

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_warned_cpu_fallback", False)
    with caplog.at_level("WARNING", logger="ecg_assets.core.devices"):
        settings = [TorchDeviceResource(device="auto").device_settings() for _ in range(3)]
    assert [setting.device.type for setting in settings] == ["cpu"] * 3
    assert settings[0] == devices.resolve_device("cpu")  # same settings as asking for the CPU
    (warning,) = [record.getMessage() for record in caplog.records]  # once per process, not once per step
    assert "resources.gpu.config.device" in warning
    with pytest.raises(RuntimeError, match="device='cuda' was requested"):
        TorchDeviceResource(device="cuda").device_settings()
    assert inference.resolve_device is devices.resolve_device  # predict resolves --device the same way

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    cuda = TorchDeviceResource(device="auto").device_settings()
    assert (cuda.device.type, cuda.amp_dtype, cuda.pin_memory, cuda.prefetch_batches, cuda.compile) == (
        "cuda",
        torch.bfloat16,
        True,
        2,
        True,
    )
    assert TorchDeviceResource(device="cpu").device_settings() == devices.resolve_device("cpu")
    assert TorchDeviceResource(device="cpu").device_settings().amp_dtype is None


@pytest.mark.slow
def test_demo_partition_materializes_end_to_end(tmp_path):
    result = materialize_partition(
        ecg_assets,
        partition_key="demo_cinc2021",
        resources=cpu_resources(tmp_path),
        run_config={"ops": {"trained_model": {"config": FAST_TRAINING}}},
    )
    assert result.success
    root = tmp_path / "demo_cinc2021"
    assert (tmp_path / "demo_data" / "demo_cinc2021" / MARKER_FILE).is_file()
    for relative in (
        "label_mapping.csv",
        "processed/splits.json",
        "processed/label_map.json",
        "processed/labels.npy",
        "processed/failures.csv",
        "models/best.pth",
        "models/latest.pth",
        "training_log.json",
        "test_metrics.json",
        "figures/training_history.png",
        "figures/test_f1_scores.png",
    ):
        assert (root / relative).is_file(), relative
    assert (tmp_path / "logs" / "pipeline.log").read_text().count("[demo_cinc2021]") > 5

    processed = result.asset_materializations_for_node("processed_records")[0].metadata
    assert processed["discovered"].value == 200 and processed["failed"].value == 1
    assert processed["processed"].value == 199
    assert "SYNTHETIC" in processed["dataset"].value
    labels = np.load(root / "processed" / "labels.npy")
    assert len(labels) == 199

    metrics = result.asset_materializations_for_node("test_metrics")[0].metadata
    assert 0.0 <= metrics["macro_f1"].value <= 1.0
    saved = json.loads((root / "test_metrics.json").read_text())
    assert saved["macro_f1"] == pytest.approx(metrics["macro_f1"].value, abs=1e-4) and len(saved["classes"]) == 5


def test_smoke_test_processes_ten_records(tmp_path):
    resources = {"paths": EcgPathsResource(artifacts_dir=str(tmp_path))}
    result = materialize_partition(
        ecg_assets[:2],
        partition_key="demo_cinc2017",
        resources=resources,
        run_config={"ops": {"processed_records": {"config": {"smoke_test": True}}}},
    )
    metadata = result.asset_materializations_for_node("processed_records")[0].metadata
    assert metadata["discovered"].value == 10 and metadata["processed"].value == 10


@pytest.mark.slow
def test_a_cross_validated_ensemble_is_one_asset_with_metadata_per_member(tmp_path):
    training = tiny_training(ensemble_members=3)
    result = materialize_partition(
        ecg_assets,
        partition_key="demo_cinc2021",
        resources=cpu_resources(tmp_path),
        run_config={"ops": {"trained_model": {"config": training}}},
    )
    assert result.success
    model = result.asset_materializations_for_node("trained_model")[0].metadata
    assert model["members"].value == 3 and "member" in model["ensemble_members"].value
    assert "out-of-fold records" in model["cv_estimate"].value
    splits = json.loads((tmp_path / "demo_cinc2021" / "processed" / "splits.json").read_text())
    assert model["cv_records"].value == len(splits["train"]) + len(splits["val"])
    metrics = json.loads((tmp_path / "demo_cinc2021" / "test_metrics.json").read_text())
    assert metrics["ensemble_members"] == 3 and metrics["n_samples"] == len(splits["test"])
