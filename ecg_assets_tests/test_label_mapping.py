import logging

import pytest

from ecg_assets.core.label_mapping import (
    build_label_mapping,
    normalize_record_id,
    read_label_mapping,
    write_label_mapping,
)
from ecg_assets.core.labels import LabelMappingError

from .conftest import sine_leads, write_wfdb_record


@pytest.fixture
def wfdb_dataset(tmp_path):
    folder = tmp_path / "data" / "holter"
    for name in ("r1", "r2", "r3"):
        write_wfdb_record(folder, name, sine_leads(1, 1000, 250.0), 250.0, ["II"])
    return folder


def test_demo_cinc2017_mapping_excludes_noisy(demo_root):
    mapping = build_label_mapping(demo_root / "demo_cinc2017", "demo_cinc2017")
    table = mapping.table
    assert len(table) == 200
    noisy = table[table["native_labels"] == "~"]
    assert len(noisy) > 0 and (noisy["mapped_label"] == "").all()
    assert mapping.excluded_reasons() == {"noisy recording (~)": len(noisy)}
    assert set(mapping.included["mapped_label"]) == {"NORM", "AF", "OTHER"}


def test_demo_cinc2021_mapping_keeps_all_native_codes(demo_root):
    mapping = build_label_mapping(demo_root / "demo_cinc2021", "demo_cinc2021")
    multi = mapping.table[mapping.table["native_labels"].str.contains(";")]
    assert len(multi) > 0
    assert set(multi["mapped_label"]) <= {"AF", "MI"}  # priority over the BBB code they also carry
    assert all(count > 0 for count in mapping.counts().values())


def test_missing_csv_warns_and_maps_everything_to_other(wfdb_dataset, caplog):
    with caplog.at_level(logging.WARNING):
        mapping = build_label_mapping(wfdb_dataset, "holter", [wfdb_dataset / "unified_label_mapping.csv"])
    assert (mapping.table["mapped_label"] == "OTHER").all()
    assert (mapping.table["label_source"] == "default").all()
    assert "3 record(s) have no row in unified_label_mapping.csv" in caplog.text and mapping.warnings


def test_csv_overrides_with_id_variants_and_reports_unmatched_rows(wfdb_dataset):
    (wfdb_dataset.parent / "unified_label_mapping.csv").write_text(
        "dataset,record_id,mapped_label\nholter,./r1.hea,AF\nholter,r2,MI\nholter,ghost,NORM\nelse,r3,BBB\n"
    )
    mapping = build_label_mapping(wfdb_dataset, "holter", [wfdb_dataset.parent / "unified_label_mapping.csv"])
    labels = dict(zip(mapping.table["record_id"], mapping.table["mapped_label"]))
    assert labels == {"r1": "AF", "r2": "MI", "r3": "OTHER"}
    assert ("ghost", "row in unified_label_mapping.csv: matches no record in the dataset folder") in mapping.problems


def test_csv_override_beats_native_labels(demo_root, tmp_path):
    csv = tmp_path / "unified_label_mapping.csv"
    csv.write_text("dataset,record_id,mapped_label\ndemo_cinc2017,A00001,MI\n")
    mapping = build_label_mapping(demo_root / "demo_cinc2017", "demo_cinc2017", [csv])
    row = mapping.table.set_index("record_id").loc["A00001"]
    assert row["mapped_label"] == "MI" and row["label_source"] == "override"


def test_unknown_label_in_csv_stops_the_partition(wfdb_dataset):
    csv = wfdb_dataset / "unified_label_mapping.csv"
    csv.write_text("dataset,record_id,mapped_label\nholter,r1,Flutter\n")
    with pytest.raises(LabelMappingError, match="'Flutter' on line"):
        build_label_mapping(wfdb_dataset, "holter", [csv])


def test_mapping_table_round_trips(demo_root, tmp_path):
    mapping = build_label_mapping(demo_root / "demo_cinc2021", "demo_cinc2021")
    write_label_mapping(mapping.table, tmp_path / "label_mapping.csv")
    assert read_label_mapping(tmp_path / "label_mapping.csv").equals(mapping.table.astype(str))


@pytest.mark.parametrize("raw", ["r1", "./r1.hea", "r1.MAT", ".\\r1.dat"])
def test_record_id_variants(raw):
    assert normalize_record_id(raw) == "r1"
