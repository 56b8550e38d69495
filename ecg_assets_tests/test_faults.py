"""Faults: SIGKILL mid-write and mid-training, two runs of one partition at once, a full or read-only disk.

Every kill here is a real SIGKILL of a real process (group); the process writes through the
production code, and the test only slows it down or parks it at a chosen point so the kill
lands where intended.
"""

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from ecg_assets.core import atomic_io
from ecg_assets.core import store as store_module
from ecg_assets.core.artifacts import PartitionArtifacts
from ecg_assets.core.atomic_io import StorageError
from ecg_assets.core.checkpoints import save_checkpoint
from ecg_assets.core.datasets import detect_format
from ecg_assets.core.label_mapping import build_label_mapping, write_label_mapping
from ecg_assets.core.locks import LockTimeout, exclusive_lock
from ecg_assets.core.preprocessing import RecordProcessingConfig, process_records
from ecg_assets.core.splits import SplitConfig, assign_splits, write_splits
from ecg_assets.core.store import MANIFEST, RecordStore
from ecg_assets.defs.assets import label_mapping, processed_records
from ecg_assets.defs.resources import EcgPathsResource

from .conftest import (
    CLI_CHAIN_PARTITION,
    CLI_CHAIN_RUN_CONFIG,
    DAGSTER,
    PROJECT_ROOT,
    cli_env,
    materialize_partition,
)

DATASET = CLI_CHAIN_PARTITION
EXPORTS = ("labels.npy", "label_map.json", "failures.csv")
EARLIER_RECORDS = 20  # the previous generation: a smaller materialization of the same dataset


_CHILDREN: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_orphans():
    """Whatever a test started and left running (a failed assertion) is killed with its process group."""
    yield
    while _CHILDREN:
        process = _CHILDREN.pop()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def _start(command: list[str], **kwargs) -> subprocess.Popen:
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, start_new_session=True, **kwargs)
    _CHILDREN.append(process)
    return process


def _wait_for(condition, timeout_s: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if process is not None and process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"process exited with {process.returncode} before {what}:\n{output[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def _kill_group(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def store_content(store_dir: Path) -> dict[str, str]:
    """SHA-256 of what a reader gets from a store and its exports, by content (generation names left out)."""
    store = RecordStore(store_dir)
    manifest = {key: value for key, value in store.manifest.items() if key not in ("generation", "index_file")}
    manifest["shards"] = [shard["count"] for shard in manifest["shards"]]
    manifest["windows_file"] = bool(manifest["windows_file"])
    digests = {MANIFEST: hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()}
    for position, path in enumerate(store.files()[1:]):
        kind = "index" if position == 0 else path.name.split("-")[0] + str(position)
        digests[kind] = hashlib.sha256(path.read_bytes()).hexdigest()
    for name in (*EXPORTS, "splits.json"):
        if (store_dir / name).is_file():
            digests[name] = hashlib.sha256((store_dir / name).read_bytes()).hexdigest()
    return digests


def _with_splits(store_dir: Path) -> dict[str, str]:
    index = RecordStore(store_dir).index
    result = assign_splits(index["label"].tolist(), SplitConfig(), index["patient_id"].tolist())
    write_splits(store_dir / "splits.json", result.positions, index["record_id"].tolist(), SplitConfig(), result.method)
    return store_content(store_dir)


def _leftovers(store_dir: Path) -> list[str]:
    committed = {path.name for path in RecordStore(store_dir).files()} | {*EXPORTS, "splits.json"}
    return sorted(path.name for path in store_dir.iterdir() if path.name not in committed)


@pytest.fixture(scope="module")
def mapping_csv(demo_root, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mapping") / "label_mapping.csv"
    write_label_mapping(build_label_mapping(demo_root / DATASET, DATASET).table, path)
    return path


def _records(mapping_csv: Path, limit: int | None = None):
    from ecg_assets.core.label_mapping import read_label_mapping

    table = read_label_mapping(mapping_csv)
    included = table[table["mapped_label"] != ""]
    return included if limit is None else included.head(limit)


def _process(demo_root: Path, mapping_csv: Path, store_dir: Path, limit: int | None = None):
    folder = demo_root / DATASET
    return process_records(
        folder, detect_format(folder), _records(mapping_csv, limit), store_dir, RecordProcessingConfig(), workers=1
    )


@pytest.fixture(scope="module")
def uninterrupted(demo_root, mapping_csv, tmp_path_factory) -> dict[str, str]:
    """Content of one uninterrupted run over every record (the reference)."""
    store_dir = tmp_path_factory.mktemp("uninterrupted") / "processed"
    _process(demo_root, mapping_csv, store_dir)
    return _with_splits(store_dir)


# A real `process_records` in a child process, parked or slowed at the chosen point, then SIGKILLed.
PROCESS_RECORDS_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from ecg_assets.core import preprocessing, store
    from ecg_assets.core.datasets import detect_format
    from ecg_assets.core.label_mapping import read_label_mapping

    dataset_dir, mapping_csv, store_dir, kill_point, marker = sys.argv[1:]
    dataset_dir, store_dir, marker = Path(dataset_dir), Path(store_dir), Path(marker)

    def park(*args, **kwargs):
        marker.touch()
        time.sleep(3600)

    if kill_point == "mid_shard":  # slow appends; say so once 60 records are in the open shard
        append = store.RecordStoreWriter.append
        def slow_append(self, *args, **kwargs):
            append(self, *args, **kwargs)
            if len(self.rows) == 60:
                marker.touch()
            time.sleep(0.01)
        store.RecordStoreWriter.append = slow_append
    elif kill_point == "before_manifest":  # shards and index complete, manifest not switched
        write_json = store.atomic_write_json
        def park_at_manifest(path, payload):
            return park() if path.name == "manifest.json" else write_json(path, payload)
        store.atomic_write_json = park_at_manifest
    elif kill_point == "after_manifest":  # new generation committed, exports not yet written
        preprocessing.write_failures = park
    table = read_label_mapping(mapping_csv)
    records = table[table["mapped_label"] != ""]
    preprocessing.process_records(
        dataset_dir, detect_format(dataset_dir), records, store_dir, preprocessing.RecordProcessingConfig(), workers=1
    )
    print("finished without being killed")
    """
)


@pytest.mark.parametrize("kill_point", ["mid_shard", "before_manifest", "after_manifest"])
def test_sigkill_during_processed_records_loses_nothing_and_the_rerun_is_identical(
    kill_point, demo_root, mapping_csv, uninterrupted, tmp_path
):
    store_dir = tmp_path / "processed"
    _process(demo_root, mapping_csv, store_dir, limit=EARLIER_RECORDS)
    earlier = _with_splits(store_dir)
    marker = tmp_path / "at_kill_point"
    child = _start(
        [sys.executable, "-c", PROCESS_RECORDS_CHILD, str(demo_root / DATASET), str(mapping_csv), str(store_dir)]
        + [kill_point, str(marker)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _wait_for(marker.exists, 120, f"the child to reach {kill_point}", child)
    _kill_group(child)

    # What a reader sees right after the kill: a whole generation, never a temporary file.
    after_kill = store_content(store_dir)
    reader_files = {path.name for path in RecordStore(store_dir).files()}
    assert not any(atomic_io.is_temp_file(Path(name)) for name in reader_files)
    left = _leftovers(store_dir)
    if kill_point == "mid_shard":
        assert after_kill == earlier, "the previous generation must stay readable, unchanged"
        assert any(name.startswith(".signals-") and name.endswith(".tmp") for name in left), left
    elif kill_point == "before_manifest":
        assert after_kill == earlier
        assert any(name.startswith("signals-") for name in left) and any(name.startswith("index-") for name in left)
    else:  # committed: readers see the new generation; the exports still describe the earlier one
        assert {key: value for key, value in after_kill.items() if key not in (*EXPORTS, "splits.json")} == {
            key: value for key, value in uninterrupted.items() if key not in (*EXPORTS, "splits.json")
        }
        assert len(np.load(store_dir / "labels.npy")) == EARLIER_RECORDS

    _process(demo_root, mapping_csv, store_dir)
    assert _with_splits(store_dir) == uninterrupted
    assert _leftovers(store_dir) == [], "the rerun must remove what the killed run left"


# --- one writer per partition -------------------------------------------------------------------

LOCKED_WRITER_CHILD = textwrap.dedent(
    """
    import logging, sys, time
    from pathlib import Path
    from ecg_assets.core import preprocessing
    from ecg_assets.core.datasets import detect_format
    from ecg_assets.core.label_mapping import read_label_mapping
    from ecg_assets.core.artifacts import PartitionArtifacts
    from ecg_assets.core.locks import partition_lock

    artifacts, dataset_dir, mapping_csv, name, marker, release = sys.argv[1:]
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")
    artifacts = PartitionArtifacts(Path(artifacts), "demo_cinc2017")
    table = read_label_mapping(mapping_csv)
    with partition_lock(artifacts, owner=f"writer {name}"):
        Path(marker).touch()
        while not Path(release).exists():  # hold the lock until the test says so: no race with the other writer
            time.sleep(0.02)
        preprocessing.process_records(
            Path(dataset_dir), detect_format(Path(dataset_dir)), table[table["mapped_label"] != ""],
            artifacts.processed, preprocessing.RecordProcessingConfig(), workers=1,
        )
    print(f"writer {name} done")
    """
)


def _writer(tmp_path: Path, demo_root: Path, mapping_csv: Path, name: str) -> tuple[subprocess.Popen, Path]:
    """A writer that takes the partition lock, touches `tmp_path/name`, and writes once `tmp_path/release` exists."""
    log = tmp_path / f"writer_{name}.log"
    args = [str(tmp_path / "artifacts"), str(demo_root / DATASET), str(mapping_csv), name, str(tmp_path / name)]
    args.append(str(tmp_path / "release"))
    with log.open("w") as output:
        process = _start(
            [sys.executable, "-c", LOCKED_WRITER_CHILD, *args], stdout=output, stderr=subprocess.STDOUT, text=True
        )
    return process, log


def test_two_writers_of_one_partition_take_turns_and_the_second_says_for_whom_it_waited(
    demo_root, mapping_csv, uninterrupted, tmp_path
):
    # Ordered by events, not by time: A holds the lock until B has said it waits, then both write in turn.
    first, first_log = _writer(tmp_path, demo_root, mapping_csv, "A")
    _wait_for((tmp_path / "A").exists, 600, "writer A to hold the partition lock", first)
    second, second_log = _writer(tmp_path, demo_root, mapping_csv, "B")
    _wait_for(lambda: "waiting for the lock" in second_log.read_text(), 600, "writer B to wait", second)
    assert not (tmp_path / "B").exists()  # B cannot hold the lock while A does
    (tmp_path / "release").touch()
    assert first.wait(timeout=600) == 0, first_log.read_text()[-3000:]
    assert second.wait(timeout=600) == 0, second_log.read_text()[-3000:]

    log = second_log.read_text()
    lock_file = tmp_path / "artifacts" / DATASET / ".lock"
    assert f"writer B: waiting for the lock {lock_file}, held by writer A (pid {first.pid} on " in log
    assert f"writer B: acquired the lock {lock_file} after waiting " in log
    assert log.index("acquired the lock") < log.index("stored 195 of 195 records")
    store_dir = tmp_path / "artifacts" / DATASET / "processed"
    assert _with_splits(store_dir) == uninterrupted and _leftovers(store_dir) == []


def test_a_killed_holder_leaves_no_stale_lock_and_waiting_can_time_out(tmp_path):
    lock_file = tmp_path / "partition" / ".lock"
    holder = _start(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from ecg_assets.core.locks import "
            "exclusive_lock\nwith exclusive_lock(Path(sys.argv[1]), 'a holder'):\n    print('held', flush=True)\n"
            "    time.sleep(3600)",
            str(lock_file),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(LockTimeout, match=rf"held by a holder \(pid {holder.pid} on "):
        with exclusive_lock(lock_file, "a second process", timeout_s=0.5):
            pass
    _kill_group(holder)
    with exclusive_lock(lock_file, "after the kill", timeout_s=0):  # free at once: no wait allowed at all
        pass


# --- the real Dagster CLI -------------------------------------------------------------------------

RUN_CONFIG = CLI_CHAIN_RUN_CONFIG  # the `cli_chain` fixture's run: the uninterrupted reference
TRAINING = RUN_CONFIG["ops"]["trained_model"]["config"]
_cli_env = cli_env


def _materialize(env: dict[str, str], selection: str, output: Path) -> subprocess.Popen:
    command = [DAGSTER, "asset", "materialize", "--select", selection, "--partition", DATASET]
    command += ["-m", "ecg_assets.definitions", "--config-json", json.dumps(RUN_CONFIG)]
    with output.open("w") as handle:
        return _start(command, env=env, stdout=handle, stderr=subprocess.STDOUT)


def _finished(process: subprocess.Popen, output: Path, timeout_s: float = 600) -> None:
    assert process.wait(timeout=timeout_s) == 0, output.read_text()[-4000:]


def _epochs(root: Path) -> list[dict]:
    try:
        return json.loads((root / "artifacts" / DATASET / "training_log.json").read_text())["epochs"]
    except (FileNotFoundError, ValueError):
        return []


@pytest.mark.slow
def test_sigkill_during_trained_model_resumes_from_latest_and_ends_like_an_uninterrupted_run(tmp_path, cli_chain):
    import torch

    from ecg_assets.core.checkpoints import load_checkpoint

    killed, reference = tmp_path / "killed", cli_chain["root"]  # reference: the same command, never interrupted
    killed_env = _cli_env(killed)
    first = _materialize(killed_env, "*test_metrics", tmp_path / "first.out")
    _wait_for(lambda: len(_epochs(killed)) >= 1, 600, "epoch 1 of the run to be killed", first)
    _kill_group(first)
    models = killed / "artifacts" / DATASET / "models"
    epoch_at_kill = load_checkpoint(models / "latest.pth")["epoch"]
    assert 1 <= epoch_at_kill < TRAINING["epochs"], "the kill must land while training"
    assert not (killed / "artifacts" / DATASET / "test_metrics.json").exists()

    # The killed run still holds the `gpu` pool slot in the instance: release it, then re-materialize.
    recovery = subprocess.run(
        [sys.executable, "-m", "ecg_assets.recovery"], env=killed_env, capture_output=True, text=True, timeout=120
    )
    assert recovery.returncode == 0 and "marked failed" in recovery.stderr, recovery.stderr
    with dg.DagsterInstance.from_config(killed_env["DAGSTER_HOME"]) as instance:
        (killed_run,) = instance.get_runs()
        assert killed_run.status == dg.DagsterRunStatus.FAILURE
        assert not instance.event_log_storage.get_concurrency_info("gpu").claimed_slots
    resumed = _materialize(killed_env, "trained_model,test_metrics", tmp_path / "resumed.out")
    _finished(resumed, tmp_path / "resumed.out")

    with dg.DagsterInstance.from_config(killed_env["DAGSTER_HOME"]) as instance:
        metadata = instance.get_latest_materialization_event(
            dg.AssetKey("trained_model")
        ).asset_materialization.metadata
    assert metadata["resumed_from_epoch"].value == epoch_at_kill
    assert metadata["epochs_run"].value == TRAINING["epochs"]
    log = (killed / "artifacts" / "logs" / "pipeline.log").read_text()
    after_resume = log[log.index(f"resuming from latest.pth after epoch {epoch_at_kill}") :]
    assert f"epoch {epoch_at_kill + 1}/{TRAINING['epochs']} " in after_resume  # the counter continues ...
    assert f"epoch {epoch_at_kill}/{TRAINING['epochs']} " not in after_resume  # ... and nothing is redone

    def without_timings(epochs: list[dict]) -> list[dict]:
        return [{key: value for key, value in epoch.items() if key != "seconds"} for epoch in epochs]

    assert without_timings(_epochs(killed)) == without_timings(_epochs(reference))
    for name in ("latest.pth", "best.pth"):
        got, expected = (
            load_checkpoint(root / "artifacts" / DATASET / "models" / name) for root in (killed, reference)
        )
        assert got["epoch"] == expected["epoch"], name
        assert all(torch.equal(got["model_state"][key], value) for key, value in expected["model_state"].items()), name
    metrics = [
        json.loads((root / "artifacts" / DATASET / "test_metrics.json").read_text()) for root in (killed, reference)
    ]
    for result in metrics:  # the file's path and hash differ (the history inside holds wall-clock seconds)
        del result["checkpoint"], result["checkpoint_sha256"]
    assert metrics[0] == metrics[1]


@pytest.mark.slow
def test_a_run_waits_for_the_partition_lock_and_logs_who_held_it(tmp_path):
    env = _cli_env(tmp_path)
    artifacts = PartitionArtifacts(tmp_path / "artifacts", DATASET)
    pipeline_log = tmp_path / "artifacts" / "logs" / "pipeline.log"
    with exclusive_lock(artifacts.lock_file, "the test's other run"):
        run = _materialize(env, "label_mapping", tmp_path / "run.out")
        _wait_for(
            lambda: pipeline_log.is_file() and "waiting for the lock" in pipeline_log.read_text(),
            300,
            "the run to wait for the lock",
            run,
        )
        time.sleep(1)
        assert run.poll() is None, "the run must wait while the lock is held"
    _finished(run, tmp_path / "run.out")

    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        (record,) = instance.get_runs()
        messages = [entry.user_message for entry in instance.all_logs(record.run_id)]
    waiting = next(message for message in messages if "waiting for the lock" in message)
    owner = f"run {record.run_id} (label_mapping)"
    assert waiting.startswith(f"{owner}: waiting for the lock {artifacts.lock_file}, held by the test's other run ")
    assert f"(pid {os.getpid()} on " in waiting
    acquired = next(message for message in messages if "acquired the lock" in message)
    assert float(acquired.rsplit("after waiting ", 1)[1].split(" s ")[0]) >= 1.0
    assert waiting in pipeline_log.read_text()


# --- a full or read-only disk -----------------------------------------------------------------------


class _InjectedDisk:
    """Writes through `atomic_io.open_new_file` fail once `size` bytes were written (ENOSPC), or all (EROFS)."""

    def __init__(self, root: Path, size: int, monkeypatch: pytest.MonkeyPatch):
        self.root, self.free, self.read_only = root, size, False
        root.mkdir()
        for module in (atomic_io, store_module):
            monkeypatch.setattr(module, "open_new_file", self.open_new_file)

    def open_new_file(self, path: Path):
        if self.read_only:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return _BudgetedFile(path.open("xb"), self)

    def make_read_only(self) -> None:
        self.read_only = True


class _BudgetedFile:
    def __init__(self, handle, disk: _InjectedDisk):
        self.handle, self.disk = handle, disk

    def write(self, data) -> int:
        if len(data) > self.disk.free:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.disk.free -= len(data)
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.handle.close()


class _Tmpfs:
    """A real tmpfs of `size` bytes (needs root with CAP_SYS_ADMIN; works for root, who ignores permissions)."""

    def __init__(self, root: Path, size: int):
        self.root = root
        root.mkdir()
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(root)], capture_output=True
        )
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); the injected variant runs")

    def make_read_only(self) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(self.root)], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.root)], check=False)


@pytest.fixture
def make_disk(tmp_path, monkeypatch):
    mounted = []

    def make(kind: str, size: int):
        if kind == "injected":
            return _InjectedDisk(tmp_path / "disk", size, monkeypatch)
        mounted.append(_Tmpfs(tmp_path / "disk", size))
        return mounted[-1]

    yield make
    for disk in mounted:
        disk.unmount()


def _process_dataset(dataset_dir: Path, store_dir: Path, limit: int | None = None):
    mapping = build_label_mapping(dataset_dir, dataset_dir.name).included
    records = mapping if limit is None else mapping.head(limit)
    return process_records(
        dataset_dir, detect_format(dataset_dir), records, store_dir, RecordProcessingConfig(), workers=1
    )


@pytest.mark.parametrize("kind", ["tmpfs", "injected"])
def test_a_full_disk_is_a_clear_error_and_the_previous_generation_stays(kind, make_disk, demo_root):
    disk = make_disk(kind, 4 * 2**20)  # 10 twelve-lead records (1.2 MB) fit; 199 (24 MB) do not
    store_dir = disk.root / "demo_cinc2021" / "processed"
    _process_dataset(demo_root / "demo_cinc2021", store_dir, limit=10)
    earlier = store_content(store_dir)
    with pytest.raises(
        StorageError, match=rf"No space left on device while writing {store_dir}/signals-\w+-00000\.npy"
    ):
        _process_dataset(demo_root / "demo_cinc2021", store_dir)
    assert store_content(store_dir) == earlier
    assert _leftovers(store_dir) == [], "the failed generation's files must be removed (they hold the space)"


@pytest.mark.parametrize("kind", ["tmpfs", "injected"])
def test_a_checkpoint_that_does_not_fit_leaves_the_previous_one(kind, make_disk):
    import torch

    from ecg_assets.core.checkpoints import load_checkpoint

    disk = make_disk(kind, 2 * 2**20)
    path = disk.root / "models" / "best.pth"
    save_checkpoint(path, {"epoch": 1, "weights": torch.zeros(1000)})
    with pytest.raises(StorageError, match=rf"No space left on device while writing {path}; earlier files are left"):
        save_checkpoint(path, {"epoch": 2, "weights": torch.zeros(1_000_000)})  # 4 MB
    assert load_checkpoint(path)["epoch"] == 1
    assert [entry.name for entry in path.parent.iterdir()] == ["best.pth"]


@pytest.mark.parametrize("kind", ["tmpfs", "injected"])
def test_a_read_only_artifacts_folder_is_a_clear_error_and_changes_nothing(kind, make_disk, demo_root):
    disk = make_disk(kind, 16 * 2**20)
    store_dir = disk.root / "demo_cinc2017" / "processed"
    _process_dataset(demo_root / "demo_cinc2017", store_dir, limit=10)
    earlier = store_content(store_dir)
    disk.make_read_only()
    with pytest.raises(StorageError, match=rf"Read-only file system while writing {store_dir}/signals-"):
        _process_dataset(demo_root / "demo_cinc2017", store_dir)
    with pytest.raises(StorageError, match=rf"Read-only file system while writing {store_dir}/splits.json"):
        write_splits(store_dir / "splits.json", {"train": [0], "val": [], "test": []}, ["A00001"], SplitConfig())
    assert store_content(store_dir) == earlier


def test_a_read_only_artifacts_folder_fails_the_asset_with_the_path(make_disk, demo_root):
    disk = make_disk("tmpfs", 16 * 2**20)
    resources = {"paths": EcgPathsResource(artifacts_dir=str(disk.root))}
    smoke = {"ops": {"processed_records": {"config": {"smoke_test": True}}}}
    assets = [label_mapping, processed_records]
    assert materialize_partition(assets, partition_key=DATASET, resources=resources, run_config=smoke).success
    artifacts = PartitionArtifacts(disk.root, DATASET)
    mapping_before, store_before = artifacts.label_mapping.read_bytes(), store_content(artifacts.processed)
    disk.make_read_only()
    result = materialize_partition(
        assets, partition_key=DATASET, resources=resources, run_config=smoke, raise_on_error=False
    )
    assert not result.success
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    error = failure.step_failure_data.error.to_string()
    assert f"Read-only file system: '{disk.root}/logs/pipeline.log'" in error
    assert artifacts.label_mapping.read_bytes() == mapping_before and store_content(artifacts.processed) == store_before
