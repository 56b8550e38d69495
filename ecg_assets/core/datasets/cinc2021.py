"""PhysioNet/CinC Challenge 2020/2021: `NAME.hea` + `NAME.mat`, SNOMED-CT codes in `# Dx:` (any sub-folders).

The folder is CinC 2020/2021 when most of its headers (an even sample of up to 50, across the whole
folder) carry a `# Dx:` line; a header without one is then a record excluded with that reason, not a
reason to read the whole folder as another layout.
"""

from __future__ import annotations

from pathlib import Path

from ecg_assets.core.datasets.base import DatasetFormat, DatasetScan, majority, record_id_of, scan_headers
from ecg_assets.core.datasets.inventory import FolderInventory
from ecg_assets.core.labels import LabelDecision, map_snomed
from ecg_assets.core.readers import HeaderSummary, comment_value, header_summary
from ecg_assets.core.records import RecordEntry

DETECTION_SAMPLE = 50
NO_DX = "header has no '# Dx:' line (truncated or not a CinC 2020/2021 header)"


def dx_codes(comments: list[str]) -> tuple[str, ...] | None:
    """The SNOMED codes of a `Dx:` comment, or None when the header has no such line."""
    value = comment_value(comments, "dx")
    return None if value is None else tuple(code.strip() for code in value.split(",") if code.strip())


def _entry(relative: str, header: HeaderSummary) -> RecordEntry:
    codes = dx_codes(header.comments)
    reason = ""
    if codes is None:
        reason = f"{header.problem}; no '# Dx:' line to label it" if header.problem else NO_DX
    return RecordEntry(record_id_of(relative), relative, codes or (), excluded_reason=reason)


class Cinc2021Format(DatasetFormat):
    name = "cinc2021"
    description = "PhysioNet/CinC 2020/2021: NAME.hea + NAME.mat, SNOMED-CT codes in '# Dx:'"

    def detect(self, inventory: FolderInventory) -> bool:
        sample = inventory.evenly_spaced(inventory.with_suffix(".hea"), DETECTION_SAMPLE)
        summaries = [header_summary(inventory.folder / name) for name in sample]
        return majority([dx_codes(summary.comments) is not None for summary in summaries if not summary.problem])

    def list_records(self, folder: Path, inventory: FolderInventory) -> DatasetScan:
        return scan_headers(folder, inventory.with_suffix(".hea"), _entry)

    def map_labels(self, native_labels: tuple[str, ...]) -> LabelDecision:
        return map_snomed(native_labels)
