"""The invariant every dataset folder must satisfy, however messy: nothing vanishes, nothing is counted twice.

- Every file that looks like a recording (`.hea`, `.mat`, `.dat`, `.edf`, any letter case, hidden ones
  included) is in exactly one place: a record's files in `label_mapping.csv` (`source_file` or
  `record_files`), the unmatched entries (`LabelMapping.problems`), or the ignored files (itself or a
  folder above it). Several rows may share a file only when they are one record (repeated label rows)
  or when all but one are excluded (a second header reading the same signal file).
- Every row of the label mapping is excluded with a reason, or processed, or failed with a reason; a
  record id on several rows is processed (or failed) once and its later rows are failures saying so.
- Processed records keep the label of their (first) label mapping row: no silent relabel.
- Every reason is a sentence, not an exception's type name.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import pandas as pd

from ecg_assets.core.datasets.inventory import printable_name
from ecg_assets.core.label_mapping import FILES_SEPARATOR, LabelMapping
from ecg_assets.core.store import RecordStore

RECORD_LIKE = (".hea", ".mat", ".dat", ".edf")
_EXCEPTION_NAME = re.compile(r"^\w*(Error|Exception)\b")


def record_like_files(folder: Path) -> list[str]:
    """Every file or link below `folder` named like a recording, found without following any link."""
    found = []
    for current, folders, files in os.walk(folder, followlinks=False):
        for name in files + [name for name in folders if os.path.islink(os.path.join(current, name))]:
            if name.lower().endswith(RECORD_LIKE):
                relative = os.path.relpath(os.path.join(current, name), folder).replace(os.sep, "/")
                found.append(printable_name(relative))  # a name that is not UTF-8 is listed as text
    return sorted(found)


def _places(relative: str, problems: Counter, ignored: Counter) -> list[str]:
    places = ["problem"] * problems[relative] + ["ignored"] * ignored[relative]
    parts = relative.split("/")
    for depth in range(1, len(parts)):  # a hidden folder, or a link to a folder that is not searched
        folder = "/".join(parts[:depth])
        places += [f"inside ignored {folder}"] * ignored[folder] + [f"inside problem {folder}"] * problems[folder]
    return places


def assert_clear_reason(reason: str, what: str) -> None:
    assert isinstance(reason, str) and len(reason) >= 15, f"{what}: reason {reason!r} is not a sentence"
    assert not _EXCEPTION_NAME.match(reason) and "Traceback" not in reason, f"{what}: reason {reason!r}"


def assert_every_file_accounted(folder: Path, mapping: LabelMapping, store_dir: Path | None) -> None:
    """The module's invariant for one dataset folder, its label mapping and (when processed) its store."""
    table = mapping.table
    rows_of: dict[str, list[int]] = {}
    for position, (source, files) in enumerate(zip(table["source_file"], table["record_files"])):
        for name in {source, *(name for name in files.split(FILES_SEPARATOR) if name)}:
            rows_of.setdefault(name, []).append(position)
    problems = Counter(name for name, _ in mapping.problems)
    ignored = Counter(name for name, _ in mapping.ignored_files)
    for relative in record_like_files(folder):
        places = _places(relative, problems, ignored)
        rows = table.iloc[rows_of.get(relative, [])]
        if len(rows):
            places.append("record")
            kept = rows[rows["excluded_reason"] == ""]["record_id"].nunique()
            assert rows["record_id"].nunique() == 1 or kept <= 1, f"{relative} is the file of several records:\n{rows}"
        assert len(places) == 1, f"{relative} is in {places or 'no place'} (folder {folder})"
    for entry, reason in [*mapping.problems, *mapping.ignored_files]:
        assert_clear_reason(reason, entry)
    for reason in table.loc[table["mapped_label"] == "", "excluded_reason"]:
        assert_clear_reason(reason, "excluded record")
    if store_dir is None:
        return
    store = RecordStore(store_dir)
    failures = pd.read_csv(store_dir / "failures.csv", dtype=str, keep_default_na=False)
    for reason in failures["reason"]:
        assert_clear_reason(reason, "failed record")
    processed = Counter(store.index["record_id"])
    failed = Counter(failures["record_id"])
    assert max(processed.values(), default=1) == 1, f"processed twice: {processed}"
    labelled = table[table["mapped_label"] != ""]
    first_label = dict(zip(labelled["record_id"][::-1], labelled["mapped_label"][::-1]))  # the first row wins
    for record_id, rows in labelled.groupby("record_id", sort=False):
        outcomes = processed[record_id] + failed[record_id]
        assert outcomes == len(rows), f"record {record_id}: {len(rows)} row(s), {outcomes} outcome(s)"
        if len(rows) > 1:
            reasons = failures.loc[failures["record_id"] == record_id, "reason"]
            assert (reasons.str.contains("duplicate record id")).sum() >= len(rows) - 1, (record_id, list(reasons))
    unexpected = set(processed) - set(first_label)
    assert not unexpected, f"processed but not labelled in the mapping: {unexpected}"
    for record_id, label in zip(store.index["record_id"], store.index["label"]):
        assert label == first_label[record_id], f"record {record_id} relabelled {first_label[record_id]} -> {label}"
