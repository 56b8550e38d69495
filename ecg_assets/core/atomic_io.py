"""Crash-safe file writes: write to a temporary file in the same folder, fsync, then rename.

A reader sees either the old file or the new one, never a half-written file. Temporary files
are named `.<final name>.<random>.tmp` (or `.<final name>.tmp`); a killed writer can leave one
behind, which no reader ever opens and `remove_temp_files` deletes on the next run. A write
that fails (disk full, read-only file system, ...) raises `StorageError` naming the file and
what happened, and leaves the previous version of the file in place.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator

TEMP_SUFFIX = ".tmp"


class StorageError(OSError):
    """A write that could not be completed; the file's previous version (if any) is untouched."""


@contextmanager
def storage_errors(path: Path, action: str = "writing") -> Iterator[None]:
    """Turn an `OSError` raised inside the block into a `StorageError` that names `path` and the cause."""
    try:
        yield
    except StorageError:
        raise
    except OSError as error:
        cause = os.strerror(error.errno) if error.errno else str(error)
        raise StorageError(
            error.errno or errno.EIO, f"{cause} while {action} {path}; earlier files are left as they were"
        ) from error


def temp_path(path: Path, unique: bool = True) -> Path:
    """The temporary name a write of `path` uses, in the same folder (a random part unless `unique=False`)."""
    random_part = f".{secrets.token_hex(4)}" if unique else ""
    return path.with_name(f".{path.name}{random_part}{TEMP_SUFFIX}")


def is_temp_file(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX)


def open_new_file(path: Path) -> BinaryIO:
    """Create `path` (which must not exist) for binary writing: the one place new files are opened."""
    return path.open("xb")


def remove_temp_files(folder: Path) -> list[Path]:
    """Delete the temporary files a killed writer left in `folder`; returns them.

    Only safe while no other writer uses `folder` (the assets hold the partition lock).
    """
    removed = []
    try:
        candidates = [path for path in folder.iterdir() if is_temp_file(path) and path.is_file()]
    except FileNotFoundError:
        return removed
    for path in candidates:
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            continue
    return removed


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """Open a temporary file beside `path`; on success it replaces `path`, on error it is removed."""
    with storage_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = temp_path(path)
        handle = open_new_file(temporary)
        try:
            with handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            unlink_quietly(temporary)
            raise
        fsync_directory(path.parent)


def unlink_quietly(path: Path) -> None:
    """Remove `path` if possible; never raises (cleanup must not hide the error that caused it)."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def fsync_directory(folder: Path) -> None:
    """Make a rename in `folder` durable (no-op where directories cannot be opened)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_file(path) as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
