"""The unified label vocabulary, native-to-unified tables, and the CSV override file.

Every dataset's native labels end up as exactly one of `LABELS`. Where a record carries
several findings, the training label is the highest in `LABEL_PRIORITY`; all native codes
are kept in the label mapping table so nothing is thrown away.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

LABELS: tuple[str, ...] = ("MI", "AF", "BBB", "NORM", "OTHER")
LABEL_TO_INDEX: dict[str, int] = {label: index for index, label in enumerate(LABELS)}

# Highest first. NORM is lowest: a record is normal only when nothing else was found.
LABEL_PRIORITY: tuple[str, ...] = ("MI", "AF", "BBB", "OTHER", "NORM")

OVERRIDE_FILE_NAME = "unified_label_mapping.csv"

# PhysioNet/CinC Challenge 2017 REFERENCE classes. "~" (too noisy to classify) is excluded.
CINC2017_TABLE: dict[str, str | None] = {"N": "NORM", "A": "AF", "O": "OTHER", "~": None}

# China Physiological Signal Challenge 2018 (CPSC 2018) REFERENCE.csv codes: up to three per record,
# combined by LABEL_PRIORITY. Blocks, ectopic beats and ST changes are neither AF nor a bundle branch block.
CPSC2018_TABLE: dict[str, tuple[str, str]] = {
    "1": ("Normal", "NORM"),
    "2": ("AF", "AF"),  # atrial fibrillation
    "3": ("I-AVB", "OTHER"),  # first-degree atrioventricular block
    "4": ("LBBB", "BBB"),  # left bundle branch block
    "5": ("RBBB", "BBB"),  # right bundle branch block
    "6": ("PAC", "OTHER"),  # premature atrial contraction
    "7": ("PVC", "OTHER"),  # premature ventricular contraction
    "8": ("STD", "OTHER"),  # ST-segment depression
    "9": ("STE", "OTHER"),  # ST-segment elevation
}

# SNOMED-CT codes of the PhysioNet/CinC Challenge 2020/2021 headers (`# Dx:`), from the challenge's
# dx_mapping_scored.csv and dx_mapping_unscored.csv. Codes not listed here map to OTHER; a record
# is NORM only when every code is sinus rhythm.
SNOMED_TABLE: dict[str, str] = {
    # Atrial fibrillation and atrial flutter
    "164889003": "AF",  # atrial fibrillation
    "164890007": "AF",  # atrial flutter
    "195080001": "AF",  # atrial fibrillation and flutter
    "426749004": "AF",  # chronic atrial fibrillation
    "282825002": "AF",  # paroxysmal atrial fibrillation
    "314208002": "AF",  # rapid atrial fibrillation
    # Bundle branch blocks, complete and incomplete (fascicular blocks and IVCD stay OTHER)
    "6374002": "BBB",  # bundle branch block
    "59118001": "BBB",  # right bundle branch block
    "713427006": "BBB",  # complete right bundle branch block
    "713426002": "BBB",  # incomplete right bundle branch block
    "164909002": "BBB",  # left bundle branch block
    "733534002": "BBB",  # complete left bundle branch block
    "251120003": "BBB",  # incomplete left bundle branch block
    # Myocardial infarction and its variants (ischaemia without infarction stays OTHER)
    "164865005": "MI",  # myocardial infarction
    "22298006": "MI",  # myocardial infarction (the SNOMED-CT concept itself)
    "57054005": "MI",  # acute myocardial infarction
    "54329005": "MI",  # anterior myocardial infarction
    "164867002": "MI",  # old myocardial infarction
    # Normal
    "426783006": "NORM",  # sinus rhythm
}

# PTB-XL SCP-ECG statements (scp_statements.csv): diagnostic class MI -> MI, NORM -> NORM; these
# diagnostic statements -> BBB and rhythm statements -> AF; sinus rhythm counts as NORM; the rest OTHER.
SCP_BBB_STATEMENTS = frozenset({"CLBBB", "CRBBB", "ILBBB", "IRBBB"})
SCP_AF_STATEMENTS = frozenset({"AFIB", "AFLT"})
SCP_SINUS_RHYTHM = "SR"
SCP_STATEMENT_COLUMNS = ("diagnostic", "diagnostic_class", "rhythm")

# PTB Diagnostic ECG Database, header comment "Reason for admission:" (matched case-insensitively,
# first phrase contained in the text wins). None: excluded. Anything else: OTHER.
PTB_REASON_TABLE: tuple[tuple[str, str | None], ...] = (
    ("myocardial infarction", "MI"),
    ("healthy control", "NORM"),
    ("bundle branch block", "BBB"),
    ("n/a", None),
)


class LabelMappingError(ValueError):
    """The label configuration itself is wrong (not a single bad record): stops the partition."""


@dataclass(frozen=True)
class LabelDecision:
    """The unified label of one record, or `None` with the reason it is excluded."""

    label: str | None
    reason: str = ""


def highest_priority(labels: Iterable[str]) -> str:
    """The label that wins among several findings of one record."""
    found = set(labels)
    for label in LABEL_PRIORITY:
        if label in found:
            return label
    raise ValueError("no labels given")


def map_cinc2017(native: tuple[str, ...]) -> LabelDecision:
    """CinC 2017 class letter (either case) to the unified label (`~` noisy: excluded)."""
    if not native:
        return LabelDecision(None, "no REFERENCE entry")
    code = native[0].strip().upper()  # letters in either case, as override labels are
    if code not in CINC2017_TABLE:
        return LabelDecision(None, f"unknown CinC 2017 class {native[0]!r} (known: N, A, O, ~)")
    label = CINC2017_TABLE[code]
    return LabelDecision(label, "" if label else "noisy recording (~)")


def map_cpsc2018(codes: tuple[str, ...]) -> LabelDecision:
    """CPSC 2018 codes 1-9 to the unified label, by `CPSC2018_TABLE` and `LABEL_PRIORITY`."""
    if not codes:
        return LabelDecision(None, "no REFERENCE entry")
    unknown = [code for code in codes if code not in CPSC2018_TABLE]
    if unknown:
        return LabelDecision(None, f"unknown CPSC 2018 code(s) {', '.join(map(repr, unknown))} (known: 1-9)")
    return LabelDecision(highest_priority(CPSC2018_TABLE[code][1] for code in codes))


def map_snomed(codes: tuple[str, ...]) -> LabelDecision:
    """SNOMED-CT codes to the unified label, by `SNOMED_TABLE` and `LABEL_PRIORITY`."""
    if not codes:
        return LabelDecision(None, "no Dx codes in header")
    return LabelDecision(highest_priority(SNOMED_TABLE.get(code, "OTHER") for code in codes))


def scp_statement_label(code: str, statement: Mapping[str, object] | None) -> str:
    """The unified label of one PTB-XL SCP statement, given its row of scp_statements.csv."""
    if statement is None:
        return "OTHER"
    diagnostic = _flag(statement.get("diagnostic"))
    rhythm = _flag(statement.get("rhythm"))
    diagnostic_class = str(statement.get("diagnostic_class") or "").strip()
    if diagnostic and diagnostic_class in ("MI", "NORM"):
        return diagnostic_class
    if diagnostic and code in SCP_BBB_STATEMENTS:
        return "BBB"
    if rhythm and code in SCP_AF_STATEMENTS:
        return "AF"
    if rhythm and code == SCP_SINUS_RHYTHM:
        return "NORM"
    return "OTHER"


def map_scp_codes(codes: tuple[str, ...], statements: Mapping[str, Mapping[str, object]]) -> LabelDecision:
    """PTB-XL SCP codes to the unified label, by `scp_statement_label` and `LABEL_PRIORITY`."""
    if not codes:
        return LabelDecision(None, "no SCP codes")
    return LabelDecision(highest_priority(scp_statement_label(code, statements.get(code)) for code in codes))


def map_ptb_reason(native: tuple[str, ...]) -> LabelDecision:
    """PTB Diagnostic "Reason for admission" to the unified label, by `PTB_REASON_TABLE`."""
    if not native or not native[0].strip():
        return LabelDecision(None, "header has no 'Reason for admission'")
    text = native[0].strip().lower()
    for phrase, label in PTB_REASON_TABLE:
        if phrase in text:
            return LabelDecision(label, "" if label else f"reason for admission is {native[0].strip()!r}")
    return LabelDecision("OTHER")


def _flag(value: object) -> bool:
    try:
        return float(value) == 1.0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def normalize_label(value: str) -> str | None:
    """A user-written label in canonical spelling, or None if it is not in the vocabulary."""
    candidate = value.strip().upper()
    return candidate if candidate in LABEL_TO_INDEX else None


def require_columns(path: Path, found: Iterable[str], required: Iterable[str]) -> None:
    """Raise `LabelMappingError` naming the required columns a CSV file lacks."""
    found, required = [str(name) for name in found], list(required)
    missing = [name for name in required if name not in found]
    if missing:
        raise LabelMappingError(
            f"{path}: missing required column(s) {', '.join(missing)}; "
            f"expected {', '.join(required)}, found {', '.join(found) or 'nothing'}"
        )


def label_counts(labels: Iterable[str | None]) -> dict[str, int]:
    """Counts per unified label in vocabulary order (zeros included)."""
    counts = {label: 0 for label in LABELS}
    for label in labels:
        if label is not None:
            counts[label] += 1
    return counts
