"""Messy real folders: copies of the shared recordings, damaged, renamed, duplicated, relinked and re-encoded
the way real dataset folders are. Each case is one class of input; every case must keep the invariant of
`accounting.py` (no crash, every file in exactly one place with a clear reason, no silent relabel), plus
what the case itself is about.
"""

from __future__ import annotations

import codecs
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import scipy.io

from ecg_assets.core.datasets import detect_format
from ecg_assets.core.label_mapping import build_label_mapping
from ecg_assets.core.labels import LabelMappingError
from ecg_assets.core.preprocessing import RecordProcessingConfig, process_records
from ecg_assets.core.store import RecordStore
from ecg_assets.defs.assets import label_mapping, processed_records, splits
from ecg_assets.defs.checks import processed_records_checks as checks_op
from ecg_assets.defs.resources import EcgPathsResource

from .accounting import assert_every_file_accounted
from .conftest import materialize_partition

pytestmark = pytest.mark.shared_data

C17 = ("A00001", "A00002", "A00003", "A00004")  # N, N, N, A in REFERENCE-v3
C21 = ("E07500", "E07501", "E07502", "E07503")  # all with '# Dx:'


@dataclass
class Expect:
    """What a case must show besides the invariant (regular expressions searched in the reasons)."""

    format: str | None = None
    processed: set[str] | None = None
    failed: dict[str, str] = field(default_factory=dict)  # record id -> reason pattern
    excluded: dict[str, str] = field(default_factory=dict)  # record id -> reason pattern
    problems: dict[str, str] = field(default_factory=dict)  # entry -> reason pattern
    ignored: dict[str, str] = field(default_factory=dict)  # file -> reason pattern
    labels: dict[str, str] = field(default_factory=dict)  # record id -> unified label
    error: tuple[type, str] | None = None  # the partition stops with this error and message
    rates: set[float] | None = None  # native sampling rates of the processed records
    overrides: str | None = None  # text of a unified_label_mapping.csv beside the dataset folder
    override_encoding: str = "utf-8"


# --- builders -----------------------------------------------------------------------------------------


def cinc2017(folder: Path, shared: Path, names=C17, reference: str | None = None) -> Path:
    folder.mkdir(parents=True)
    for name in names:
        shutil.copy2(shared / "cinc2017" / f"{name}.mat", folder / f"{name}.mat")
    rows = [row for row in (shared / "cinc2017" / "REFERENCE-v3.csv").read_text().splitlines() if row[4:10] in names]
    (folder / "REFERENCE-v3.csv").write_text(reference if reference is not None else "\n".join(rows) + "\n")
    return folder


def cinc2021(folder: Path, shared: Path, names=C21) -> Path:
    folder.mkdir(parents=True)
    for name in names:
        for suffix in (".hea", ".mat"):
            shutil.copy2(shared / "cinc2021" / f"{name}{suffix}", folder / f"{name}{suffix}")
    return folder


def edit_header(header: Path, edit: Callable[[list[str]], list[str]]) -> None:
    header.write_text("\n".join(edit(header.read_text().splitlines())) + "\n")


def mat4(path: Path, value) -> None:
    scipy.io.savemat(path, {"val": value}, format="4")


# --- the cases ----------------------------------------------------------------------------------------


def upper_case_extensions(folder, shared):
    cinc2017(folder, shared)
    (folder / "A00002.mat").rename(folder / "A00002.MAT")
    return Expect("cinc2017", processed=set(C17))


def upper_case_header_extension(folder, shared):
    cinc2021(folder, shared)
    (folder / "E07501.hea").rename(folder / "E07501.HEA")
    return Expect("cinc2021", processed=set(C21))


def same_id_in_two_letter_cases(folder, shared):
    cinc2017(folder, shared)
    shutil.copy2(folder / "A00001.mat", folder / "A00001.MAT")
    return Expect("cinc2017", processed=set(C17), excluded={"A00001": r"same record id 'A00001' as the file"})


def appledouble_and_hidden_files(folder, shared):
    cinc2021(folder, shared)
    (folder / "._E07500.hea").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + b"\0" * 4000)
    (folder / "._E07500.mat").write_bytes(b"\x00\x05\x16\x07" + b"\0" * 4000)
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" + b"\0" * 100)
    (folder / ".E07503.hea.swp").write_bytes(b"b0VIM 8.2")
    (folder / ".ipynb_checkpoints").mkdir()
    shutil.copy2(folder / "E07502.hea", folder / ".ipynb_checkpoints" / "E07502-checkpoint.hea")
    (folder / "__MACOSX").mkdir()
    (folder / "__MACOSX" / "._E07501.mat").write_bytes(b"\0" * 10)
    return Expect(
        "cinc2021",
        processed=set(C21),
        ignored={"._E07500.hea": "AppleDouble", ".DS_Store": "hidden file", ".ipynb_checkpoints": "hidden folder"},
    )


def appledouble_in_a_cinc2017_folder(folder, shared):
    cinc2017(folder, shared)
    (folder / "._A00001.mat").write_bytes(b"\x00\x05\x16\x07" + b"\0" * 4000)
    (folder / "._REFERENCE-v3.csv").write_bytes(b"\x00\x05\x16\x07" + b"\0" * 4000)
    return Expect("cinc2017", processed=set(C17), ignored={"._A00001.mat": "AppleDouble"})


def dangling_and_looping_links(folder, shared):
    cinc2017(folder, shared)
    os.symlink(folder / "A09999.mat", folder / "A00005.mat")  # its target was deleted
    os.symlink("loop.mat", folder / "loop.mat")
    os.symlink(".", folder / "again")  # a folder link back to the dataset: searched once
    os.symlink("nowhere", folder / "gone")
    with (folder / "REFERENCE-v3.csv").open("a") as handle:
        handle.write("A00/A00005,A,1\n")
    return Expect(
        "cinc2017",
        processed=set(C17),
        problems={
            "A00005.mat": "broken symbolic link",
            "loop.mat": "symbolic link loop",
            "A00/A00005": "matches no record",
        },
        ignored={"again": "searched already"},
    )


def links_inside_the_folder(folder, shared):
    cinc2017(folder, shared, names=C17[:3])
    (folder / "store").mkdir()
    (folder / "A00003.mat").rename(folder / "store" / "A00003.mat")
    os.symlink("store/A00003.mat", folder / "A00003.mat")
    return Expect(
        "cinc2017",
        processed={"A00001", "A00002", "store/A00003"},
        ignored={"A00003.mat": "another name .link. of store/A00003.mat"},
    )


def empty_and_nul_padded_files(folder, shared):
    cinc2021(folder, shared)
    (folder / "E07500.hea").write_bytes(b"")
    header = folder / "E07501.hea"
    header.write_bytes(header.read_bytes() + b"\0" * 512)
    signal = folder / "E07502.mat"
    signal.write_bytes(b"\0" * signal.stat().st_size)
    return Expect(
        "cinc2021",
        processed={"E07503"},
        excluded={"E07500": "header is empty"},
        failed={"E07501": "contains NUL bytes", "E07502": r"E07502\.mat"},
    )


def nul_padded_cinc2017_files(folder, shared):
    cinc2017(folder, shared)
    (folder / "A00002.mat").write_bytes(b"\0" * 4096)
    (folder / "A00003.mat").write_bytes(b"")
    return Expect("cinc2017", processed={"A00001", "A00004"}, failed={"A00002": "MAT", "A00003": "MAT"})


def crlf_and_bom_text(folder, shared):
    cinc2021(folder, shared)
    header = folder / "E07500.hea"
    header.write_bytes(header.read_bytes().replace(b"\n", b"\r\n"))
    header = folder / "E07501.hea"
    header.write_bytes(codecs.BOM_UTF8 + header.read_bytes())
    return Expect("cinc2021", processed=set(C21))


def reference_in_other_encodings(folder, shared):
    cinc2017(folder, shared)
    text = (folder / "REFERENCE-v3.csv").read_text()
    (folder / "REFERENCE-v3.csv").write_bytes(codecs.BOM_UTF16_LE + text.replace("\n", "\r\n").encode("utf-16-le"))
    return Expect("cinc2017", processed=set(C17), labels={"A00004": "AF", "A00001": "NORM"})


def reference_with_utf8_bom_and_crlf(folder, shared):
    cinc2017(folder, shared)
    text = (folder / "REFERENCE-v3.csv").read_text()
    (folder / "REFERENCE-v3.csv").write_bytes(codecs.BOM_UTF8 + text.replace("\n", "\r\n").encode())
    return Expect("cinc2017", processed=set(C17), labels={"A00001": "NORM"})


def reference_in_cp1252(folder, shared):
    cinc2017(folder, shared, reference="A00/A00001,N,0\nA00/A00002,N,0 # vérifié\n".encode("cp1252").decode("latin-1"))
    (folder / "REFERENCE-v3.csv").write_bytes("A00/A00001,N,0\nA00/A00002,N,0 # vérifié\n".encode("cp1252"))
    return Expect(error=(LabelMappingError, r"REFERENCE-v3\.csv is not valid UTF-8 text: byte 0xe9 .*\(line 2\)"))


def lower_case_classes(folder, shared):
    cinc2017(folder, shared, reference="A00001,n\nA00002,o\nA00003,~\nA00004,a\n")
    return Expect(
        "cinc2017",
        processed={"A00001", "A00002", "A00004"},
        labels={"A00001": "NORM", "A00002": "OTHER", "A00004": "AF"},
        excluded={"A00003": "noisy"},
    )


def duplicate_reference_ids(folder, shared):
    cinc2017(folder, shared, reference="A00001,N\nA00002,A\nA00001,O\nA00003,O\nA00003,O\nA00004,A\n")
    return Expect("cinc2017", processed=set(C17), labels={"A00001": "NORM"})


def records_of_one_to_three_samples(folder, shared):
    cinc2017(folder, shared)
    for name, samples in (("A00002", 1), ("A00003", 3)):
        mat4(folder / f"{name}.mat", np.arange(samples, dtype=np.int16)[None, :])
    return Expect("cinc2017", processed={"A00001", "A00004"}, failed={"A00002": "too short", "A00003": "too short"})


def huge_finite_values(folder, shared):
    cinc2017(folder, shared)
    mat4(folder / "A00002.mat", (np.sin(np.linspace(0, 60, 9000)) * 3.3e41)[None, :])  # 3.3e38 mV after the gain
    mat4(folder / "A00003.mat", (np.sin(np.linspace(0, 60, 9000)) * 1e300)[None, :])
    return Expect(
        "cinc2017",
        processed={"A00001", "A00004"},
        failed={"A00002": "overflow while resampling", "A00003": "too large for 32-bit floats"},
    )


def headers_with_more_or_fewer_signal_lines(folder, shared):
    cinc2021(folder, shared)
    edit_header(folder / "E07500.hea", lambda lines: [lines[0].replace(" 12 ", " 11 ", 1), *lines[1:]])
    edit_header(folder / "E07501.hea", lambda lines: [lines[0], *lines[1:6], *lines[13:]])
    return Expect(
        "cinc2021",
        processed={"E07502", "E07503"},
        failed={"E07500": "announces 11 signal.s. but describes 12", "E07501": "announces 12 .* describes 5"},
    )


def first_header_without_dx(folder, shared):
    cinc2021(folder, shared)
    edit_header(folder / "E07500.hea", lambda lines: [line for line in lines if not line.startswith("# Dx")])
    return Expect("cinc2021", processed=set(C21[1:]), excluded={"E07500": "no '# Dx:' line"})


def most_headers_without_dx(folder, shared):
    cinc2021(folder, shared)
    for name in C21[:3]:
        edit_header(folder / f"{name}.hea", lambda lines: [line for line in lines if not line.startswith("# Dx")])
    return Expect("wfdb", processed=set(C21))  # generic WFDB: labels from unified_label_mapping.csv (OTHER)


def orphan_and_shared_signal_files(folder, shared):
    cinc2021(folder, shared)
    (folder / "E07503.hea").unlink()  # E07503.mat: a signal file no header names
    header = folder / "E07502.hea"
    (folder / "E07502.mat").rename(folder / "shared.mat")
    header.write_text(header.read_text().replace("E07502.mat", "shared.mat"))
    shutil.copy2(header, folder / "E07502-copy.hea")  # a second header reading the same file
    (folder / "E07501.dat").write_bytes(b"\0" * 100)
    (folder / "notes.edf").write_bytes(b"0       ")
    return Expect(
        "cinc2021",
        processed={"E07500", "E07501", "E07502-copy"},  # of two equal headers, the first by name
        excluded={"E07502": "duplicate header: reads the same signal file.s. .shared.mat. as record E07502-copy"},
        problems={"E07503.mat": "no header", "E07501.dat": "no header", "notes.edf": "EDF files are not a supported"},
    )


def all_records_noisy(folder, shared):
    cinc2017(folder, shared, reference="".join(f"{name},~\n" for name in C17))
    return Expect("cinc2017", processed=set(), excluded={name: "noisy" for name in C17})


def all_labels_unknown(folder, shared):
    cinc2017(folder, shared, reference="".join(f"{name},X\n" for name in C17))
    return Expect("cinc2017", processed=set(), excluded={name: "unknown CinC 2017 class 'X'" for name in C17})


def every_record_unreadable(folder, shared):
    cinc2017(folder, shared)
    for name in C17:
        scipy.io.savemat(folder / f"{name}.mat", {"ecg": np.ones((1, 3000), np.int16)})
    return Expect("cinc2017", processed=set(), failed={name: "has no variable 'val'" for name in C17})


def no_reference_file(folder, shared):
    cinc2017(folder, shared)
    (folder / "REFERENCE-v3.csv").unlink()
    return Expect("cinc2017", processed=set(), excluded={name: "no REFERENCE" for name in C17})


def dataset_yaml_names_cinc2017_without_reference(folder, shared):
    no_reference_file(folder, shared)
    (folder / "dataset.yaml").write_text("format: cinc2017\n")
    return Expect("cinc2017", processed=set(), excluded={name: "no REFERENCE" for name in C17})


def reference_prefix_is_a_real_subfolder(folder, shared):
    cinc2017(folder, shared)
    (folder / "A00").mkdir()
    for name in C17[:2]:
        (folder / f"{name}.mat").rename(folder / "A00" / f"{name}.mat")
    return Expect("cinc2017", processed={"A00/A00001", "A00/A00002", "A00003", "A00004"})


def override_dataset_column_in_other_case(folder, shared):
    cinc2017(folder, shared)
    return Expect(
        "cinc2017",
        processed=set(C17),
        labels={"A00001": "MI", "A00002": "BBB"},
        overrides="dataset,record_id,mapped_label\nCASE_FOLDER,A00001,mi\ncase_folder,A00002,BBB\n"
        "cinc_2017,A00003,AF\n",
        problems={"A00003": "dataset 'cinc_2017' matches no dataset folder"},
    )


def overrides_in_utf16_with_bom(folder, shared):
    cinc2017(folder, shared)
    return Expect(
        "cinc2017",
        processed=set(C17),
        labels={"A00001": "MI"},
        overrides="dataset,record_id,mapped_label\r\nCASE_FOLDER,A00001,MI\r\n",
        override_encoding="utf-16",
    )


def overrides_in_utf8_with_bom(folder, shared):
    cinc2017(folder, shared)
    return Expect(
        "cinc2017",
        processed=set(C17),
        labels={"A00004": "BBB"},
        overrides="dataset,record_id,mapped_label\nCASE_FOLDER,A00004,bbb\n",
        override_encoding="utf-8-sig",
    )


def overrides_in_cp1252(folder, shared):
    cinc2017(folder, shared)
    return Expect(
        overrides="dataset,record_id,mapped_label\nCASE_FOLDER,A00001,MI\nCASE_FOLDER,A00002,NORM # gepr\u00fcft\n",
        override_encoding="cp1252",
        error=(LabelMappingError, r"unified_label_mapping\.csv is not valid UTF-8 text: byte 0xfc .*\(line 3\)"),
    )


def file_name_not_in_utf8(folder, shared):
    cinc2017(folder, shared)
    (folder / "A00004.mat").rename(os.fsdecode(os.fsencode(folder) + b"/A00004-K\xf6ln.mat"))  # latin-1 bytes
    return Expect(
        "cinc2017",
        processed={"A00001", "A00002", "A00003"},
        problems={"A00004-K\ufffdln.mat": "file name is not valid UTF-8", "A00/A00004": "matches no record"},
    )


def reference_with_semicolons(folder, shared):
    cinc2017(folder, shared, reference="A00001;N\nA00002;A\nA00003;O\nA00004;~\n")
    return Expect(
        "cinc2017",
        processed={"A00001", "A00002", "A00003"},
        labels={"A00001": "NORM", "A00002": "AF", "A00003": "OTHER"},
        excluded={"A00004": "noisy"},
    )


def dataset_yaml_states_the_rate_of_a_cinc2017_folder(folder, shared):
    cinc2017(folder, shared)
    (folder / "dataset.yaml").write_text("sampling_rate: 150\n")
    return Expect("cinc2017", processed=set(C17), rates={150.0})


def wfdb_samples_with_junk(folder, shared):
    shutil.copytree(shared / "wfdb_samples", folder)
    os.chmod(folder, 0o755)
    for path in folder.iterdir():
        os.chmod(path, 0o644)
    (folder / "._100.hea").write_bytes(b"\x00\x05\x16\x07" + b"\0" * 100)
    (folder / "100.dat").rename(folder / "100.DAT")  # named by two headers as 100.dat: no longer there
    return Expect(
        "wfdb",
        processed={"03700181", "a103l", "s0010_re"},
        failed={"100": r"100\.dat, which does not exist"},
        excluded={"100-no-len": "duplicate header", "a103l-no-len": "duplicate header"},
        problems={"100.DAT": "no header"},
    )


CASES = [
    upper_case_extensions,
    upper_case_header_extension,
    same_id_in_two_letter_cases,
    appledouble_and_hidden_files,
    appledouble_in_a_cinc2017_folder,
    dangling_and_looping_links,
    links_inside_the_folder,
    empty_and_nul_padded_files,
    nul_padded_cinc2017_files,
    crlf_and_bom_text,
    reference_in_other_encodings,
    reference_with_utf8_bom_and_crlf,
    reference_in_cp1252,
    lower_case_classes,
    duplicate_reference_ids,
    records_of_one_to_three_samples,
    huge_finite_values,
    headers_with_more_or_fewer_signal_lines,
    first_header_without_dx,
    most_headers_without_dx,
    orphan_and_shared_signal_files,
    all_records_noisy,
    all_labels_unknown,
    every_record_unreadable,
    no_reference_file,
    dataset_yaml_names_cinc2017_without_reference,
    reference_prefix_is_a_real_subfolder,
    override_dataset_column_in_other_case,
    overrides_in_utf16_with_bom,
    overrides_in_utf8_with_bom,
    overrides_in_cp1252,
    wfdb_samples_with_junk,
    file_name_not_in_utf8,
    reference_with_semicolons,
    dataset_yaml_states_the_rate_of_a_cinc2017_folder,
]


def build_case(make, root: Path, shared: Path, name: str = "case_folder") -> tuple[Path, Expect]:
    folder = root / name
    expect = make(folder, shared)
    if expect.overrides is not None:
        text = expect.overrides.replace("CASE_FOLDER", name.upper()).replace("case_folder", name)
        (root / "unified_label_mapping.csv").write_bytes(text.encode(expect.override_encoding))
    return folder, expect


def _matches(found: dict[str, str], expected: dict[str, str], what: str) -> None:
    for key, pattern in expected.items():
        assert key in found, f"{what}: {key} missing from {found}"
        assert re.search(pattern, found[key]), f"{what} {key}: {found[key]!r} does not match {pattern!r}"


@pytest.mark.parametrize("make", CASES, ids=lambda make: make.__name__)
def test_messy_folder_keeps_every_file_accounted(make, shared_data, tmp_path):
    folder, expect = build_case(make, tmp_path / "data", shared_data)
    overrides = [tmp_path / "data" / "unified_label_mapping.csv", folder / "unified_label_mapping.csv"]
    if expect.error is not None:
        error, message = expect.error
        with pytest.raises(error, match=message):
            build_label_mapping(folder, folder.name, overrides)
        return
    mapping = build_label_mapping(folder, folder.name, overrides)
    store_dir = tmp_path / "store"
    store, report = process_records(
        folder, detect_format(folder), mapping.included, store_dir, RecordProcessingConfig(), workers=1
    )
    assert_every_file_accounted(folder, mapping, store_dir)
    assert mapping.dataset_format == expect.format
    table = mapping.table[mapping.table["excluded_reason"] != ""]
    if expect.processed is not None:
        assert set(store.index["record_id"]) == expect.processed, report.failures
    _matches(dict(report.failures), expect.failed, "failure")
    _matches(dict(zip(table["record_id"], table["excluded_reason"])), expect.excluded, "exclusion")
    _matches(dict(mapping.problems), expect.problems, "problem")
    _matches(dict(mapping.ignored_files), expect.ignored, "ignored")
    if expect.rates is not None:
        assert set(store.index["original_fs"]) == expect.rates
    labels = dict(zip(store.index["record_id"], store.index["label"]))
    assert {key: labels.get(key) for key in expect.labels} == expect.labels


def test_an_empty_store_is_committed_with_every_index_column(shared_data, tmp_path):
    folder, _ = build_case(all_records_noisy, tmp_path / "data", shared_data)
    mapping = build_label_mapping(folder, folder.name)
    config = RecordProcessingConfig()
    store, report = process_records(folder, detect_format(folder), mapping.included, tmp_path / "s", config)
    assert len(store) == 0 and report.processed == 0
    reopened = RecordStore(tmp_path / "s")
    assert {"original_fs", "original_samples", "lead_mask", "label", "sex", "age"} <= set(reopened.index.columns)
    assert pd.read_csv(tmp_path / "s" / "failures.csv").empty


# --- the same folders through the Dagster assets and their checks ---------------------------------------

# The partition keys are fixed when the code location loads (the demo's names in tests): the generated
# folders carry one of them.
PARTITION = "demo_cinc2017"


def _materialize(data: Path, artifacts: Path, assets) -> dg.ExecuteInProcessResult:
    resources = {"paths": EcgPathsResource(data_dir=str(data), artifacts_dir=str(artifacts))}
    return materialize_partition(assets, partition_key=PARTITION, resources=resources, raise_on_error=False)


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()}


@pytest.mark.parametrize(
    "make", [duplicate_reference_ids, huge_finite_values, dangling_and_looping_links], ids=lambda make: make.__name__
)
def test_messy_folders_pass_the_blocking_checks_and_list_every_file(make, shared_data, tmp_path):
    folder, expect = build_case(make, tmp_path / "data", shared_data, PARTITION)
    result = _materialize(tmp_path / "data", tmp_path / "artifacts", [label_mapping, processed_records, checks_op])
    assert result.success
    evaluations = _checks(result)
    assert evaluations["processed_records_are_finite"] and evaluations["processed_labels_match_label_mapping"]
    metadata = result.asset_materializations_for_node("label_mapping")[0].metadata
    listed = metadata["unmatched_entries"].value + metadata["ignored_files"].value
    for entry in [*expect.problems, *expect.ignored]:
        assert f"| {entry} | " in listed
    store = RecordStore(tmp_path / "artifacts" / PARTITION / "processed")
    assert set(store.index["record_id"]) == expect.processed


def test_a_partition_with_nothing_to_process_finishes_and_splits_says_why(shared_data, tmp_path):
    build_case(all_records_noisy, tmp_path / "data", shared_data, PARTITION)
    assets = [label_mapping, processed_records, splits, checks_op]
    result = _materialize(tmp_path / "data", tmp_path / "artifacts", assets)
    processed = result.asset_materializations_for_node("processed_records")[0].metadata
    assert processed["processed"].value == 0
    assert processed["note"].value.startswith("the label mapping has no labelled record")
    assert all(_checks(result).values())
    failure = next(event for event in result.all_events if event.is_step_failure and event.step_key == "splits")
    message = failure.step_failure_data.user_failure_data.description
    assert message.startswith(
        "nothing to split: no processed records: label_mapping lists 4 record(s), 4 excluded (4 x noisy recording (~))"
        " and 0 labelled, of which 0 failed in processed_records."
    )


def test_a_file_reached_through_a_linked_folder_is_listed_once_under_its_own_name(shared_data, tmp_path):
    folder = cinc2017(tmp_path / "c17", shared_data, names=C17[:2])
    (folder / "real").mkdir()
    (folder / "A00002.mat").rename(folder / "real" / "A00002.mat")
    os.symlink("real", folder / "view")  # the same folder under a second name, sorting after it
    os.symlink("real", folder / "another")  # ... and under one sorting before it
    mapping = build_label_mapping(folder, folder.name)
    assert set(mapping.table["source_file"]) == {"A00001.mat", "real/A00002.mat"}
    assert_every_file_accounted(folder, mapping, None)
