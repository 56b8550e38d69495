"""Names that come from data (record ids, file names in headers and CSV files) are never trusted as paths.

Every file the pipeline reads from a dataset is resolved (symbolic links followed) and must
lie inside the dataset folder, itself resolved: a dataset folder may be a symbolic link (an
administrator linking a dataset in from another disk), the files in it may not point out of it.
"""

from __future__ import annotations

from pathlib import Path

from ecg_assets.core.records import RecordReadError


class OutsideFolderError(RecordReadError):
    """A path that would resolve outside the folder it must stay in."""


def _resolved_inside(folder: Path, path: str | Path) -> Path | None:
    base = folder.resolve()
    candidate = (base / path).resolve()
    return candidate if candidate == base or base in candidate.parents else None


def is_inside(folder: Path, path: str | Path) -> bool:
    """True when `folder / path` (an absolute `path` as it is), symlinks resolved, lies inside `folder`."""
    return _resolved_inside(folder, path) is not None


def resolve_inside(folder: Path, relative: str | Path) -> Path:
    """`folder / relative`, resolved; `OutsideFolderError` when it would lie outside `folder` (symlinks included)."""
    resolved = _resolved_inside(folder, relative)
    if resolved is None:
        raise OutsideFolderError(f"path {str(relative)!r} resolves outside the dataset folder")
    return resolved


def dataset_file(folder: Path, name: str) -> Path:
    """A file a layout reads by name (REFERENCE.csv, dataset.yaml, ...): refused when it is a symbolic
    link pointing outside `folder`."""
    path = folder / name
    if not is_inside(folder, name):
        raise OutsideFolderError(
            f"{path} is a symbolic link to {path.resolve()}, outside the folder {folder}: refusing to read it"
        )
    return path
