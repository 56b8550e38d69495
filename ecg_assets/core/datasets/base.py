"""What every dataset format module provides, and the helpers formats share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Callable

from ecg_assets.core.datasets.config import load_dataset_config
from ecg_assets.core.labels import LabelDecision
from ecg_assets.core.paths import is_inside, resolve_inside
from ecg_assets.core.readers import HeaderSummary, read_header_text, read_wfdb, summarize_header
from ecg_assets.core.records import RecordEntry, Recording


@dataclass
class DatasetScan:
    """Records a format found, plus what it could not match (each with a reason).

    `labeler` maps native labels when the table depends on the folder (PTB-XL's scp_statements.csv);
    otherwise the format's `map_labels` is used.
    """

    entries: list[RecordEntry] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (CSV row id or file, reason)
    labeler: Callable[[tuple[str, ...]], LabelDecision] | None = None


class DatasetFormat(ABC):
    """One native dataset format: how to recognise it, list its records, label and read them."""

    name: str
    description: str
    needs_label_csv: bool = False  # labels come only from unified_label_mapping.csv

    @abstractmethod
    def detect(self, folder: Path) -> bool:
        """True when `folder` looks like this format."""

    @abstractmethod
    def scan(self, folder: Path) -> DatasetScan:
        """List records with their native labels, without reading signals."""

    def read(self, folder: Path, entry: RecordEntry, max_duration_s: float | None = None) -> Recording:
        """Read one record's signal (only the first `max_duration_s` seconds when given).

        The default reads a WFDB record, with dataset.yaml filling in what headers do not state.
        """
        defaults = load_dataset_config(folder).signal_defaults
        return read_wfdb(resolve_inside(folder, entry.source_file), max_duration_s, defaults, root=folder)

    def map_labels(self, native_labels: tuple[str, ...]) -> LabelDecision:
        """Native labels to the unified label; formats without native labels say OTHER."""
        return LabelDecision("OTHER", "")


def list_files(folder: Path, pattern: str, problems: list[tuple[str, str]]) -> dict[str, Path]:
    """Files matching `pattern` as `{relative POSIX path: path}`, sorted; symlinks that leave the
    folder are left out and reported in `problems`."""
    found: dict[str, Path] = {}
    for path in sorted(folder.glob(pattern)):
        relative = path.relative_to(folder).as_posix()
        if not is_inside(folder, relative):
            problems.append((relative, "symbolic link pointing outside the dataset folder: not read"))
            continue
        if path.is_file():
            found[relative] = path
    return found


def first_files_inside(folder: Path, pattern: str, limit: int) -> list[Path]:
    """The first `limit` files matching `pattern` (sorted) that lie inside `folder`: what `detect` may read."""
    return list(islice((path for path in sorted(folder.glob(pattern)) if is_inside(folder, path.absolute())), limit))


def record_id_of(relative: str) -> str:
    """A record id from a file path relative to the dataset folder: the path without its extension."""
    return relative.rsplit(".", 1)[0] if "." in relative.rsplit("/", 1)[-1] else relative


def scan_headers(
    folder: Path,
    pattern: str,
    entry_for: Callable[[str, HeaderSummary], RecordEntry],
) -> DatasetScan:
    """A scan of WFDB headers: `entry_for(relative_path, summary)` builds each record's entry.

    Headers that describe the same signal file(s) as another header (`100.hea` and
    `100-no-len.hea` both reading `100.dat`) are one recording: only the preferred header (one
    with a signal length, then one named like its signal file, then the first by name) is
    processed; the others stay in the table, excluded with the reason.
    """
    scan = DatasetScan()
    headers = {
        relative: summarize_header(read_header_text(path, strict=False))
        for relative, path in list_files(folder, pattern, scan.problems).items()
    }
    duplicates = _shared_signal_files(folder, headers)
    for relative, summary in headers.items():
        entry = entry_for(relative, summary)
        if relative in duplicates and not entry.excluded_reason:
            entry = replace(entry, excluded_reason=duplicates[relative])
        scan.entries.append(entry)
    return scan


def _shared_signal_files(folder: Path, headers: dict[str, HeaderSummary]) -> dict[str, str]:
    groups: dict[frozenset[Path], list[str]] = defaultdict(list)
    for relative, summary in headers.items():
        if summary.signal_files:
            parent = (folder / relative).parent
            groups[frozenset((parent / name).resolve() for name in summary.signal_files)].append(relative)
    reasons = {}
    for files, members in groups.items():
        if len(members) < 2:
            continue
        stems = {path.stem for path in files}

        def preference(relative: str) -> tuple[bool, bool, str]:
            return (not headers[relative].has_length, Path(relative).stem not in stems, relative)

        kept = min(members, key=preference)
        names = ", ".join(sorted(path.name for path in files))
        for relative in members:
            if relative != kept:
                reasons[relative] = (
                    f"duplicate header: reads the same signal file(s) ({names}) as record {record_id_of(kept)}, "
                    "which is processed instead"
                )
    return reasons
