"""PTB Diagnostic ECG Database: `patientNNN/sNNNNxre.hea` + `.dat` (12 standard leads) + `.xyz` (Frank
leads vx, vy, vz), 1000 Hz. The label comes from the header comment `Reason for admission:`; the
patient id is the folder name. Frank leads are not read."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from ecg_assets.core.datasets.base import (
    DatasetFormat,
    DatasetScan,
    first_files_inside,
    record_id_of,
    scan_headers,
)
from ecg_assets.core.labels import LabelDecision, map_ptb_reason
from ecg_assets.core.readers import HeaderSummary, comment_value, header_comments
from ecg_assets.core.records import RecordEntry

REASON_KEY = "Reason for admission"
HEADERS = "patient*/*.hea"


def _entry(relative: str, header: HeaderSummary) -> RecordEntry:
    reason = comment_value(header.comments, REASON_KEY)
    patient = PurePosixPath(relative).parent.name
    return RecordEntry(record_id_of(relative), relative, (reason,) if reason else (), patient_id=patient)


class PtbDiagnosticFormat(DatasetFormat):
    name = "ptb_diagnostic"
    description = "PTB Diagnostic ECG Database: patientNNN/sNNNNxre.hea, 1000 Hz, 'Reason for admission:'"

    def detect(self, folder: Path) -> bool:
        headers = first_files_inside(folder, HEADERS, 5)
        return bool(headers) and any(comment_value(header_comments(path), REASON_KEY) for path in headers)

    def scan(self, folder: Path) -> DatasetScan:
        return scan_headers(folder, HEADERS, _entry)

    def map_labels(self, native_labels: tuple[str, ...]) -> LabelDecision:
        return map_ptb_reason(native_labels)
