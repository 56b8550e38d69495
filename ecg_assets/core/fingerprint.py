"""A cheap fingerprint of a dataset folder: file names, sizes and modification times, never contents.

Walking with `os.scandir` costs one `stat` per file, so a folder of thousands of recordings is
fingerprinted in milliseconds; any added, removed, resized or rewritten file changes the result.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Iterator


def _entries(root: Path) -> Iterator[tuple[str, int, int]]:
    """(path relative to `root`, size, mtime in ns) of every file below `root`, hidden ones and linked folders
    skipped (a symbolic link to a folder is not walked: it could loop, or lead out of the dataset)."""
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as scan:
                for entry in scan:
                    if entry.name.startswith("."):
                        continue
                    if entry.is_dir(follow_symlinks=False):  # a linked folder could loop or leave the dataset
                        pending.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=True):
                        stat = entry.stat(follow_symlinks=True)
                        yield os.path.relpath(entry.path, root), stat.st_size, stat.st_mtime_ns
        except FileNotFoundError:  # removed while walking: it is simply not part of the fingerprint
            continue


def folder_fingerprint(paths: Iterable[Path]) -> str:
    """One hex digest over the files below each folder of `paths` and each plain file; missing paths count too."""
    rows: list[str] = []
    for path in paths:
        if path.is_dir():
            rows += [f"{path}\t{name}\t{size}\t{mtime}" for name, size, mtime in _entries(path)]
        elif path.is_file():
            stat = path.stat()
            rows.append(f"{path}\t\t{stat.st_size}\t{stat.st_mtime_ns}")
        else:
            rows.append(f"{path}\tabsent")
    digest = hashlib.sha256()
    for row in sorted(rows):
        digest.update(row.encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()[:16]
