"""PhysioNet/CinC Challenge 2020/2021: `NAME.hea` + `NAME.mat`, SNOMED-CT codes in `# Dx:`."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from ecg_assets.core.datasets.base import DatasetLayout, DatasetScan, resolve_inside
from ecg_assets.core.labels import LabelDecision, map_snomed
from ecg_assets.core.readers import header_comments, read_wfdb
from ecg_assets.core.records import Recording, RecordEntry


def dx_codes(comments: list[str]) -> tuple[str, ...] | None:
    """The SNOMED codes of a `Dx:` comment, or None when the header has no such line."""
    for comment in comments:
        key, _, value = comment.partition(":")
        if key.strip().lower() == "dx":
            return tuple(code.strip() for code in value.split(",") if code.strip())
    return None


class Cinc2021Layout(DatasetLayout):
    name = "cinc2021"
    description = "PhysioNet/CinC 2020/2021: NAME.hea + NAME.mat, SNOMED-CT codes in '# Dx:'"

    def detect(self, folder: Path) -> bool:
        headers = list(islice(sorted(folder.rglob("*.hea")), 5))
        return bool(headers) and all(dx_codes(header_comments(path)) is not None for path in headers)

    def scan(self, folder: Path) -> DatasetScan:
        scan = DatasetScan()
        for header in sorted(folder.rglob("*.hea")):
            relative = header.relative_to(folder).as_posix()
            codes = dx_codes(header_comments(header))
            if codes is None:
                scan.problems.append((relative, "header has no '# Dx:' line"))
                continue
            scan.entries.append(RecordEntry(relative[: -len(".hea")], relative, codes))
        return scan

    def map_labels(self, native_labels: tuple[str, ...]) -> LabelDecision:
        return map_snomed(native_labels)

    def read(self, folder: Path, entry: RecordEntry, max_duration_s: float | None = None) -> Recording:
        return read_wfdb(resolve_inside(folder, entry.source_file), max_duration_s)
