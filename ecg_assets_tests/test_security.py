"""Security: hostile names and links never lead a read out of the data folder or a write out of the artifacts
root; checkpoints are verified; documented servers listen on 127.0.0.1; secrets stay out of every log.

"No file outside" is checked with a Python audit hook that records every file the process
opens (`open`, `os.open`, numpy, pandas, scipy, wfdb and torch all go through it).
"""

import os
import re
import secrets
import shutil
import sys
import sysconfig
from pathlib import Path

import dagster as dg
import pytest

from ecg_assets.core.artifacts import PartitionArtifacts
from ecg_assets.core.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from ecg_assets.core.datasets import detect_format
from ecg_assets.core.datasets.config import DatasetConfigError
from ecg_assets.core.fingerprint import folder_fingerprint
from ecg_assets.core.label_mapping import build_label_mapping
from ecg_assets.core.paths import OutsideFolderError
from ecg_assets.core.preprocessing import RecordProcessingConfig, process_records
from ecg_assets.core.settings import Settings
from ecg_assets.core.store import RecordStore
from ecg_assets.defs.assets import ecg_assets, label_mapping, processed_records, test_metrics, trained_model
from ecg_assets.defs.resources import EcgPathsResource

from .conftest import (
    PROJECT_ROOT,
    cpu_resources,
    materialize_partition,
    sine_leads,
    tiny_training,
    write_wfdb_record,
)

STDLIB = sysconfig.get_paths()["stdlib"]
PACKAGE = str(PROJECT_ROOT / "ecg_assets") + os.sep
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
# Partition keys are fixed when the code location loads (the demo's names in tests): hostile datasets borrow them.
WFDB_DS, CINC_DS = "demo_cinc2021", "demo_cinc2017"


class _OpenedFiles:
    """Audit hook: while `active`, every file opened by this process as (real path when opened, for writing, by
    whom)."""

    def __init__(self):
        self.active = False
        self.opened: list[tuple[str, bool, str]] = []

    def __call__(self, event: str, args: tuple) -> None:
        if not self.active or event != "open" or not isinstance(args[0], (str, bytes, os.PathLike)):
            return
        path, mode, flags = args
        writing = bool(set(mode or "") & set("wax+")) if mode else bool((flags or 0) & _WRITE_FLAGS)
        self.opened.append((os.path.realpath(os.fsdecode(path)), writing, _opener(sys._getframe(1))))

    def under(self, folder: Path) -> list[str]:
        """Opened files that were, or led through a symbolic link to, something under `folder`."""
        root = str(folder.resolve()) + os.sep
        return [path for path, _, _ in self.opened if path.startswith(root)]

    def written_by_package(self) -> list[str]:
        return [path for path, writing, opener in self.opened if writing and opener == "ecg_assets"]


def _opener(frame) -> str:
    """Who opened the file: the innermost caller that is not the standard library (ecg_assets, or a library)."""
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(PACKAGE):
            return "ecg_assets"
        if not (filename.startswith(STDLIB) and "site-packages" not in filename) and not filename.startswith("<"):
            return "library" if "site-packages" in filename else "other"
        frame = frame.f_back
    return "other"


_AUDIT = _OpenedFiles()
sys.addaudithook(_AUDIT)  # audit hooks cannot be removed: this one does nothing while inactive


@pytest.fixture
def opened_files():
    _AUDIT.opened, _AUDIT.active = [], True
    try:
        yield _AUDIT
    finally:
        _AUDIT.active = False


def _wfdb(folder: Path, name: str, seed: int = 0) -> Path:
    return write_wfdb_record(folder, name, sine_leads(2, 5000, 500.0, seed), 500.0, ["I", "II"])


def _header_naming(folder: Path, name: str, signal_file: str) -> None:
    """A WFDB header `name.hea` whose signal line names `signal_file` (and no signal file of its own)."""
    _wfdb(folder, name)
    (folder / f"{name}.dat").unlink()
    header = folder / f"{name}.hea"
    header.write_text(header.read_text().replace(f"{name}.dat", signal_file))


@pytest.fixture
def hostile(tmp_path, demo_root):
    """A data folder full of names and links that point out of it, and the `outside` folder they aim at."""
    outside, data = tmp_path / "outside", tmp_path / "data"
    _wfdb(outside, "secret", seed=9)
    shutil.copy2(demo_root / "demo_cinc2017" / "A00001.mat", outside / "secret.mat")
    for name in ("passwd", "dataset.yaml", "REFERENCE.csv", "unified_label_mapping.csv", "labels.csv"):
        (outside / name).write_text("dataset,record_id,mapped_label\n")

    wfdb_ds = data / WFDB_DS
    _wfdb(wfdb_ds, "good")
    _wfdb(wfdb_ds, "sibling", seed=1)
    os.symlink(outside / "secret.dat", wfdb_ds / "sibling.xyz")  # a file of the record that leaves the folder
    for name in ("other", "third"):
        shutil.copy2(outside / "secret.dat", outside / f"{name}.dat")
    _header_naming(wfdb_ds, "rel_escape", "../../outside/secret.dat")  # refused by the header parser already
    _header_naming(wfdb_ds, "abs_escape", str(outside / "other.dat"))
    _header_naming(wfdb_ds, "link_escape", "link_escape.dat")  # a plain name ...
    os.symlink(outside / "third.dat", wfdb_ds / "link_escape.dat")  # ... of a link that leaves the folder
    os.symlink(outside / "secret.hea", wfdb_ds / "a_linked.hea")  # sorts first: format detection reads it
    os.symlink(outside, wfdb_ds / "linked_dir")
    (wfdb_ds / "unified_label_mapping.csv").write_text(
        "dataset,record_id,mapped_label\n"
        "demo_cinc2021,good,NORM\n"
        "demo_cinc2021,../../etc/passwd,AF\n"
        "demo_cinc2021,/etc/passwd,AF\n"
        "demo_cinc2021,../../outside/secret,MI\n"
        "demo_cinc2021,linked_dir/secret,MI\n"
    )

    cinc_ds = data / CINC_DS
    cinc_ds.mkdir(parents=True)
    for name in ("A00001", "A00002"):
        shutil.copy2(demo_root / "demo_cinc2017" / f"{name}.mat", cinc_ds / f"{name}.mat")
    os.symlink(outside / "secret.hea", cinc_ds / "A00002.hea")  # a header beside a real signal file
    os.symlink(outside / "secret.mat", cinc_ds / "A00003.mat")
    (cinc_ds / "REFERENCE.csv").write_text(
        "A00001,N\nA00002,A\nA00003,N\n/etc/passwd,N\n../../outside/secret,A\nA00/../../outside/passwd,O\n"
    )
    return data, outside


def _materialize(data: Path, artifacts: Path, partition: str, assets=(label_mapping, processed_records), **kwargs):
    resources = {"paths": EcgPathsResource(data_dir=str(data), artifacts_dir=str(artifacts))}
    return materialize_partition(list(assets), partition_key=partition, resources=resources, **kwargs)


def test_hostile_names_and_links_read_nothing_outside_and_write_nothing_outside_the_artifacts(
    hostile, tmp_path, opened_files
):
    data, outside = hostile
    artifacts = tmp_path / "artifacts"
    results = {name: _materialize(data, artifacts, name) for name in (WFDB_DS, CINC_DS)}
    opened_files.active = False

    assert opened_files.under(outside) == [], "a file outside the data folder was opened"
    assert not [path for path, _, _ in opened_files.opened if path == "/etc/passwd"]
    assert [path for path in opened_files.written_by_package() if not path.startswith(f"{artifacts}{os.sep}")] == []
    assert len(opened_files.under(data)) > 10  # the audit saw the legitimate reads

    metadata = {
        name: result.asset_materializations_for_node("label_mapping")[0].metadata for name, result in results.items()
    }
    problems = {name: value["unmatched_entries"].value for name, value in metadata.items()}
    assert "| a_linked.hea | symbolic link pointing outside the dataset folder: not read |" in problems[WFDB_DS]
    for row in ("../../etc/passwd", "../../outside/secret"):
        assert (
            f"| {row} | row in unified_label_mapping.csv: record id '{row}' is a path through '..'"
            in (problems[WFDB_DS])
        )
    assert "record id '/etc/passwd' is an absolute path" in problems[WFDB_DS]
    assert "| linked_dir/secret | row in unified_label_mapping.csv: matches no record" in problems[WFDB_DS]
    assert "| A00003.mat | symbolic link pointing outside the dataset folder: not read |" in problems[CINC_DS]
    assert "| /etc/passwd | REFERENCE.csv: record id '/etc/passwd' is an absolute path" in problems[CINC_DS]
    assert "| A00/../../outside/passwd | REFERENCE.csv: record id " in problems[CINC_DS]

    failures = {
        name: dict(RecordStore(artifacts / name / "processed").index.pipe(lambda _: _failures(artifacts / name)))
        for name in results
    }
    assert failures[WFDB_DS] == {
        "abs_escape": "malformed header: HeaderSyntaxError: invalid syntax in signal line",
        "link_escape": "header names signal file link_escape.dat, which lies outside the dataset folder",
        "rel_escape": "malformed header: HeaderSyntaxError: invalid syntax in signal line",
    }
    assert failures[CINC_DS] == {
        "A00002": f"path {str(data / CINC_DS / 'A00002.hea')!r} resolves outside the dataset folder"
    }
    processed = {name: RecordStore(artifacts / name / "processed").index["record_id"].tolist() for name in results}
    assert processed == {WFDB_DS: ["good", "sibling"], CINC_DS: ["A00001"]}


def _failures(artifacts_partition: Path) -> list[tuple[str, str]]:
    import pandas as pd

    table = pd.read_csv(artifacts_partition / "processed" / "failures.csv", dtype=str, keep_default_na=False)
    return list(zip(table["record_id"], table["reason"]))


def test_a_dataset_folder_may_be_a_symlink_but_its_files_may_not_leave_it(hostile, tmp_path, opened_files):
    data, outside = hostile
    target = tmp_path / "big_disk" / "ecg"  # an administrator links a dataset in from another disk
    _wfdb(target, "r1")
    os.symlink(outside / "secret.hea", target / "escape.hea")
    linked_data = tmp_path / "linked_data"
    linked_data.mkdir()
    os.symlink(target, linked_data / WFDB_DS)
    assert Settings(data_dir=linked_data).dataset_names() == [WFDB_DS]

    result = _materialize(linked_data, tmp_path / "artifacts", WFDB_DS)
    opened_files.active = False
    assert result.success
    assert RecordStore(tmp_path / "artifacts" / WFDB_DS / "processed").index["record_id"].tolist() == ["r1"]
    unmatched = result.asset_materializations_for_node("label_mapping")[0].metadata["unmatched_entries"].value
    assert "| escape.hea | symbolic link pointing outside the dataset folder: not read |" in unmatched
    assert opened_files.under(outside) == [] and opened_files.under(target)


@pytest.mark.parametrize(
    "dataset_format, linked, error",
    [
        ("wfdb", "dataset.yaml", DatasetConfigError),
        ("cinc2017", "REFERENCE.csv", OutsideFolderError),
        ("wfdb", "unified_label_mapping.csv", OutsideFolderError),
        ("wfdb", "../unified_label_mapping.csv", OutsideFolderError),  # the shared one in ECG_DATA_DIR
        ("ptbxl", "ptbxl_database.csv", OutsideFolderError),
        ("ptbxl", "scp_statements.csv", OutsideFolderError),
    ],
)
def test_dataset_files_linking_outside_stop_the_partition_unread(
    dataset_format, linked, error, hostile, demo_root, opened_files
):
    data, outside = hostile
    folder = data / "plain"
    if dataset_format == "cinc2017":
        folder.mkdir()
        shutil.copy2(demo_root / "demo_cinc2017" / "A00001.mat", folder / "A00001.mat")
    else:
        _wfdb(folder, "r1")
    if dataset_format == "ptbxl":
        (folder / "ptbxl_database.csv").write_text("ecg_id,patient_id,scp_codes,strat_fold,filename_hr\n")
        (folder / "scp_statements.csv").write_text(",diagnostic,diagnostic_class,rhythm\n")
    link = folder / linked
    link.unlink(missing_ok=True)
    os.symlink(
        outside / Path(linked).name.replace("ptbxl_database", "labels").replace("scp_statements", "labels"), link
    )
    shown = re.escape(os.path.normpath(link))
    with pytest.raises(error, match=rf"{shown} is a symbolic link to {re.escape(str(outside))}/.*, outside the folder"):
        build_label_mapping(folder, "plain", Settings(data_dir=data).label_override_files("plain"))
    assert opened_files.under(outside) == []


def test_a_tampered_label_mapping_cannot_send_preprocessing_outside(hostile, opened_files):
    import pandas as pd

    data, outside = hostile
    folder = data / WFDB_DS
    rows = [
        ("good", "good.hea"),
        ("up", "../../outside/secret.hea"),
        ("absolute", str(outside / "secret.hea")),
        ("via_link", "linked_dir/secret.hea"),
    ]
    table = pd.DataFrame(
        [
            {"record_id": rid, "source_file": source, "native_labels": "", "mapped_label": "NORM", "patient_id": ""}
            for rid, source in rows
        ]
    )
    store, report = process_records(
        folder, detect_format(folder), table, folder.parent.parent / "store", RecordProcessingConfig(), workers=1
    )
    opened_files.active = False
    assert store.index["record_id"].tolist() == ["good"]
    assert {rid: reason for rid, reason in report.failures} == {
        rid: f"path {source!r} resolves outside the dataset folder" for rid, source in rows[1:]
    }
    assert opened_files.under(outside) == []


@pytest.mark.parametrize("name", ["..", "../x", "a/b", "/etc", ".hidden", "logs", "demo_data", "x" * 65, ""])
def test_partition_keys_that_are_not_plain_folder_names_are_refused(name, tmp_path):
    with pytest.raises(ValueError, match="invalid dataset name"):
        PartitionArtifacts(tmp_path, name)
    with pytest.raises(ValueError, match="invalid dataset name"):
        Settings(data_dir=tmp_path).dataset_dir(name)
    with pytest.raises(ValueError, match="invalid dataset name"):
        EcgPathsResource(data_dir=str(tmp_path), artifacts_dir=str(tmp_path)).artifacts(name)


def test_folders_with_unsafe_names_are_not_partitions(tmp_path):
    for name in ("good", "with space", ".hidden", "logs", "ünïcode"):
        (tmp_path / name).mkdir()
    assert Settings(data_dir=tmp_path).dataset_names() == ["good"]


def test_the_dataset_fingerprint_follows_no_linked_folder(hostile):
    data, outside = hostile
    folder = data / WFDB_DS
    os.symlink(".", folder / "loop")  # would walk forever, or fail with ELOOP, if followed
    before = folder_fingerprint([folder])
    (outside / "passwd").write_text("changed\n")  # reachable only through linked_dir/
    assert folder_fingerprint([folder]) == before


# Ten records, one epoch of a narrow network: enough to produce every artifact.
SMOKE_RUN = {
    "ops": {
        "processed_records": {"config": {"smoke_test": True}},
        "trained_model": {"config": tiny_training(batch_size=8)},
    }
}


# --- Checkpoints ---------------------------------------------------------------------------------------------------


class _Payload:
    """A pickle that would create `marker` when unpickled by a loader that runs code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_carrying_code_is_refused_without_running_it(tmp_path):
    import torch

    marker, path = tmp_path / "code_ran", tmp_path / "evil.pth"
    torch.save({"format": 1, "model_state": _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_checkpoint_is_loaded_only_when_its_bytes_match_the_recorded_hash(tmp_path):
    import hashlib

    path = tmp_path / "best.pth"
    save_checkpoint(path, {"epoch": 3, "model_state": {}})
    recorded = hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_checkpoint(path, expected_sha256=recorded.upper())["epoch"] == 3

    save_checkpoint(path, {"epoch": 4, "model_state": {}})  # a valid checkpoint, but not the one that was recorded
    with pytest.raises(CheckpointError, match=f"but {recorded} was expected: the file changed after its hash"):
        load_checkpoint(path, expected_sha256=recorded)


def test_test_metrics_refuses_a_checkpoint_replaced_after_training(tmp_path):
    """The checkpoint is verified against `checkpoint_sha256` of the partition's `trained_model` materialization."""
    artifacts = tmp_path / "artifacts"
    partition = "demo_cinc2017"
    with dg.instance_for_test() as instance:
        trained = materialize_partition(
            [a for a in ecg_assets if a.key != test_metrics.key],
            partition_key=partition,
            resources=cpu_resources(artifacts),
            run_config=SMOKE_RUN,
            instance=instance,
        )
        recorded = trained.asset_materializations_for_node("trained_model")[0].metadata["checkpoint_sha256"].value
        best = artifacts / partition / "models" / "best.pth"
        checkpoint = load_checkpoint(best, expected_sha256=recorded)
        checkpoint["model_state"] = {key: value * 0 for key, value in checkpoint["model_state"].items()}
        save_checkpoint(best, checkpoint)  # a swapped model that still loads and fits the architecture

        refused = materialize_partition(
            [test_metrics, trained_model],
            selection=[test_metrics.key],
            partition_key=partition,
            resources=cpu_resources(artifacts),
            instance=instance,
            raise_on_error=False,
        )
        assert not refused.success
        (failure,) = [event for event in refused.all_events if event.is_step_failure]
        message = str(failure.step_failure_data.error)
        assert f"but {recorded} was expected" in message and str(best) in message
        assert not (artifacts / partition / "test_metrics.json").exists()


# --- Servers and logs ----------------------------------------------------------------------------------------------

# A shell line (possibly commented out, after VAR=value assignments and a directory) that starts a server.
_SERVER_COMMAND = re.compile(
    r"^\s*(?:#\s*)?(?:[A-Z_]+=\S+\s+)*(?:\S*/)?(dagster dev|dagster-webserver|dagster api grpc|dagster code-server)\b"
)
_LOOPBACK = re.compile(r"(?:-h|--host)[ =]127\.0\.0\.1\b")


def _documented_commands() -> list[tuple[str, str]]:
    """(file, command line) for every server command in the README's code blocks and the deployment files."""
    commands = []
    readme_blocks = re.findall(r"```[a-z]*\n(.*?)```", (PROJECT_ROOT / "README.md").read_text(), flags=re.S)
    sources = [("README.md", block) for block in readme_blocks]
    for path in sorted((PROJECT_ROOT / "deploy").rglob("*")) + [PROJECT_ROOT / "dagster.yaml"]:
        if path.is_file():
            sources.append((str(path.relative_to(PROJECT_ROOT)), path.read_text()))
    for name, text in sources:
        commands += [(name, line.strip()) for line in text.splitlines() if _SERVER_COMMAND.search(line)]
    return commands


def test_every_documented_server_command_listens_on_127_0_0_1_only():
    commands = _documented_commands()
    assert len(commands) >= 4, commands  # the README's UI and profile sections, the cluster workspace
    assert [(name, line) for name, line in commands if not _LOOPBACK.search(line)] == []


def test_the_ui_command_starts_dagster_dev_on_127_0_0_1(monkeypatch, tmp_path):
    from ecg_assets.cli import main as cli

    started = []
    monkeypatch.setattr(cli.subprocess, "run", lambda command, **_: started.append(command) or _Done())
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert cli.main(["ui", "--port", "3123"]) == 0
    (command,) = started
    assert _LOOPBACK.search(" ".join(command)) and "0.0.0.0" not in command


class _Done:
    returncode = 0


def test_secrets_in_the_environment_stay_out_of_every_log_and_artifact(tmp_path, monkeypatch):
    """Credentials a deployment passes through the environment (the team profile's PostgreSQL password, cloud
    keys) never reach the run log, the pipeline log, asset metadata or any artifact."""
    secret = secrets.token_hex(16)
    for name in ("DAGSTER_PG_PASSWORD", "AWS_SECRET_ACCESS_KEY", "HF_TOKEN"):
        monkeypatch.setenv(name, secret)
    artifacts = tmp_path / "artifacts"
    with dg.instance_for_test() as instance:
        result = materialize_partition(
            ecg_assets,
            partition_key="demo_cinc2021",
            resources=cpu_resources(artifacts),
            run_config=SMOKE_RUN,
            instance=instance,
        )
        assert result.success
        logged = [repr(record) for record in instance.all_logs(result.run_id)]
    assert logged and not [line for line in logged if secret in line]
    written = [path for path in artifacts.rglob("*") if path.is_file()]
    assert len(written) > 10
    assert [str(path) for path in written if secret.encode() in path.read_bytes()] == []
