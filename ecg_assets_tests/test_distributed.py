"""Training on several processes: torchrun + DistributedDataParallel on the CPU (gloo), and the
`trained_model` asset launching it through Dagster Pipes."""

import json
import os
import subprocess

import dagster as dg
import numpy as np
import pytest
import torch

from ecg_assets.core.checkpoints import file_sha256, load_checkpoint
from ecg_assets.core.data import StoreBatches
from ecg_assets.core.ddp import Ranks
from ecg_assets.core.store import RecordStore, RecordStoreWriter
from ecg_assets.core.training import DeviceSettings, TrainingConfig, train_model
from ecg_assets.defs.assets import ecg_assets
from ecg_assets.defs.resources import TorchDeviceResource
from ecg_assets.defs.torchrun import torchrun_command

from .conftest import PROJECT_ROOT, cpu_resources, materialize_partition

CPU = DeviceSettings(device=torch.device("cpu"))
RUNNER = "ecg_assets_tests.torchrun_training"
CONFIG = TrainingConfig(epochs=3, batch_size=8, base_channels=8)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """46 records of three separable classes; every other one has a longer 2-lead window (random crops)."""
    root = tmp_path_factory.mktemp("distributed")
    rng = np.random.default_rng(0)
    writer = RecordStoreWriter(root / "processed", (12, 1000))
    for i in range(46):
        frequency = 2 + 6 * (i % 3)
        wave = np.sin(2 * np.pi * frequency * np.arange(1000) / 500.0) + 0.3 * rng.normal(size=1000)
        window = np.tile(np.sin(2 * np.pi * frequency * np.arange(1600) / 500.0), (2, 1)) if i % 2 else None
        row = {"record_id": f"r{i}", "label": ("AF", "NORM", "OTHER")[i % 3], "label_index": (1, 3, 4)[i % 3]}
        writer.append(np.tile(wave, (12, 1)).astype(np.float32), {**row, "lead_mask": "11" + "0" * 10}, window)
    writer.commit()
    # 34 training records: batches of 8, 8, 8, 8 and 2 (too few for 2 ranks × 2 records: left out there).
    splits = {"train": list(range(34)), "val": list(range(34, 40)), "test": list(range(40, 46))}
    (root / "splits.json").write_text(json.dumps(splits))
    return root


def _torchrun(store, processes: int, out, config: TrainingConfig = CONFIG, *extra: str) -> subprocess.CompletedProcess:
    command = torchrun_command(processes, RUNNER)
    arguments = [str(store / "processed"), str(store / "splits.json"), config.model_dump_json(), str(out), *extra]
    return subprocess.run(
        [*command, *arguments],
        cwd=PROJECT_ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _weights(path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model_state"]


def _same(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor], keys=None) -> bool:
    return all(torch.equal(expected[key], got[key]) for key in (keys or expected))


@pytest.fixture(scope="module")
def two_processes(store, tmp_path_factory):
    """An uninterrupted 3-epoch run on 2 CPU processes (gloo)."""
    out = tmp_path_factory.mktemp("two_processes")
    completed = _torchrun(store, 2, out)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return out


def _batch_positions(records, rank: int, world_size: int, weights=None) -> list[list[int]]:
    """Store positions in each batch of `rank` (the labels are the positions themselves)."""
    batches = StoreBatches(
        records,
        np.arange(34),
        np.arange(len(records)),
        8,
        shuffle=True,
        weights=weights,
        generator=torch.Generator().manual_seed(7),
        rank=rank,
        world_size=world_size,
    )
    positions = [sorted(targets.tolist()) for _, targets in batches]
    assert len(positions) == len(batches)
    return positions


def test_every_rank_trains_on_its_own_shard_of_each_global_batch(store):
    records = RecordStore(store / "processed")
    for weights in (None, np.linspace(1, 2, 34)):  # shuffled, and class-balanced sampling
        single = _batch_positions(records, 0, 1, weights)
        first, second = _batch_positions(records, 0, 2, weights), _batch_positions(records, 1, 2, weights)
        assert [len(batch) for batch in single] == [8, 8, 8, 8, 2]
        assert len(first) == len(second) == 4  # the 2-record tail cannot give 2 ranks 2 records each
        for whole, mine, theirs in zip(single, first, second):
            assert len(mine) == len(theirs) == 4 and sorted(mine + theirs) == whole
        if weights is None:  # drawn without replacement, the shards never overlap
            seen = [position for batch in first + second for position in batch]
            assert len(seen) == len(set(seen)) == 32


def test_batch_size_is_the_global_batch_split_evenly():
    assert Ranks(world_size=4).per_rank_batch(32) == 8
    with pytest.raises(ValueError, match="multiple of the 3 training processes"):
        Ranks(world_size=3).per_rank_batch(32)
    with pytest.raises(ValueError, match="at least 2 records per process"):
        Ranks(world_size=4).per_rank_batch(4)


def test_device_settings_travel_to_the_workers_and_bind_one_gpu_per_rank():
    settings = DeviceSettings(torch.device("cuda"), torch.bfloat16, True, True, 2, True)
    assert DeviceSettings.from_json(json.loads(json.dumps(settings.to_json()))) == settings
    assert DeviceSettings.from_json(CPU.to_json()) == CPU
    assert settings.on_rank(Ranks(rank=3, world_size=4, local_rank=1, distributed=True)).device == torch.device(
        "cuda", 1
    )
    assert CPU.on_rank(Ranks(rank=1, world_size=2, local_rank=1, distributed=True)) == CPU


def test_process_count_of_the_device_resource():
    assert TorchDeviceResource(device="cpu").process_count() == 1
    assert TorchDeviceResource(device="cpu", processes_per_node=2).process_count() == 2
    gpus = torch.cuda.device_count()
    assert TorchDeviceResource(device="auto", processes_per_node=0).process_count() == max(gpus, 1)


@pytest.mark.slow
def test_two_cpu_processes_train_with_gloo_and_ddp(two_processes):
    out = two_processes
    assert (out / "models" / "best.pth").is_file() and (out / "models" / "latest.pth").is_file()
    log = json.loads((out / "training_log.json").read_text())
    assert [row["epoch"] for row in log["epochs"]] == [1, 2, 3]
    latest = load_checkpoint(out / "models" / "latest.pth")
    assert latest["finished"] and len(latest["rank_states"]) == 2
    ranks = [torch.load(out / f"rank{rank}.pth", weights_only=True) for rank in (0, 1)]
    assert [result["summary"]["processes"] for result in ranks] == [2, 2]
    untimed = [{key: value for key, value in rank["summary"].items() if key != "wall_seconds"} for rank in ranks]
    assert untimed[0] == untimed[1]  # both ranks followed rank 0's validation (each timed its own run)
    # DDP averaged the gradients: the ranks end with the same parameters (BatchNorm statistics stay per rank).
    parameters = [name for name in latest["model_state"] if "running_" not in name and "num_batches" not in name]
    assert _same(ranks[0]["model_state"], ranks[1]["model_state"], parameters)
    # latest.pth keeps rank 0's raw weights (with an EMA, model_state is their average).
    assert _same(latest.get("training_model_state", latest["model_state"]), ranks[0]["model_state"])


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_to_the_same_weights(store, two_processes, tmp_path):
    killed = _torchrun(store, 2, tmp_path, CONFIG, "--crash-after-epoch", "2")
    assert killed.returncode != 0 and "killed after epoch 2" in killed.stderr
    assert load_checkpoint(tmp_path / "models" / "latest.pth")["epoch"] == 2
    resumed = _torchrun(store, 2, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = torch.load(tmp_path / "rank1.pth", weights_only=True)["summary"]
    assert summary["resumed_from_epoch"] == 2 and summary["epochs_run"] == 3
    assert _same(_weights(two_processes / "models" / "latest.pth"), _weights(tmp_path / "models" / "latest.pth"))


@pytest.mark.slow
def test_one_process_under_torchrun_is_exactly_the_in_process_run(store, tmp_path):
    config = TrainingConfig(epochs=2, batch_size=8, base_channels=8)
    completed = _torchrun(store, 1, tmp_path / "torchrun", config)
    assert completed.returncode == 0, completed.stderr[-3000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the torchrun worker (OMP_NUM_THREADS=1)
    try:
        splits = json.loads((store / "splits.json").read_text())
        reference = train_model(
            RecordStore(store / "processed"), splits, config, CPU, tmp_path / "models", tmp_path / "log.json"
        )
    finally:
        torch.set_num_threads(threads)
    assert _same(_weights(reference.latest_checkpoint), _weights(tmp_path / "torchrun" / "models" / "latest.pth"))
    assert _same(_weights(reference.best_checkpoint), _weights(tmp_path / "torchrun" / "models" / "best.pth"))
    history = json.loads((tmp_path / "torchrun" / "training_log.json").read_text())["epochs"]
    assert [{**row, "seconds": 0} for row in history] == [{**row, "seconds": 0} for row in reference.history]


@pytest.mark.slow
def test_trained_model_asset_launches_torchrun_through_pipes(tmp_path):
    """An ensemble of two members trained on two torchrun processes: the richest path through Pipes."""
    members = 2
    instance = dg.DagsterInstance.ephemeral()
    training = {"epochs": 2, "batch_size": 4, "base_channels": 8, "log_every_batches": 1, "ensemble_members": members}
    result = materialize_partition(
        ecg_assets,
        partition_key="demo_cinc2017",
        resources=cpu_resources(tmp_path, processes_per_node=2),
        run_config={
            "ops": {"processed_records": {"config": {"smoke_test": True}}, "trained_model": {"config": training}}
        },
        instance=instance,
    )
    assert result.success
    metadata = result.asset_materializations_for_node("trained_model")[0].metadata
    checkpoint = tmp_path / "demo_cinc2017" / "models" / "best.pth"
    assert metadata["processes"].value == 2 and metadata["device"].value == "cpu"  # reported by rank 0
    assert metadata["epochs_run"].value == 2 * members and metadata["checkpoint"].value == str(checkpoint)
    assert metadata["members"].value == members and ("cv_estimate" in metadata) == (members > 1)
    assert metadata["checkpoint_sha256"].value == file_sha256(checkpoint)
    assert "data:image/png;base64" in metadata["training_history"].value
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any("2 processes of 2 records per batch" in message for message in messages)
    assert any(message.startswith("epoch 2/2 train_loss") for message in messages)
    pipeline_log = (tmp_path / "logs" / "pipeline.log").read_text()
    assert "[demo_cinc2017] ecg_assets.core.training: epoch 2/2 train_loss" in pipeline_log
    assert result.asset_materializations_for_node("test_metrics")  # the child's checkpoint serves downstream
