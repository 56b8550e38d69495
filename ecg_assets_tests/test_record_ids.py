"""Record ids written in CSV files find their files through documented variants, or say why not."""

import os

import pytest

from ecg_assets.core.label_mapping import build_label_mapping
from ecg_assets.core.record_ids import RecordIdIndex, normalize_record_id

from .conftest import sine_leads, write_wfdb_record

RECORDS = [("A00001", ["A00001.mat"]), ("g1/E00001", ["g1/E00001.hea"]), ("g2/E00002", ["g2/E00002.hea"])]


@pytest.fixture
def index() -> RecordIdIndex:
    return RecordIdIndex(RECORDS, dataset="cinc")


@pytest.mark.parametrize(
    "raw, record_id",
    [
        ("A00001", "A00001"),
        ("./A00001.mat", "A00001"),  # leading ./ and extension
        ("A00001.hea", "A00001"),
        ("A00001.DAT", "A00001"),
        (".\\g1\\E00001.hea", "g1/E00001"),  # Windows separators
        ("g1//E00001", "g1/E00001"),
        ("cinc/g1/E00001", "g1/E00001"),  # dataset folder name in front
        ("CINC/A00001", "A00001"),
        ("A00/A00001", "A00001"),  # CinC 2017 sub-folder prefix that is not on disk
        ("training/g2/E00002.hea", "g2/E00002"),
        ("a00001", "A00001"),  # letter case
        ("G1/e00001.HEA", "g1/E00001"),
        ("  A00001 ", "A00001"),
    ],
)
def test_id_variants_find_their_record(index, raw, record_id):
    assert index.match(raw) == (record_id, "")


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("../A00001", "is a path through '..': it would resolve outside the dataset folder"),
        ("g1/../../etc/passwd", "is a path through '..'"),
        ("/etc/passwd", "is an absolute path"),
        ("C:\\data\\A00001.mat", "is an absolute path"),
        ("A09999", "matches no record in the dataset folder"),
        ("", "empty record id"),
    ],
)
def test_ids_that_leave_the_folder_or_match_nothing_are_refused_with_the_reason(index, raw, reason):
    record_id, message = index.match(raw)
    assert record_id is None and reason in message


def test_ambiguous_file_name_is_refused():
    index = RecordIdIndex([("a/r1", ["a/r1.hea"]), ("b/r1", ["b/r1.hea"])])
    assert index.match("r1") == (None, "ambiguous: matches a/r1, b/r1")
    assert index.match("b/r1") == ("b/r1", "")


def test_exact_case_wins_over_a_case_insensitive_match():
    index = RecordIdIndex([("r1", ["r1.hea"]), ("R1", ["R1.hea"])])
    assert index.match("R1") == ("R1", "") and index.match("r1") == ("r1", "")
    assert index.match("r1.HEA") == ("r1", "")


@pytest.mark.parametrize("raw", ["r1", "./r1.hea", "r1.MAT", ".\\r1.dat", "r1.xyz"])
def test_normalize_record_id(raw):
    assert normalize_record_id(raw) == "r1"


@pytest.fixture
def holter(tmp_path):
    folder = tmp_path / "data" / "holter"
    for name in ("r1", "r2", "sub/r3"):
        write_wfdb_record(
            folder / name.rpartition("/")[0], name.rpartition("/")[2], sine_leads(1, 500, 250.0), 250.0, ["II"]
        )
    return folder


def test_unmatched_rows_and_unlabelled_files_are_counted_and_listed(holter):
    csv_file = holter / "unified_label_mapping.csv"
    csv_file.write_text(
        "dataset,record_id,mapped_label\n"
        "holter,holter\\R1.HEA,AF\n"  # dataset prefix, Windows separator, case, extension
        "holter,ghost,MI\n"
        "holter,../outside,NORM\n"
    )
    mapping = build_label_mapping(holter, "holter", [csv_file])
    labels = dict(zip(mapping.table["record_id"], mapping.table["mapped_label"]))
    assert labels == {"r1": "AF", "r2": "OTHER", "sub/r3": "OTHER"}
    assert mapping.problems == [
        ("ghost", "row in unified_label_mapping.csv: matches no record in the dataset folder"),
        (
            "../outside",
            "row in unified_label_mapping.csv: record id '../outside' is a path through '..': "
            "it would resolve outside the dataset folder",
        ),
    ]
    assert mapping.unlabelled["record_id"].tolist() == ["r2", "sub/r3"]
    assert "2 record(s) have no row in unified_label_mapping.csv" in mapping.warnings[0]


def test_conflicting_rows_for_one_record_are_reported(holter):
    csv_file = holter / "unified_label_mapping.csv"
    csv_file.write_text("dataset,record_id,mapped_label\nholter,r1,AF\nholter,./r1.hea,MI\n")
    mapping = build_label_mapping(holter, "holter", [csv_file])
    assert mapping.table.set_index("record_id").loc["r1", "mapped_label"] == "MI"
    assert mapping.problems == [("./r1.hea", "another row also labels record r1; this later row wins")]


def test_symlink_leaving_the_dataset_folder_is_rejected(holter, tmp_path):
    outside = tmp_path / "elsewhere"
    write_wfdb_record(outside, "secret", sine_leads(1, 500, 250.0), 250.0, ["II"])
    os.symlink(outside / "secret.hea", holter / "secret.hea")
    mapping = build_label_mapping(holter, "holter")
    assert "secret" not in set(mapping.table["record_id"])
    assert ("secret.hea", "symbolic link pointing outside the dataset folder: not read") in mapping.problems
