"""When a stored record may be copied into a new store generation instead of being read and preprocessed again.

A record is reused only when everything its stored tensor and index row come from is unchanged:

- the generation's key (`generation_key`): the preprocessing settings, the dataset's layout and
  `dataset.yaml` settings, the processing code (`versioning.code_version`, the import closure of
  `core.preprocessing`, readers included) and the numeric libraries' versions; any change there
  reprocesses every record, and the reason names what changed;
- the record's row in the label mapping (`record_key`: id, source file, native labels, unified
  label and its source, patient), so a changed override row or REFERENCE line reprocesses it;
- every file the reader read or looked for (`Recording.files`: a header's signal files whatever
  their names, a header beside a MAT file even when absent), by size and mtime, or, when those
  changed, by content hash (`content_hash`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Sequence

from ecg_assets.core.paths import is_inside
from ecg_assets.core.versioning import PROCESSING_CODE, code_version

LIBRARIES = ("numpy", "scipy", "wfdb")
# Why a record was read and preprocessed again (`ProcessingReport.reprocess_reasons`).
NEW_RECORD = "not in the previous generation (new, or failed last time)"
ROW_CHANGED = "its label_mapping row changed (label, native labels, source file or patient)"
FILES_CHANGED = "one of its files changed"
COMPONENT_NAMES = {
    "preprocess": "preprocessing settings",
    "dataset": "dataset layout or dataset.yaml settings",
    "code": "processing code",
    "libraries": "numpy/scipy/wfdb version",
}


def generation_key(preprocess: dict[str, Any], dataset_format: str, dataset_config: dict[str, Any]) -> dict[str, Any]:
    """What every record of a generation depends on besides its own files and row, as readable values."""
    return {
        "preprocess": preprocess,
        "dataset": {"format": dataset_format, **dataset_config},
        "code": code_version(PROCESSING_CODE),
        "libraries": {name: _version(name) for name in LIBRARIES},
    }


def key_changes(previous: dict[str, Any] | None, current: dict[str, Any]) -> str | None:
    """Why records of a generation built under `previous` cannot be reused under `current` (None: they can)."""
    if not isinstance(previous, dict):
        return "the previous generation has no reuse key (written by an older version)"
    changes = []
    for component, label in COMPONENT_NAMES.items():
        before, after = previous.get(component), current.get(component)
        if before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            fields = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
            details = ", ".join(f"{name}: {before.get(name)!r} -> {after.get(name)!r}" for name in fields[:4])
            changes.append(f"{label} changed ({details})")
        else:
            changes.append(f"{label} changed ({before} -> {after})")
    return "; ".join(changes) or None


def record_key(
    record_id: str, source_file: str, native_labels: str, label: str, label_source: str, patient: str
) -> str:
    """A record's identity in the label mapping (`ROW_CHANGED` when it differs from the stored one)."""
    text = "\0".join((record_id, source_file, native_labels, label, label_source, patient))
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def relative_files(dataset_dir: Path, source_file: str, paths: Iterable[Path]) -> list[str]:
    """The files a reader reported, relative to the dataset folder (POSIX), with the source file, sorted.

    Readers report paths below the folder as given or below its real path (the folder may be a link).
    """
    names = {source_file}
    bases = _folder_prefixes(os.fspath(dataset_dir))
    for path in paths:
        absolute = os.fspath(path)
        if not os.path.isabs(absolute) or "/." in absolute:
            absolute = os.path.abspath(absolute)
        for base in bases:
            if absolute.startswith(base):
                names.add(absolute[len(base) :].replace(os.sep, "/"))
                break
    return sorted(names)


@functools.lru_cache(maxsize=64)
def _folder_prefixes(folder: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(os.path.join(base, "") for base in (os.path.abspath(folder), os.path.realpath(folder))))


def encode_files(files: Sequence[str]) -> str:
    """The `input_files` index cell: one name a line (JSON when a name itself holds a line break)."""
    return json.dumps(list(files)) if any("\n" in name for name in files) else "\n".join(files)


def decode_files(text: str) -> list[str]:
    if text.startswith('["') and text.endswith('"]'):
        try:
            return [str(name) for name in json.loads(text)]
        except (TypeError, ValueError):
            pass
    return [name for name in text.split("\n") if name]


def files_signature(dataset_dir: Path, files: Sequence[str]) -> str:
    """`name:size:mtime_ns` of each file (`name:missing` when absent): cheap change detection."""
    return "|".join(_signature_part(dataset_dir, name)[0] for name in files)


def fingerprint(dataset_dir: Path, files: Sequence[str], checked_inside: bool = False) -> tuple[str, str]:
    """`(files_signature, content hash)` of a record's files, each file looked up once.

    The hash is a SHA-256 (first 32 hex digits) over the names and bytes of the files. A file that is
    now a link leaving the dataset folder is not read, unless `checked_inside` (a reader checked the
    files just now).
    """
    digest = hashlib.sha256()
    parts = []
    for name in files:
        part, present = _signature_part(dataset_dir, name)
        parts.append(part)
        digest.update(name.encode("utf-8", "surrogateescape") + b"\0")
        if not present:
            digest.update(b"<missing>")
            continue
        try:
            if not checked_inside and not is_inside(dataset_dir, name):
                digest.update(b"<outside>")  # it became a link leaving the folder: never read it
                continue
            with open(os.path.join(dataset_dir, name), "rb") as handle:
                digest.update(handle.read())
        except (OSError, ValueError, RuntimeError):
            digest.update(b"<missing>")
    return "|".join(parts), digest.hexdigest()[:32]


def _signature_part(dataset_dir: Path, name: str) -> tuple[str, bool]:
    try:
        stat = os.stat(os.path.join(dataset_dir, name))
    except (OSError, ValueError):
        return f"{name}:missing", False
    return f"{name}:{stat.st_size}:{stat.st_mtime_ns}", True


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"
