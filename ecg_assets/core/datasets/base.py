"""What every dataset format module provides, and the helpers formats share."""

from __future__ import annotations

import posixpath
from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from ecg_assets.core.datasets.config import load_dataset_config
from ecg_assets.core.datasets.inventory import UNSUPPORTED_SUFFIXES, FolderInventory, suffix_of
from ecg_assets.core.labels import LabelDecision
from ecg_assets.core.paths import resolve_inside
from ecg_assets.core.readers import HeaderSummary, header_summary, read_wfdb
from ecg_assets.core.record_ids import outside_reason
from ecg_assets.core.records import RecordEntry, Recording


@dataclass
class DatasetScan:
    """Records a format found, plus what it could not match (each with a reason).

    `problems`: CSV rows that match no record, and files that look like recordings but are no
    record's (unreadable links, signal files no header names, ...). `ignored`: hidden and macOS
    metadata files, and files the format deliberately does not read. `labeler` maps native labels
    when the table depends on the folder (PTB-XL's scp_statements.csv); otherwise the format's
    `map_labels` is used.
    """

    entries: list[RecordEntry] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (CSV row id or file, reason)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    labeler: Callable[[tuple[str, ...]], LabelDecision] | None = None


class DatasetFormat(ABC):
    """One native dataset format: how to recognise it, list its records, label and read them."""

    name: str
    description: str
    needs_label_csv: bool = False  # labels come only from unified_label_mapping.csv

    @abstractmethod
    def detect(self, inventory: FolderInventory) -> bool:
        """True when the folder (its whole inventory, not one file) looks like this format."""

    @abstractmethod
    def list_records(self, folder: Path, inventory: FolderInventory) -> DatasetScan:
        """List records with their native labels, without reading signals."""

    def scan(self, folder: Path, inventory: FolderInventory | None = None) -> DatasetScan:
        """Every record of the folder, and every other file accounted for: each file that looks like a
        recording is a record's file, a problem or an ignored file, with its reason."""
        inventory = inventory if inventory is not None else FolderInventory.of(folder)
        scan = self.list_records(folder, inventory)
        scan.entries = _exclude_id_collisions(scan.entries)
        used = {entry.source_file for entry in scan.entries} | {name for entry in scan.entries for name in entry.files}
        claimed = used | {inventory.aliases[name] for name in used if name in inventory.aliases}
        claimed |= {name for name, _ in scan.problems} | {name for name, _ in scan.ignored}
        scan.problems += inventory.problems
        scan.ignored += [(name, reason) for name, reason in inventory.ignored if name not in used]
        for name in inventory.unclaimed(claimed):
            (scan.ignored if self.ignores(name) else scan.problems).append((name, self.unclaimed_reason(name)))
        return scan

    def ignores(self, relative: str) -> bool:
        """True for files that look like recordings but that this format deliberately leaves unread (PTB-XL's
        100 Hz copies): listed as ignored rather than as problems."""
        return False

    def unclaimed_reason(self, relative: str) -> str:
        """Why a file that looks like a recording is part of no record of this format."""
        suffix = suffix_of(relative)
        if suffix in UNSUPPORTED_SUFFIXES:
            return f"{UNSUPPORTED_SUFFIXES[suffix]} files are not a supported format: not read"
        if suffix == ".hea":
            return f"header not used by the {self.name} layout: not read"
        return f"signal file that no header ({self.name} layout) names: not part of any record"

    def read(self, folder: Path, entry: RecordEntry, max_duration_s: float | None = None) -> Recording:
        """Read one record's signal (only the first `max_duration_s` seconds when given).

        The default reads a WFDB record, with dataset.yaml filling in what headers do not state.
        """
        defaults = load_dataset_config(folder).signal_defaults
        return read_wfdb(resolve_inside(folder, entry.source_file), max_duration_s, defaults, root=folder)

    def map_labels(self, native_labels: tuple[str, ...]) -> LabelDecision:
        """Native labels to the unified label; formats without native labels say OTHER."""
        return LabelDecision("OTHER", "")


def record_id_of(relative: str) -> str:
    """A record id from a file path relative to the dataset folder: the path without its extension."""
    return relative.rsplit(".", 1)[0] if "." in relative.rsplit("/", 1)[-1] else relative


def _exclude_id_collisions(entries: list[RecordEntry]) -> list[RecordEntry]:
    """Two files that give one record id (`A1.mat` and `A1.MAT`): the first keeps it, the others are excluded.

    Entries that share an id *and* a file are repeated label rows (a REFERENCE row listed twice): they stay,
    and preprocessing processes the first.
    """
    first_file: dict[str, str] = {}
    result = []
    for entry in entries:
        kept = first_file.setdefault(entry.record_id, entry.source_file)
        if kept != entry.source_file and not entry.excluded_reason:
            entry = replace(
                entry,
                excluded_reason=f"same record id {entry.record_id!r} as the file {kept}, which is used instead",
            )
        result.append(entry)
    return result


def header_signal_files(relative: str, summary: HeaderSummary) -> tuple[str, ...]:
    """The files a header names, relative to the dataset folder (names that would leave it are left out)."""
    folder = posixpath.dirname(relative)
    named = []
    for name in dict.fromkeys(summary.signal_files):
        joined = posixpath.normpath(posixpath.join(folder, name)) if name and "\0" not in name else ""
        if joined and not outside_reason(joined):
            named.append(joined)
    return tuple(named)


def majority(votes: list[bool]) -> bool:
    """More than half of `votes` are True (False for no votes)."""
    return bool(votes) and sum(votes) * 2 > len(votes)


def scan_headers(
    folder: Path,
    headers: list[str],
    entry_for: Callable[[str, HeaderSummary], RecordEntry],
) -> DatasetScan:
    """A scan of WFDB headers (relative paths): `entry_for(relative_path, summary)` builds each record's entry.

    Headers that describe the same signal file(s) as another header (`100.hea` and
    `100-no-len.hea` both reading `100.dat`) are one recording: only the preferred header (one
    with a signal length, then one named like its signal file, then the first by name) is
    processed; the others stay in the table, excluded with the reason.
    """
    scan = DatasetScan()
    summaries = {relative: header_summary(folder / relative) for relative in headers}
    named = {relative: header_signal_files(relative, summary) for relative, summary in summaries.items()}
    duplicates = _shared_signal_files(summaries, named)
    for relative, summary in summaries.items():
        entry = replace(entry_for(relative, summary), files=named[relative])
        if relative in duplicates and not entry.excluded_reason:
            entry = replace(entry, excluded_reason=duplicates[relative])
        scan.entries.append(entry)
    return scan


def _shared_signal_files(summaries: dict[str, HeaderSummary], named: dict[str, tuple[str, ...]]) -> dict[str, str]:
    groups: dict[frozenset[str], list[str]] = defaultdict(list)
    for relative, files in named.items():
        if files:
            groups[frozenset(files)].append(relative)
    reasons = {}
    for files, members in groups.items():
        if len(members) < 2:
            continue
        stems = {posixpath.basename(name).rsplit(".", 1)[0] for name in files}

        def preference(relative: str) -> tuple[bool, bool, str]:
            stem = posixpath.basename(relative).rsplit(".", 1)[0]
            return (not summaries[relative].has_length, stem not in stems, relative)

        kept = min(members, key=preference)
        names = ", ".join(sorted(posixpath.basename(name) for name in files))
        for relative in members:
            if relative != kept:
                reasons[relative] = (
                    f"duplicate header: reads the same signal file(s) ({names}) as record {record_id_of(kept)}, "
                    "which is processed instead"
                )
    return reasons
