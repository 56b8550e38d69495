"""Every CSV the pipeline reads goes through one decoder: byte order marks honoured, else strict UTF-8."""

import codecs

import pandas as pd
import pytest

from ecg_assets.core.datasets.ptbxl import read_scp_statements
from ecg_assets.core.labels import LabelMappingError
from ecg_assets.core.overrides import read_label_overrides
from ecg_assets.core.textfiles import csv_rows, decode_text, read_csv_table

TEXT = "dataset,record_id,mapped_label\r\nd,r1,af\r\nd,Zürich-2,NORM\r\n"


@pytest.mark.parametrize(
    "encoded",
    [
        TEXT.encode("utf-8"),
        codecs.BOM_UTF8 + TEXT.encode("utf-8"),
        TEXT.encode("utf-16"),  # with its byte order mark
        codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"),
        codecs.BOM_UTF32_LE + TEXT.encode("utf-32-le"),
        codecs.BOM_UTF32_BE + TEXT.encode("utf-32-be"),
        TEXT.encode("utf-16-le"),  # no mark: recognised by its NUL bytes
    ],
    ids=["utf-8", "utf-8-sig", "utf-16", "utf-16-be", "utf-32-le", "utf-32-be", "utf-16-le without bom"],
)
def test_label_files_in_any_unicode_encoding_read_the_same(tmp_path, encoded):
    path = tmp_path / "unified_label_mapping.csv"
    path.write_bytes(encoded)
    assert read_label_overrides(path, "d") == {"r1": "AF", "Zürich-2": "NORM"}


def test_a_legacy_code_page_is_an_error_naming_file_line_and_byte(tmp_path):
    path = tmp_path / "unified_label_mapping.csv"
    path.write_bytes(TEXT.encode("cp1252"))
    with pytest.raises(LabelMappingError) as error:
        read_label_overrides(path, "d")
    assert str(error.value) == (
        f"{path} is not valid UTF-8 text: byte 0xfc at offset 44 (line 3); save the file as UTF-8 "
        "(or UTF-16 with a byte order mark)"
    )


def test_nul_bytes_are_an_error_not_garbage_columns():
    with pytest.raises(LabelMappingError, match=r"x\.csv contains NUL bytes \(line 2\)"):
        decode_text(b"a,b\n\0\0\0junk", "x.csv")


def test_rows_carry_their_line_numbers_whatever_the_line_endings(tmp_path):
    path = tmp_path / "REFERENCE.csv"
    path.write_bytes(b"A00001,N\r\n\r\nA00002,A\rA00003,O\n")
    assert list(csv_rows(path)) == [(1, ["A00001", "N"]), (3, ["A00002", "A"]), (4, ["A00003", "O"])]


def test_ptbxl_tables_are_read_through_the_same_decoder(tmp_path):
    statements = tmp_path / "scp_statements.csv"
    statements.write_bytes(",diagnostic,diagnostic_class,rhythm\nNORM,1.0,NORM,\nAFIB,,,1.0\n".encode("utf-16"))
    assert set(read_scp_statements(statements)) == {"NORM", "AFIB"}
    statements.write_bytes(b",diagnostic,diagnostic_class,rhythm,description\nNORM,1.0,NORM,,normales EKG \xfc\n")
    with pytest.raises(LabelMappingError, match=r"scp_statements\.csv is not valid UTF-8 text: byte 0xfc .*line 2"):
        read_scp_statements(statements)
    table = tmp_path / "t.csv"
    table.write_bytes(codecs.BOM_UTF8 + b"ecg_id,x\n1,2\n")
    pd.testing.assert_frame_equal(read_csv_table(table, dtype=str), pd.DataFrame({"ecg_id": ["1"], "x": ["2"]}))


def test_dataset_yaml_is_read_through_the_same_decoder(tmp_path):
    from ecg_assets.core.datasets.config import DatasetConfigError, load_dataset_config

    (tmp_path / "dataset.yaml").write_bytes("sampling_rate: 360  # Hz\n".encode("utf-16"))
    assert load_dataset_config(tmp_path).sampling_rate == 360.0
    (tmp_path / "dataset.yaml").write_bytes("lead_names: [I]  # Ableitung \xfc\n".encode("latin-1"))
    with pytest.raises(DatasetConfigError, match=r"dataset\.yaml is not valid UTF-8 text: byte 0xfc .*line 1"):
        load_dataset_config(tmp_path)
