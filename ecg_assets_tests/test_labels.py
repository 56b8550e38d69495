import pytest

from ecg_assets.core.labels import LABELS, LabelMappingError, highest_priority, map_cinc2017, map_snomed
from ecg_assets.core.overrides import overrides_for_dataset, read_label_overrides


def test_vocabulary():
    assert LABELS == ("MI", "AF", "BBB", "NORM", "OTHER")


@pytest.mark.parametrize("code, label", [("N", "NORM"), ("A", "AF"), ("O", "OTHER")])
def test_cinc2017_classes(code, label):
    assert map_cinc2017((code,)).label == label


def test_cinc2017_noisy_is_excluded_with_reason():
    decision = map_cinc2017(("~",))
    assert decision.label is None and "noisy" in decision.reason


@pytest.mark.parametrize(
    "codes, label",
    [
        (("426783006",), "NORM"),  # sinus rhythm alone
        (("426783006", "427084000"), "OTHER"),  # sinus rhythm + sinus tachycardia
        (("164889003",), "AF"),
        (("164890007",), "AF"),  # atrial flutter
        (("713426002",), "BBB"),  # incomplete RBBB
        (("164889003", "59118001"), "AF"),  # AF outranks BBB
        (("59118001", "164865005"), "MI"),  # MI outranks everything
        (("999999",), "OTHER"),  # unknown code
    ],
)
def test_snomed_table_and_priority(codes, label):
    assert map_snomed(codes).label == label


def test_snomed_without_codes_is_excluded():
    assert map_snomed(()).label is None


def test_priority_order():
    assert highest_priority(["NORM", "OTHER"]) == "OTHER"
    assert highest_priority(["BBB", "AF"]) == "AF"


def test_overrides_filter_by_dataset_and_normalise_case(tmp_path):
    csv = tmp_path / "unified_label_mapping.csv"
    csv.write_text("dataset,record_id,mapped_label\nmine,r1,af\nother,r2,MI\nmine,r3, NORM \n")
    assert read_label_overrides(csv, "mine") == {"r1": "AF", "r3": "NORM"}


def test_unknown_label_is_an_error_naming_label_and_lines(tmp_path):
    csv = tmp_path / "unified_label_mapping.csv"
    csv.write_text("dataset,record_id,mapped_label\nd,r1,AF\nd,r2,STEMI\nd,r3,STEMI\nd,r4,VT\n")
    with pytest.raises(LabelMappingError) as error:
        read_label_overrides(csv, "d")
    message = str(error.value)
    assert "'STEMI' on line(s) 3, 4" in message and "'VT' on line(s) 5" in message
    assert "MI, AF, BBB, NORM, OTHER" in message


def test_missing_columns_is_an_error_naming_them(tmp_path):
    csv = tmp_path / "unified_label_mapping.csv"
    csv.write_text("record,label\nr1,AF\n")
    with pytest.raises(LabelMappingError, match="dataset, record_id, mapped_label"):
        read_label_overrides(csv, "d")


@pytest.mark.parametrize("code, label", [("n", "NORM"), ("a", "AF"), ("o", "OTHER"), (" N ", "NORM")])
def test_cinc2017_classes_in_either_case(code, label):
    assert map_cinc2017((code,)).label == label


def test_override_dataset_column_matches_ignoring_case_and_reports_rows_of_no_dataset(tmp_path):
    csv = tmp_path / "unified_label_mapping.csv"
    csv.write_text("dataset,record_id,mapped_label\nCinC2017,r1,AF\ncinc2021,r2,MI\ncinc_2017,r3,NORM\n,r4,BBB\n")
    found = overrides_for_dataset(csv, "cinc2017", ["cinc2017", "cinc2021"])
    assert [(row.record_id, row.label, row.line) for row in found.rows] == [("r1", "AF", 2), ("r4", "BBB", 5)]
    assert found.problems == [
        ("r3", "unified_label_mapping.csv line 4: dataset 'cinc_2017' matches no dataset folder "
         "(known: cinc2017, cinc2021); row ignored")
    ]
