"""One walk of a dataset folder that classifies every file: what formats may read, and why the rest is not read.

Rules, in order (names compared ignoring letter case wherever a suffix is concerned):

- `._*` names are macOS AppleDouble metadata (resource forks a Mac leaves on other disks), and `__MACOSX/`
  is the folder macOS archives keep them in: ignored, with that reason.
- Other names starting with `.` are hidden files and folders (`.DS_Store`, `.ipynb_checkpoints/`, `.git/`):
  ignored, with that reason; hidden folders are not searched.
- Symbolic links are followed when they stay inside the dataset folder. A link whose target does not
  exist (dangling), that loops, or that points outside the folder is a problem with its reason, never read.
  A linked folder already searched under another name is not searched again, and a file reachable under
  several names (links, hard links) is listed once, under its own name (not a link's); the other names
  are `aliases`, ignored unless a record names them.
- Anything else that is not a regular file (a socket, a FIFO, a device), and any name that is not valid
  UTF-8 (bytes written under another system's code page), is a problem.
- Every other file is listed (`files`), for formats to claim. Files that look like recordings
  (`RECORD_SUFFIXES`) and that no record claims are reported by the format with a reason, so that each
  ends up in exactly one place: a record's files, the problems, or the ignored files.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable

from ecg_assets.core.paths import is_inside

# Files that look like (part of) a recording, whatever the letter case of their suffix.
RECORD_SUFFIXES = (".hea", ".mat", ".dat")
# Recording formats this pipeline cannot read: reported with the reason instead of silently skipped.
UNSUPPORTED_SUFFIXES = {".edf": "EDF", ".bdf": "BDF", ".hdf5": "HDF5", ".h5": "HDF5"}
APPLEDOUBLE_REASON = "macOS AppleDouble metadata file ('._' prefix), not a recording: ignored"
MACOS_ARCHIVE_FOLDER = "__MACOSX"
OUTSIDE_REASON = "symbolic link pointing outside the dataset folder: not read"


def suffix_of(name: str) -> str:
    """The last suffix of a file name, lower-case (`A00001.MAT` -> `.mat`)."""
    return PurePosixPath(name).suffix.lower()


@dataclass
class FolderInventory:
    """Every file below a dataset folder, relative POSIX paths, sorted."""

    folder: Path
    files: list[str] = field(default_factory=list)  # readable regular files (through links that stay inside)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # hidden and AppleDouble files, with the reason
    problems: list[tuple[str, str]] = field(default_factory=list)  # links and special files that cannot be read
    aliases: dict[str, str] = field(default_factory=dict)  # another name of a listed file -> the listed name

    @classmethod
    def of(cls, folder: Path) -> "FolderInventory":
        """Walk `folder` once (see the module docstring for the rules)."""
        inventory = cls(folder)
        try:
            root = os.stat(folder)
        except OSError:
            return inventory
        visited = {(root.st_dev, root.st_ino): ""}
        pending = [""]
        linked: list[tuple[str, tuple[int, int]]] = []  # folders reached through a link: walked last
        names: dict[tuple[int, int], list[tuple[bool, str]]] = {}
        while pending or linked:
            if not pending:
                name, key = linked.pop(0)
                if key in visited:
                    inventory.ignored.append((name, f"link to the folder {visited[key] or '.'}, searched already"))
                    continue
                visited[key] = name
                pending.append(name)
            inventory._scan_folder(pending.pop(), visited, pending, linked, names)
        for found in names.values():
            kept = min(found)[1]  # not a link first, then by name
            inventory.files.append(kept)
            for _, name in found:
                if name != kept:
                    inventory.aliases[name] = kept
                    inventory.ignored.append((name, f"another name (link) of {kept}, which is listed: not read twice"))
        inventory.files.sort()
        inventory.ignored.sort()
        inventory.problems.sort()
        return inventory

    def _scan_folder(
        self,
        relative: str,
        visited: dict[tuple[int, int], str],
        pending: list[str],
        linked: list[tuple[str, tuple[int, int]]],
        names: dict[tuple[int, int], list[tuple[bool, str]]],
    ) -> None:
        try:
            entries = sorted(os.scandir(self.folder / relative if relative else self.folder), key=lambda e: e.name)
        except OSError as error:
            self.problems.append((relative or ".", f"folder cannot be listed: {error.strerror or error}"))
            return
        folder_linked = bool(relative) and self._through_link(relative)
        for entry in entries:
            name = f"{relative}/{entry.name}" if relative else entry.name
            if not _is_utf8(entry.name):  # bytes from another system's code page: no id, no CSV cell can hold it
                self.problems.append((printable_name(name), "file name is not valid UTF-8: rename it"))
                continue
            reason = _hidden_reason(entry.name, entry.is_dir(follow_symlinks=False))
            if reason:
                self.ignored.append((name, reason))
                continue
            if entry.is_symlink():
                reason = _link_problem(self.folder, name, entry.path)
                if reason:
                    self.problems.append((name, reason))
                    continue
            try:
                status = entry.stat(follow_symlinks=True)
            except OSError as error:
                self.problems.append((name, f"cannot be read: {error.strerror or error}"))
                continue
            if entry.is_dir(follow_symlinks=True):
                key = (status.st_dev, status.st_ino)
                if entry.is_symlink() or folder_linked:
                    linked.append((name, key))  # after every folder reached without a link
                elif key not in visited:
                    visited[key] = name
                    pending.append(name)
            elif entry.is_file(follow_symlinks=True):
                alias = folder_linked or entry.is_symlink()
                names.setdefault((status.st_dev, status.st_ino), []).append((alias, name))
            else:
                self.problems.append((name, "not a regular file (a socket, FIFO or device): not read"))

    def _through_link(self, relative: str) -> bool:
        """True when `relative` (a folder) or a folder on the way to it is a symbolic link."""
        parts = relative.split("/")
        return any(os.path.islink(self.folder.joinpath(*parts[:depth])) for depth in range(1, len(parts) + 1))

    def with_suffix(self, *suffixes: str, under: str = "") -> list[str]:
        """Files whose suffix is one of `suffixes` (any letter case), optionally only below the folder `under`."""
        wanted = {suffix.lower() for suffix in suffixes}
        prefix = f"{under.rstrip('/')}/" if under else ""
        return [name for name in self.files if suffix_of(name) in wanted and name.startswith(prefix)]

    def top_level(self, name: str) -> str | None:
        """The file at the folder's top level called `name` ignoring letter case (the exact name first), or None."""
        if name in self.files:
            return name
        matches = [file for file in self.files if "/" not in file and file.casefold() == name.casefold()]
        return matches[0] if len(matches) == 1 else None

    def evenly_spaced(self, names: list[str], limit: int) -> list[str]:
        """Up to `limit` of `names`, spread evenly over the sorted list (what format detection samples)."""
        if len(names) <= limit:
            return names
        step = len(names) / limit
        return [names[int(index * step)] for index in range(limit)]

    def unclaimed(self, claimed: Iterable[str]) -> list[str]:
        """Files that look like recordings (or unsupported recording formats) and are not in `claimed`."""
        taken = set(claimed)
        interesting = set(RECORD_SUFFIXES) | set(UNSUPPORTED_SUFFIXES)
        return [name for name in self.files if suffix_of(name) in interesting and name not in taken]


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.scandir gave undecodable bytes as surrogates
        return False
    return True


def printable_name(name: str) -> str:
    """A file name as text, undecodable bytes shown as U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _hidden_reason(name: str, is_dir: bool) -> str:
    if name.startswith("._"):
        return APPLEDOUBLE_REASON
    if name == MACOS_ARCHIVE_FOLDER and is_dir:
        return "macOS archive metadata folder (__MACOSX), not recordings: not searched"
    if name.startswith("."):
        return "hidden folder: not searched" if is_dir else "hidden file: not read"
    return ""


def _link_problem(folder: Path, relative: str, path: str) -> str:
    """Why a symbolic link cannot be followed ('' when it can: its target exists inside the folder)."""
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    try:
        os.stat(path)
    except FileNotFoundError:
        return f"broken symbolic link: its target {target} does not exist"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return f"symbolic link loop ({target}): not read"
        return f"symbolic link that cannot be followed ({error.strerror or error}): not read"
    try:
        inside = is_inside(folder, relative)
    except (OSError, RuntimeError):  # a loop further down the path
        return f"symbolic link loop ({target}): not read"
    return "" if inside else OUTSIDE_REASON
