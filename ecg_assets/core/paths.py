"""Names that come from data (record ids, file names in headers and CSV files) are never trusted as paths.

Every file the pipeline reads from a dataset is resolved (symbolic links followed) and must
lie inside the dataset folder, itself resolved: a dataset folder may be a symbolic link (an
administrator linking a dataset in from another disk), the files in it may not point out of it.

The check runs once per file read, so it is kept cheap: the dataset folder's real path is
remembered (and looked up again whenever the folder's identity, its device and inode, changes),
and a plain relative name below it (no `.`, `..` or empty components) costs one `lstat` per
component; anything else (a symbolic link on the way, a missing file, `..`, an absolute path
elsewhere) is resolved in full by `Path.resolve`.
"""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path

from ecg_assets.core.records import RecordReadError


class OutsideFolderError(RecordReadError):
    """A path that would resolve outside the folder it must stay in."""


def _real_folder(folder: Path) -> str:
    """`os.path.realpath(folder)`, remembered while the folder it names stays the same directory."""
    name = os.fspath(folder)
    try:
        status = os.stat(name)
    except OSError:
        return os.path.realpath(name)
    return _cached_realpath(os.path.abspath(name), status.st_dev, status.st_ino)


@functools.lru_cache(maxsize=256)
def _cached_realpath(name: str, device: int, inode: int) -> str:
    return os.path.realpath(name)


def _plain_real(base: str, relative: str) -> str | None:
    """`base/relative` when no component of `relative` is a symbolic link, `.`, `..` or missing; else None."""
    current = base.rstrip("/") or "/"
    for part in relative.split("/"):
        if part in ("", ".", ".."):
            return None
        current = f"{current}/{part}" if current != "/" else f"/{part}"
        try:
            if stat.S_ISLNK(os.lstat(current).st_mode):
                return None
        except OSError:
            return None
    return current


def _resolved_inside(folder: Path, path: str | Path) -> str | None:
    base = _real_folder(folder)
    name = os.fspath(path)
    relative = None
    if not os.path.isabs(name):
        relative = name
    else:  # an absolute path below the folder (as given or resolved) is checked like a relative one
        for prefix in {base, os.path.abspath(os.fspath(folder))}:
            if name.startswith(prefix.rstrip("/") + "/"):
                relative = name[len(prefix.rstrip("/")) + 1 :]
                break
    candidate = _plain_real(base, relative) if relative else None
    if candidate is not None:
        return candidate
    candidate = str((Path(base) / name).resolve())  # Path.resolve: a symlink loop raises, as it always did
    inside = candidate == base or candidate.startswith(base.rstrip("/") + "/")
    return candidate if inside else None


def is_inside(folder: Path, path: str | Path) -> bool:
    """True when `folder / path` (an absolute `path` as it is), symlinks resolved, lies inside `folder`."""
    return _resolved_inside(folder, path) is not None


def resolve_inside(folder: Path, relative: str | Path) -> Path:
    """`folder / relative`, resolved; `OutsideFolderError` when it would lie outside `folder` (symlinks included)."""
    resolved = _resolved_inside(folder, relative)
    if resolved is None:
        raise OutsideFolderError(f"path {str(relative)!r} resolves outside the dataset folder")
    return Path(resolved)


def dataset_file(folder: Path, name: str) -> Path:
    """A file a dataset format reads by name (REFERENCE.csv, dataset.yaml, ...): refused when it is a symbolic
    link pointing outside `folder`."""
    path = folder / name
    if not is_inside(folder, name):
        raise OutsideFolderError(
            f"{path} is a symbolic link to {path.resolve()}, outside the folder {folder}: refusing to read it"
        )
    return path
