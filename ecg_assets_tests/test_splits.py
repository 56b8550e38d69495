import json
from collections import Counter

import numpy as np
import pytest

from ecg_assets.core.splits import (
    METHOD_PATIENTS,
    METHOD_STRAT_FOLD,
    METHOD_STRATIFIED,
    SplitConfig,
    assign_splits,
    read_splits,
    stratified_split,
    write_splits,
)

LABELS = ["NORM"] * 500 + ["AF"] * 100 + ["OTHER"] * 250 + ["MI"] * 3 + ["BBB"] * 2


def test_split_is_a_partition_with_80_10_10_per_class():
    split = stratified_split(LABELS, SplitConfig())
    everything = split["train"] + split["val"] + split["test"]
    assert sorted(everything) == list(range(len(LABELS)))
    for label, total in Counter(LABELS).items():
        if total < 10:
            continue
        counts = {name: sum(LABELS[i] == label for i in split[name]) for name in split}
        assert counts["val"] == round(0.1 * total) and counts["test"] == round(0.1 * total)


def test_rare_classes_still_reach_validation_and_test():
    split = stratified_split(LABELS, SplitConfig())
    mi = [i for i, label in enumerate(LABELS) if label == "MI"]
    assert any(i in split["val"] for i in mi) and any(i in split["test"] for i in mi)
    bbb = [i for i, label in enumerate(LABELS) if label == "BBB"]
    assert all(i in split["train"] for i in bbb)  # two records: too few to hold out


def test_same_seed_same_split_other_seed_other_split():
    assert stratified_split(LABELS, SplitConfig(seed=7)) == stratified_split(LABELS, SplitConfig(seed=7))
    assert stratified_split(LABELS, SplitConfig(seed=7)) != stratified_split(LABELS, SplitConfig(seed=8))


def test_fractions_must_sum_to_one():
    with pytest.raises(ValueError, match="sum to 1"):
        SplitConfig(train_fraction=0.8, val_fraction=0.2, test_fraction=0.1)


def test_splits_json_round_trip(tmp_path):
    split = stratified_split(LABELS, SplitConfig())
    ids = [f"r{i}" for i in range(len(LABELS))]
    write_splits(tmp_path / "splits.json", split, ids, SplitConfig())
    assert read_splits(tmp_path / "splits.json") == split
    payload = json.loads((tmp_path / "splits.json").read_text())
    assert payload["seed"] == 42 and payload["record_ids"]["test"][0] == f"r{split['test'][0]}"


def _patients(n_patients: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Labels and patient ids of records from patients with 1-5 records each."""
    rng = np.random.default_rng(seed)
    labels, patients = [], []
    for patient in range(n_patients):
        label = ["NORM", "AF", "MI", "OTHER", "BBB"][rng.integers(5)]
        for _ in range(rng.integers(1, 6)):
            labels.append(label if rng.random() < 0.8 else "OTHER")
            patients.append(f"p{patient}")
    return labels, patients


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_patient_is_in_two_splits_and_fractions_stay_close(seed):
    labels, patients = _patients(300, seed)
    result = assign_splits(labels, SplitConfig(seed=seed), patients)
    assert result.method == METHOD_PATIENTS
    split_of = {}
    for name, positions in result.positions.items():
        for position in positions:
            assert split_of.setdefault(patients[position], name) == name
    assert sorted(sum(result.positions.values(), [])) == list(range(len(labels)))
    for name, fraction in (("val", 0.1), ("test", 0.1)):
        assert abs(len(result.positions[name]) / len(labels) - fraction) < 0.03


def test_records_without_patient_id_are_their_own_group():
    labels = ["NORM"] * 20
    patients = ["p1"] * 10 + [""] * 10
    result = assign_splits(labels, SplitConfig(), patients)
    split_of_p1 = {name for name, positions in result.positions.items() for p in positions if p < 10}
    assert len(split_of_p1) == 1 and result.method == METHOD_PATIENTS


def test_strat_fold_gives_folds_1_to_8_train_9_val_10_test():
    folds = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10]
    result = assign_splits(["NORM"] * 11, SplitConfig(), [f"p{i}" for i in range(11)], folds)
    assert result.method == METHOD_STRAT_FOLD
    assert result.positions == {"train": list(range(8)), "val": [8], "test": [9, 10]}


def test_strat_fold_is_not_used_when_it_splits_a_patient_or_is_incomplete():
    labels = ["NORM"] * 10
    spanning = assign_splits(labels, SplitConfig(), ["p1", "p1"] + [f"q{i}" for i in range(8)], [1, 10] + [1] * 8)
    assert spanning.method == METHOD_PATIENTS and "strat_fold puts 1 patient(s) in several splits" in spanning.notes[0]
    incomplete = assign_splits(labels, SplitConfig(), None, [1] * 9 + [None])
    assert incomplete.method == METHOD_STRATIFIED
    disabled = assign_splits(labels, SplitConfig(use_strat_fold=False, group_by_patient=False), ["p"] * 10, [1] * 10)
    assert disabled.method == METHOD_STRATIFIED
