import json
from collections import Counter

import pytest

from ecg_assets.core.splits import SplitConfig, read_splits, stratified_split, write_splits

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
