"""PhysioNet/CinC Challenge 2020/2021: `NAME.hea` + `NAME.mat`, SNOMED-CT codes in `# Dx:` (any sub-folders)."""

from __future__ import annotations

from pathlib import Path

from ecg_assets.core.datasets.base import (
    DatasetFormat,
    DatasetScan,
    first_files_inside,
    record_id_of,
    scan_headers,
)
from ecg_assets.core.labels import LabelDecision, map_snomed
from ecg_assets.core.readers import HeaderSummary, comment_value, header_comments
from ecg_assets.core.records import RecordEntry


def dx_codes(comments: list[str]) -> tuple[str, ...] | None:
    """The SNOMED codes of a `Dx:` comment, or None when the header has no such line."""
    value = comment_value(comments, "dx")
    return None if value is None else tuple(code.strip() for code in value.split(",") if code.strip())


def _entry(relative: str, header: HeaderSummary) -> RecordEntry:
    codes = dx_codes(header.comments)
    reason = "" if codes is not None else "header has no '# Dx:' line (truncated or not a CinC 2020/2021 header)"
    return RecordEntry(record_id_of(relative), relative, codes or (), excluded_reason=reason)


class Cinc2021Format(DatasetFormat):
    name = "cinc2021"
    description = "PhysioNet/CinC 2020/2021: NAME.hea + NAME.mat, SNOMED-CT codes in '# Dx:'"

    def detect(self, folder: Path) -> bool:
        headers = first_files_inside(folder, "**/*.hea", 5)
        return bool(headers) and all(dx_codes(header_comments(path)) is not None for path in headers)

    def scan(self, folder: Path) -> DatasetScan:
        return scan_headers(folder, "**/*.hea", _entry)

    def map_labels(self, native_labels: tuple[str, ...]) -> LabelDecision:
        return map_snomed(native_labels)
