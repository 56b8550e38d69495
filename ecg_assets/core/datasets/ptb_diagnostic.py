"""PTB Diagnostic ECG Database: `patientNNN/sNNNNxre.hea` + `.dat` (12 standard leads) + `.xyz` (Frank
leads vx, vy, vz), 1000 Hz. The label comes from the header comment `Reason for admission:`; the
patient id is the folder name. Frank leads are not read."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from ecg_assets.core.datasets.base import DatasetFormat, DatasetScan, majority, record_id_of, scan_headers
from ecg_assets.core.datasets.inventory import FolderInventory
from ecg_assets.core.labels import LabelDecision, map_ptb_reason
from ecg_assets.core.readers import HeaderSummary, comment_value, header_summary
from ecg_assets.core.records import RecordEntry

REASON_KEY = "Reason for admission"
DETECTION_SAMPLE = 50


def _entry(relative: str, header: HeaderSummary) -> RecordEntry:
    reason = comment_value(header.comments, REASON_KEY)
    patient = PurePosixPath(relative).parent.name
    return RecordEntry(record_id_of(relative), relative, (reason,) if reason else (), patient_id=patient)


def patient_headers(inventory: FolderInventory) -> list[str]:
    """Headers one level down in `patientNNN/` folders."""
    return [
        name
        for name in inventory.with_suffix(".hea")
        if name.count("/") == 1 and name.split("/")[0].lower().startswith("patient")
    ]


class PtbDiagnosticFormat(DatasetFormat):
    name = "ptb_diagnostic"
    description = "PTB Diagnostic ECG Database: patientNNN/sNNNNxre.hea, 1000 Hz, 'Reason for admission:'"

    def detect(self, inventory: FolderInventory) -> bool:
        sample = inventory.evenly_spaced(patient_headers(inventory), DETECTION_SAMPLE)
        summaries = [header_summary(inventory.folder / name) for name in sample]
        return majority(
            [comment_value(summary.comments, REASON_KEY) is not None for summary in summaries if not summary.problem]
        )

    def list_records(self, folder: Path, inventory: FolderInventory) -> DatasetScan:
        return scan_headers(folder, patient_headers(inventory), _entry)

    def unclaimed_reason(self, relative: str) -> str:
        if relative.lower().endswith(".hea"):
            return "header outside the patientNNN/ folders of the PTB Diagnostic layout: not read"
        return super().unclaimed_reason(relative)

    def map_labels(self, native_labels: tuple[str, ...]) -> LabelDecision:
        return map_ptb_reason(native_labels)
